// Package secrets resolves, before anything is built or deployed, every Secret Manager secret version
// the service will read: it checks that each exists and is enabled and, when asked, pins each reference
// to latest to the version number current then (resolve.go). It reads only metadata, never a secret's
// value.
package secrets

import (
	"context"
	"fmt"
	"path"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
)

// MissingError is a secret version that the service could not read, and how to fix it.
type MissingError struct {
	Ref    config.SecretRef
	Reason string
	Fix    string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("secret %s (input %s) %s; %s", e.Ref.Secret, e.Ref.Input, e.Reason, e.Fix)
}

// Check looks up every reference and returns one error per reference that is not usable, joined. It
// also returns the number of each project the references name (project ID -> number), as Secret Manager
// names versions by project number: Cloud Run may name the secrets so too. It pins nothing: see Resolve.
func Check(ctx context.Context, client *secretmanager.Client, refs []config.SecretRef) (map[string]string, error) {
	res, err := Resolve(ctx, client, refs, false)
	return res.ProjectNumbers, err
}

func check(ctx context.Context, client *secretmanager.Client, ref config.SecretRef) (*secretmanagerpb.SecretVersion, error) {
	v, err := client.GetSecretVersion(ctx, &secretmanagerpb.GetSecretVersionRequest{Name: ref.Name()})
	if err != nil {
		return nil, explain(ctx, client, ref, err)
	}
	return v, usable(ref, v)
}

// explain turns a failed lookup into what to do about it.
func explain(ctx context.Context, client *secretmanager.Client, ref config.SecretRef, err error) error {
	switch status.Code(err) {
	case codes.NotFound:
		return notFound(ctx, client, ref)
	case codes.PermissionDenied:
		return &MissingError{Ref: ref, Reason: "could not be looked up: " + status.Convert(err).Message(),
			Fix: fmt.Sprintf("grant the deploying identity roles/secretmanager.viewer on project %s (and the runtime service account roles/secretmanager.secretAccessor)", ref.Project)}
	default:
		return fmt.Errorf("looking up secret %s (input %s): %w", ref.Secret, ref.Input, err)
	}
}

// usable tells why Cloud Run could not read a version that exists: only an ENABLED one serves.
func usable(ref config.SecretRef, v *secretmanagerpb.SecretVersion) error {
	switch v.GetState() {
	case secretmanagerpb.SecretVersion_ENABLED:
		return nil
	case secretmanagerpb.SecretVersion_DISABLED:
		return &MissingError{Ref: ref, Reason: fmt.Sprintf("version %s is disabled", path.Base(v.GetName())),
			Fix: fmt.Sprintf("enable it with: gcloud secrets versions enable %s --secret=%s --project=%s", path.Base(v.GetName()), ref.Secret, ref.Project) + olderVersion(ref)}
	default:
		return &MissingError{Ref: ref, Reason: fmt.Sprintf("version %s is %s", path.Base(v.GetName()), v.GetState()),
			Fix: addVersion(ref) + olderVersion(ref)}
	}
}

// olderVersion says how to deploy an earlier version when latest, the newest version, cannot be read:
// Secret Manager's latest is the most recently created version, whatever its state.
func olderVersion(ref config.SecretRef) string {
	if ref.Version != "latest" {
		return ""
	}
	return fmt.Sprintf("; or deploy an earlier, enabled version by naming it in input %s (%s:NUMBER)", ref.Input, ref.Secret)
}

// notFound tells a missing secret from a missing version.
func notFound(ctx context.Context, client *secretmanager.Client, ref config.SecretRef) error {
	_, err := client.GetSecret(ctx, &secretmanagerpb.GetSecretRequest{Name: fmt.Sprintf("projects/%s/secrets/%s", ref.Project, ref.Secret)})
	if status.Code(err) == codes.NotFound {
		return &MissingError{Ref: ref, Reason: "does not exist in project " + ref.Project,
			Fix: fmt.Sprintf("create it with: printf '%%s' \"$VALUE\" | gcloud secrets create %s --data-file=- --project=%s", ref.Secret, ref.Project)}
	}
	if ref.Version == "latest" {
		return &MissingError{Ref: ref, Reason: "has no versions", Fix: addVersion(ref)}
	}
	return &MissingError{Ref: ref, Reason: "has no version " + ref.Version,
		Fix: fmt.Sprintf("list its versions with: gcloud secrets versions list %s --project=%s, or use %s:latest", ref.Secret, ref.Project, ref.Secret)}
}

func addVersion(ref config.SecretRef) string {
	return fmt.Sprintf("add a version with: printf '%%s' \"$VALUE\" | gcloud secrets versions add %s --data-file=- --project=%s", ref.Secret, ref.Project)
}
