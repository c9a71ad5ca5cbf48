package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// SecretRef names one version of a Secret Manager secret.
type SecretRef struct {
	Project string // the secret's project; the action's project unless the reference named another
	Secret  string
	Version string // "latest" or a version number
	// Input is the action input the reference came from, for error messages.
	Input string
}

// Name is the secret version's resource name.
func (r SecretRef) Name() string {
	return fmt.Sprintf("projects/%s/secrets/%s/versions/%s", r.Project, r.Secret, r.Version)
}

func (r SecretRef) String() string { return r.Secret + ":" + r.Version }

var (
	// A secret ID "is a string with a maximum length of 255 characters and can contain uppercase and
	// lowercase letters, numerals, and the hyphen (-) and underscore (_) characters"
	// (https://docs.cloud.google.com/python/docs/reference/secretmanager/latest/google.cloud.secretmanager_v1beta2.types.CreateSecretRequest).
	secretIDRE      = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	secretVerRE     = regexp.MustCompile(`^(latest|[1-9][0-9]*)$`)
	projectNumberRE = regexp.MustCompile(`^[0-9]+$`)
	plausibleRefRE  = regexp.MustCompile(`^[A-Za-z0-9_:/.-]{1,300}$`)
)

// errSecretRef says what a valid secret reference looks like.
var errSecretRef = errors.New("use a Secret Manager secret name (DB_url), name:version (DB_url:3) or projects/PROJECT/secrets/NAME[/versions/VERSION]; versions are latest or a number")

// ParseSecretRef parses NAME, NAME:VERSION or projects/P/secrets/S[/versions/V]; a bare name is in
// project. On failure the error says what a valid reference looks like.
func ParseSecretRef(v, project string) (SecretRef, error) {
	ref := SecretRef{Project: project, Version: "latest"}
	if strings.HasPrefix(v, "projects/") {
		parts := strings.Split(v, "/")
		switch {
		case len(parts) == 4 && parts[2] == "secrets":
		case len(parts) == 6 && parts[2] == "secrets" && parts[4] == "versions":
			ref.Version = parts[5]
		default:
			return SecretRef{}, errSecretRef
		}
		ref.Project, ref.Secret = parts[1], parts[3]
		if !projectRE.MatchString(ref.Project) && !projectNumberRE.MatchString(ref.Project) {
			return SecretRef{}, errSecretRef
		}
	} else {
		ref.Secret = v
		if i := strings.LastIndexByte(v, ':'); i >= 0 {
			ref.Secret, ref.Version = v[:i], v[i+1:]
		}
	}
	if !secretIDRE.MatchString(ref.Secret) || !secretVerRE.MatchString(ref.Version) {
		return SecretRef{}, errSecretRef
	}
	return ref, nil
}

// secretRef parses the secret reference in input; ok is false when the input is empty or refused.
func (p *parser) secretRef(input string) (ref SecretRef, ok bool) {
	v := p.input(input)
	if v == "" {
		return SecretRef{}, false
	}
	ref, err := ParseSecretRef(v, p.c.ProjectID)
	if err != nil {
		p.fail(input, shown(v), err.Error())
		return SecretRef{}, false
	}
	ref.Input = input
	return ref, true
}

// notShown stands in an error for a value that may be a secret itself.
const notShown = "(value not shown: it looks like a secret value, not a secret's name)"

// shown is v when it could be a secret reference, else notShown: a database URL or key pasted where a
// secret's name belongs must not be echoed into the workflow's annotations.
func shown(v string) string {
	if plausibleRefRE.MatchString(v) {
		return v
	}
	return notShown
}

// secret_versions values.
const (
	SecretVersionsPinned = "pinned"
	SecretVersionsLatest = "latest"
)

// secretVersions reads whether references to a secret's latest version are pinned at deploy time to
// the version current then. Cloud Run reads a secret when an instance starts, so with latest the
// instances of one revision can hold different values after a rotation; pinned gives every instance
// the same value, and a rotation rolls out by deploying again.
func (p *parser) secretVersions() {
	switch v := p.inputOr("secret_versions", DefaultSecretVersions); v {
	case SecretVersionsPinned:
		p.c.PinSecretVersions = true
	case SecretVersionsLatest:
		p.c.PinSecretVersions = false
	default:
		p.fail("secret_versions", v, "use pinned (latest is resolved at deploy time to the version current then, so every instance reads the same value; re-run the deploy to roll out a rotation) or latest (each instance reads the newest version when it starts)")
	}
}
