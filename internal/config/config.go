package config

import "time"

// Config is everything the action was asked to do, validated.
type Config struct {
	ProjectID  string
	Region     string
	Service    string
	Repository string // empty when Image was given
	// Image is the repository the image is pushed to, without tag or digest.
	Image         string
	MLflowVersion string
	BaseImage     string

	BackendStore SecretRef
	// Exactly one of ArtifactsDestination and ArtifactsDestinationSecret is set.
	ArtifactsDestination       string
	ArtifactsDestinationSecret *SecretRef

	Auth string // serverenv.AuthBasic, serverenv.AuthIAM or serverenv.AuthMLflow
	// Username and Password are the basic-auth credentials, or with auth mlflow the first admin's.
	Username *SecretRef
	Password *SecretRef
	// DefaultPermission is what MLflow's auth app gives new users on resources they do not own; set
	// only with auth mlflow.
	DefaultPermission string

	// PinSecretVersions (secret_versions: pinned) asks for every secret reference whose version is
	// latest to be resolved at deploy time to the version current then, so that every instance of a
	// revision reads the same value.
	PinSecretVersions bool

	// Secrets are the secrets the container reads besides the ones above: first those that inputs of
	// the action name as MLflow's own variables (flask_secret_key_secret, kek_passphrase_secret), then
	// those of the secrets input. Each Ref.Input says which input.
	Secrets           []SecretMount
	EnvVars           []EnvVar
	CloudSQLInstances []string
	ServiceAccount    string

	Memory string
	CPU    string
	// Workers is how many uvicorn workers MLflow runs in each instance (MLFLOW_WORKERS).
	Workers       int32
	MinInstances  int32
	MaxInstances  int32
	Concurrency   int32
	Timeout       time.Duration
	AllowUnauthed bool
	Labels        map[string]string
	WaitTimeout   time.Duration

	// NoTraffic deploys a revision that takes no traffic, reached at Tag's URL (a preview); production
	// traffic stays on the revisions that had it.
	NoTraffic bool
	// Tag is a traffic tag to put on the new revision.
	Tag string
	// RemoveTag is a traffic tag to remove; with it the action removes the tag and deploys nothing.
	RemoveTag string
	// DryRun checks everything and reports what a deploy would change, writing nothing anywhere.
	DryRun bool

	// Commit is GITHUB_SHA: the image tag, its revision label and the service's commit-sha label.
	Commit string
	// Source is the repository URL for the image's source label (GITHUB_SERVER_URL/GITHUB_REPOSITORY).
	Source string
}

// SecretMount exposes a secret to the container as an env var (Env) or as a file (Path).
type SecretMount struct {
	Env  string
	Path string
	Ref  SecretRef
}

// EnvVar is a plain environment variable for the container.
type EnvVar struct{ Name, Value string }

// Labels the action sets itself.
const (
	LabelManagedBy = "managed-by"
	LabelCommit    = "commit-sha"
)

// SecretRefs lists every secret version the service will read, in input order.
func (c *Config) SecretRefs() []SecretRef {
	refs := []SecretRef{c.BackendStore}
	if c.ArtifactsDestinationSecret != nil {
		refs = append(refs, *c.ArtifactsDestinationSecret)
	}
	if c.Username != nil {
		refs = append(refs, *c.Username)
	}
	if c.Password != nil {
		refs = append(refs, *c.Password)
	}
	for _, m := range c.Secrets {
		refs = append(refs, m.Ref)
	}
	return refs
}
