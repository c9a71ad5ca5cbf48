// Package serverenv names the environment through which the action's Cloud Run service configures the
// server program inside the image. The action writes these names into the service spec and the server
// reads them, so both import them from here and neither can drift from the other.
package serverenv

const (
	// BackendStoreURI holds the SQLAlchemy URL of MLflow's backend store (from a secret).
	BackendStoreURI = "DEPLOY_MLFLOW_BACKEND_STORE_URI"
	// ArtifactsDestination holds the gs:// URI where MLflow's artifact proxy stores artifacts.
	ArtifactsDestination = "DEPLOY_MLFLOW_ARTIFACTS_DESTINATION"
	// Auth is the auth mode: AuthBasic, AuthIAM or AuthMLflow.
	Auth = "DEPLOY_MLFLOW_AUTH"
	// Username and Password are the HTTP basic-auth credentials (from secrets) when Auth is AuthBasic, and
	// the first admin's when Auth is AuthMLflow.
	Username = "DEPLOY_MLFLOW_USERNAME"
	Password = "DEPLOY_MLFLOW_PASSWORD"

	// DefaultPermission is the permission MLflow's auth app gives new users on resources they do not own
	// (READ, EDIT, MANAGE or NO_PERMISSIONS), when Auth is AuthMLflow.
	DefaultPermission = "DEPLOY_MLFLOW_DEFAULT_PERMISSION"

	// FlaskSecretKey is MLflow's own variable for the auth app's Flask secret key (CSRF tokens), which
	// must be the same on every instance: from a secret when the action's input names one; otherwise the
	// server derives it from the admin password (HKDF-SHA256, info "deploy-mlflow flask secret key").
	FlaskSecretKey = "MLFLOW_FLASK_SERVER_SECRET_KEY"

	// KEKPassphrase is MLflow's variable for the passphrase that encrypts AI Gateway provider keys in the
	// tracking database (from a secret, pinned).
	KEKPassphrase = "MLFLOW_CRYPTO_KEK_PASSPHRASE"

	// MLflowCommand overrides the mlflow executable the server starts (default: "mlflow" on PATH).
	MLflowCommand = "DEPLOY_MLFLOW_MLFLOW_COMMAND"
	// ShutdownGrace is how long in-flight requests may run after SIGTERM (a Go duration; default and
	// most 7s, so that the whole shutdown fits in Cloud Run's 10 s between SIGTERM and SIGKILL).
	ShutdownGrace = "DEPLOY_MLFLOW_SHUTDOWN_GRACE"
	// MigrationTimeout bounds the schema step at start, waiting for the advisory lock and `mlflow db
	// upgrade` together (a Go duration; default 200s, inside the startup probe's 240 s).
	MigrationTimeout = "DEPLOY_MLFLOW_MIGRATION_TIMEOUT"

	// Port is the port Cloud Run tells the container to listen on.
	Port = "PORT"

	// MLflow's own documented settings, passed through to MLflow; the server sets a default when unset.
	Workers       = "MLFLOW_WORKERS"
	DBPoolSize    = "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"
	DBMaxOverflow = "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"
	DBPoolRecycle = "MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE"
)

// Auth modes.
const (
	AuthBasic = "basic"
	AuthIAM   = "iam"
	// AuthMLflow: MLflow's own authentication app (mlflow server --app-name basic-auth): users and
	// per-resource permissions in the tracking database; the server passes credentials through.
	AuthMLflow = "mlflow"
)

// HealthPath answers 200 only once MLflow answers its own /health; it needs no credentials. Cloud Run's
// startup probe uses the server's gRPC health service instead (the service speaks HTTP/2, and an HTTP
// probe is documented for HTTP/1 only); this path is for people, load balancers and HTTP/1 setups.
const HealthPath = "/health"

// BinaryPath is where the server program lives in the deployed image; the image's Entrypoint.
const BinaryPath = "/usr/local/bin/deploy-mlflow-server"
