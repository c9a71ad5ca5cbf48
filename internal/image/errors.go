package image

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// WriterRole is the IAM role that lets an identity push to an Artifact Registry repository.
const WriterRole = "roles/artifactregistry.writer"

// RepositoryNotFoundError says the registry has no repository to push to. Artifact Registry does not
// create repositories on push: Create is the command that creates it.
type RepositoryNotFoundError struct {
	// Repository is the image repository pushed to, such as us-central1-docker.pkg.dev/proj/repo/mlflow.
	Repository string
	// Create is the gcloud command that creates the Artifact Registry repository; empty when Repository is
	// not of the form LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE.
	Create string
	Err    error
}

func (e *RepositoryNotFoundError) Error() string {
	if e.Create == "" {
		return fmt.Sprintf("cannot push to %s: the registry has no such repository (%v)", e.Repository, e.Err)
	}
	return fmt.Sprintf("cannot push to %s: the Artifact Registry repository does not exist; create it with: %s (registry said: %v)",
		e.Repository, e.Create, e.Err)
}

func (e *RepositoryNotFoundError) Unwrap() error { return e.Err }

// PermissionError says the registry refused the credentials the image was pushed with.
type PermissionError struct {
	// Repository is the image repository pushed to.
	Repository string
	// Role is the role the pushing identity needs on the Artifact Registry repository: WriterRole.
	Role string
	// Grant is the gcloud command that grants Role; empty when Repository is not an Artifact Registry name.
	Grant string
	// Create is the command that creates the repository: Artifact Registry refuses an identity that cannot
	// see a repository the same way whether it exists or not. Empty as Grant is.
	Create string
	Err    error
}

func (e *PermissionError) Error() string {
	status, _ := registryError(e.Err)
	var msg string
	if status == http.StatusUnauthorized {
		msg = fmt.Sprintf("cannot push to %s: the registry did not accept the credentials (%v); the action pushes with an access token of the identity google-github-actions/auth set up (it must run before this step), and that identity needs %s on the repository",
			e.Repository, e.Err, e.Role)
	} else {
		msg = fmt.Sprintf("cannot push to %s: the registry refused the push (%v); the identity the action authenticates as needs %s on the repository",
			e.Repository, e.Err, e.Role)
	}
	if e.Grant != "" {
		msg += "; grant it with: " + e.Grant
	}
	if e.Create != "" && status != http.StatusUnauthorized {
		msg += "; Artifact Registry answers the same for a repository that does not exist: create it with: " + e.Create
	}
	return msg
}

func (e *PermissionError) Unwrap() error { return e.Err }

// BaseError says the base image could not be read: it names the reference and the input that chose it.
type BaseError struct {
	// Ref is the base image reference, as given in the base_image input (or its default).
	Ref string
	Err error
}

func (e *BaseError) Error() string {
	msg := fmt.Sprintf("cannot read base image %s (input base_image): %v", e.Ref, e.Err)
	status, codes := registryError(e.Err)
	switch {
	case slices.Contains(codes, transport.ManifestUnknownErrorCode) || slices.Contains(codes, transport.NameUnknownErrorCode) || manifestNotFound(e.Err):
		msg += "; check that the image and tag exist (MLflow's -full images start at v3.9.0)"
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		msg += "; a base image is pulled anonymously unless it is on the registry the image is pushed to, so a private base must live there"
	}
	return msg
}

func (e *BaseError) Unwrap() error { return e.Err }

// pushError turns what remote.Write returned into one of this package's errors where it can say more.
func pushError(repo name.Repository, err error) error {
	var be *BaseError
	if errors.As(err, &be) {
		return err
	}
	ar, isAR := artifactRegistry(repo)
	status, codes := registryError(err)
	switch {
	case slices.Contains(codes, transport.NameUnknownErrorCode):
		e := &RepositoryNotFoundError{Repository: repo.Name(), Err: err}
		if isAR {
			e.Create = ar.createCommand()
		}
		return e
	case status == http.StatusUnauthorized || status == http.StatusForbidden ||
		slices.Contains(codes, transport.UnauthorizedErrorCode) || slices.Contains(codes, transport.DeniedErrorCode):
		e := &PermissionError{Repository: repo.Name(), Role: WriterRole, Err: err}
		if isAR {
			e.Grant = fmt.Sprintf("gcloud artifacts repositories add-iam-policy-binding %s --location=%s --project=%s --member=serviceAccount:SERVICE_ACCOUNT_EMAIL --role=%s",
				ar.repository, ar.location, ar.project, WriterRole)
			e.Create = ar.createCommand()
		}
		return e
	}
	return fmt.Errorf("pushing image to %s: %w", repo.Name(), err)
}

// registryError returns the HTTP status and the registry's error codes, if err came from a registry.
func registryError(err error) (int, []transport.ErrorCode) {
	var te *transport.Error
	if !errors.As(err, &te) {
		return 0, nil
	}
	codes := make([]transport.ErrorCode, 0, len(te.Errors))
	for _, d := range te.Errors {
		codes = append(codes, d.Code)
	}
	return te.StatusCode, codes
}

// manifestNotFound reports a 404 for a manifest, which a HEAD request gets without an error code.
func manifestNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound &&
		te.Request != nil && strings.Contains(te.Request.URL.Path, "/manifests/")
}

// arRepository is an Artifact Registry Docker repository.
type arRepository struct {
	location, project, repository string
}

// artifactRegistry reads LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE.
func artifactRegistry(repo name.Repository) (arRepository, bool) {
	location, ok := strings.CutSuffix(repo.RegistryStr(), "-docker.pkg.dev")
	if !ok || location == "" || strings.Contains(location, ".") {
		return arRepository{}, false
	}
	parts := strings.Split(repo.RepositoryStr(), "/")
	// A domain-scoped project (example.com:my-project) appears in the path as example.com/my-project;
	// plain project IDs have no dots.
	if len(parts) >= 4 && strings.Contains(parts[0], ".") {
		parts = append([]string{parts[0] + ":" + parts[1]}, parts[2:]...)
	}
	if len(parts) < 3 {
		return arRepository{}, false
	}
	return arRepository{location: location, project: parts[0], repository: parts[1]}, true
}

func (r arRepository) createCommand() string {
	return fmt.Sprintf("gcloud artifacts repositories create %s --repository-format=docker --location=%s --project=%s",
		r.repository, r.location, r.project)
}
