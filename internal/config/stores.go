package config

import (
	"errors"
	"net"
	"regexp"
	"strings"
)

// Bucket names (https://cloud.google.com/storage/docs/buckets#naming; not re-checked against
// the current page): lowercase letters, digits,
// dashes, underscores and dots, starting and ending with a letter or digit; 3 to 63 characters, or up
// to 222 with dots, each dot-separated part at most 63; not an IP address in dotted-decimal notation;
// not beginning with "goog" nor containing "google".
var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)

// bucketProblem says why name is not a valid bucket name, or "".
func bucketProblem(name string) string {
	if !bucketRE.MatchString(name) {
		return "bucket names are 3 to 222 lowercase letters, digits, dots, hyphens and underscores, starting and ending with a letter or digit"
	}
	if !strings.Contains(name, ".") && len(name) > 63 {
		return "a bucket name without dots is at most 63 characters"
	}
	for _, part := range strings.Split(name, ".") {
		if len(part) > 63 || part == "" {
			return "each dot-separated part of a bucket name is 1 to 63 characters"
		}
	}
	switch {
	case net.ParseIP(name) != nil:
		return "a bucket name may not be an IP address"
	case strings.HasPrefix(name, "goog") || strings.Contains(name, "google"):
		return `bucket names may not begin with "goog" or contain "google"`
	}
	return ""
}

// stores reads where MLflow keeps its data: the database URL always comes from a secret; the artifact
// location is given plainly or through a secret, never both.
func (p *parser) stores() {
	if ref, ok := p.secretRef("backend_store_secret"); ok {
		p.c.BackendStore = ref
	} else if p.input("backend_store_secret") == "" {
		p.fail("backend_store_secret", "", "is required: name the Secret Manager secret that holds the database URL, such as postgresql+psycopg2://USER:PASSWORD@/DB?host=/cloudsql/PROJECT:REGION:INSTANCE")
	}

	dest := p.input("artifacts_destination")
	hasSecret := p.input("artifacts_destination_secret") != ""
	switch {
	case dest != "" && hasSecret:
		p.fail("artifacts_destination", dest, "set either artifacts_destination or artifacts_destination_secret, not both")
	case dest != "":
		if err := checkGCSURI(dest); err != nil {
			p.fail("artifacts_destination", dest, err.Error())
		}
	case hasSecret:
		if ref, ok := p.secretRef("artifacts_destination_secret"); ok {
			p.c.ArtifactsDestinationSecret = &ref
		}
	default:
		p.fail("artifacts_destination", "", "set artifacts_destination (gs://BUCKET/PATH) or artifacts_destination_secret (a secret holding it)")
	}
	p.c.ArtifactsDestination = dest
}

// checkGCSURI accepts gs://BUCKET and gs://BUCKET/PATH with a valid bucket name; on failure the error
// says what a valid location looks like.
func checkGCSURI(v string) error {
	const want = "use a Cloud Storage location gs://BUCKET or gs://BUCKET/PATH"
	rest, ok := strings.CutPrefix(v, "gs://")
	if !ok {
		return errors.New(want)
	}
	bucket, _, _ := strings.Cut(rest, "/")
	if why := bucketProblem(bucket); why != "" {
		return errors.New(want + " (" + why + ")")
	}
	return nil
}
