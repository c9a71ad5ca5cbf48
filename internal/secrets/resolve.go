package secrets

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
)

// Resolved is one secret reference: as the inputs named it, and as the service will name it.
type Resolved struct {
	Given config.SecretRef // as the input named it: latest or a number
	Ref   config.SecretRef // what the service references: Given, with latest replaced by a number when pinned
	// Current is the number of the version Given named at deploy time (latest resolved), even when
	// nothing was pinned.
	Current string
}

// Pinned tells whether the reference was pinned: it named latest and now names a number.
func (r Resolved) Pinned() bool { return r.Given.Version != r.Ref.Version }

// Describe is one line for the log and the step summary; project is the service's own, in which a
// secret is named by its ID alone.
func (r Resolved) Describe(project string) string {
	name := r.Given.Secret
	if r.Given.Project != project {
		name = fmt.Sprintf("projects/%s/secrets/%s", r.Given.Project, r.Given.Secret)
	}
	switch {
	case r.Pinned():
		return fmt.Sprintf("%s → version %s (was %s)", name, r.Ref.Version, r.Given.Version)
	case r.Ref.Version == "latest":
		return fmt.Sprintf("%s → latest (version %s now; each instance reads the newest version when it starts)", name, r.Current)
	default:
		return fmt.Sprintf("%s → version %s (as given)", name, r.Ref.Version)
	}
}

// Resolution is what Resolve learned about the references.
type Resolution struct {
	// Refs holds one entry per distinct reference, in input order.
	Refs []Resolved
	// ProjectNumbers maps the ID of each project the references name to its number, where Secret
	// Manager answered with the number: Cloud Run may name the secrets so too.
	ProjectNumbers map[string]string
}

// Resolve looks up the metadata of every version refs name (never a value) and returns one error per
// reference that is not usable, joined, so that every problem shows at once. With pin, each reference
// to latest is resolved to the number of the version latest names now, so that every instance of the
// revision reads the same value and a rotation rolls out as a new revision when the deploy runs again.
// The Resolution holds what was learned even when err is not nil.
func Resolve(ctx context.Context, client *secretmanager.Client, refs []config.SecretRef, pin bool) (*Resolution, error) {
	res := &Resolution{ProjectNumbers: map[string]string{}}
	var errs []error
	seen := map[string]bool{}
	for _, ref := range refs {
		if seen[ref.Name()] {
			continue
		}
		seen[ref.Name()] = true
		v, err := check(ctx, client, ref)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		project, number, err := versionName(v.GetName())
		if err != nil {
			errs = append(errs, fmt.Errorf("secret %s (input %s): %w", ref.Secret, ref.Input, err))
			continue
		}
		if project != ref.Project {
			res.ProjectNumbers[ref.Project] = project
		}
		r := Resolved{Given: ref, Ref: ref, Current: number}
		if pin {
			r.Ref.Version = number
		}
		res.Refs = append(res.Refs, r)
	}
	return res, errors.Join(errs...)
}

// versionNameRE is a version's full name as Secret Manager answers it: with the version's number, also
// when asked for latest ("SecretVersion IDs in a Secret start at 1 and are incremented for each
// subsequent version", https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions).
var versionNameRE = regexp.MustCompile(`^projects/([^/]+)/secrets/[^/]+/versions/([1-9][0-9]*)$`)

// versionName reads the project (as Secret Manager names it: by number) and the version number out of a
// version's full name.
func versionName(name string) (project, number string, err error) {
	m := versionNameRE.FindStringSubmatch(name)
	if m == nil {
		return "", "", fmt.Errorf("Secret Manager named the version %q, not projects/P/secrets/S/versions/NUMBER, so it cannot be pinned; name a version number in the input, or set secret_versions: latest", name)
	}
	return m[1], m[2], nil
}

// Pin is the reference the service should use for ref: its resolved form when Resolve saw it, else ref.
// The input it came from is kept.
func (r *Resolution) Pin(ref config.SecretRef) config.SecretRef {
	for _, res := range r.Refs {
		if res.Given.Name() == ref.Name() {
			out := res.Ref
			out.Input = ref.Input
			return out
		}
	}
	return ref
}

// Apply returns a copy of c whose secret references are pinned as Resolve resolved them; c is not
// changed (the copy shares c's other slices and maps). Cloud Run's desired service is built from it.
func (r *Resolution) Apply(c *config.Config) *config.Config {
	out := *c
	out.BackendStore = r.Pin(c.BackendStore)
	out.ArtifactsDestinationSecret = r.pinPtr(c.ArtifactsDestinationSecret)
	out.Username = r.pinPtr(c.Username)
	out.Password = r.pinPtr(c.Password)
	out.Secrets = make([]config.SecretMount, len(c.Secrets))
	for i, m := range c.Secrets {
		m.Ref = r.Pin(m.Ref)
		out.Secrets[i] = m
	}
	if c.Secrets == nil {
		out.Secrets = nil
	}
	return &out
}

func (r *Resolution) pinPtr(ref *config.SecretRef) *config.SecretRef {
	if ref == nil {
		return nil
	}
	p := r.Pin(*ref)
	return &p
}

// Lines describes every reference, one line each, for the log and the step summary.
func (r *Resolution) Lines(project string) []string {
	out := make([]string, len(r.Refs))
	for i, res := range r.Refs {
		out[i] = res.Describe(project)
	}
	return out
}
