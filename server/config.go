package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// env is the world the server reads its configuration from, passed in so that tests need no global state.
type env struct {
	getenv   func(string) string
	environ  []string
	lookPath func(string) (string, error)
}

// config is what the server needs to know, read from the environment that the action's service spec sets.
type config struct {
	port          string
	auth          string
	username      string
	password      string
	backendURI    string
	artifacts     string
	mlflow        string // path of the mlflow executable
	shutdownGrace time.Duration
	// migrationTimeout bounds the schema step: waiting for the lock and `mlflow db upgrade` together.
	migrationTimeout time.Duration
	// defaultPermission is MLflow's auth app's default_permission, with auth mlflow.
	defaultPermission string
	// flaskSecretKey is MLFLOW_FLASK_SERVER_SECRET_KEY as given, or derived from the password, with auth mlflow.
	flaskSecretKey string
	// kekPassphrase is MLFLOW_CRYPTO_KEK_PASSPHRASE ("": MLflow's default); kekVersion is
	// MLFLOW_CRYPTO_KEK_VERSION (0: unset, read from the database).
	kekPassphrase string
	kekVersion    int
	// warnings are about settings that the server corrected; they are logged once the logger exists.
	warnings []string
}

const (
	defaultPort = "8080"
	// defaultShutdownGrace is also the most the server allows: see maxShutdownGrace.
	defaultShutdownGrace = maxShutdownGrace
	// defaultMigrationTimeout leaves room, inside the 240 s that the startup probe allows (Cloud Run's
	// limit), for MLflow to start after the schema step.
	defaultMigrationTimeout = 200 * time.Second
	// minPasswordLength is the shortest basic-auth password accepted. The service is public, and a short
	// password can be guessed; it is also the length above which the password is redacted wherever it
	// appears in a log line (see minLiteralSecret).
	minPasswordLength = 12
)

// loadConfig reads and checks the configuration. It reports every problem at once, each naming the
// variable and the fix; the returned config holds whatever secrets were read even on error, so that the
// error itself can be logged with them redacted.
func loadConfig(e env) (config, error) {
	c := config{
		port:       e.getenv(serverenv.Port),
		auth:       strings.TrimSpace(e.getenv(serverenv.Auth)),
		username:   e.getenv(serverenv.Username),
		password:   e.getenv(serverenv.Password),
		backendURI: strings.TrimSpace(e.getenv(serverenv.BackendStoreURI)),
		artifacts:  strings.TrimSpace(e.getenv(serverenv.ArtifactsDestination)),
	}
	var errs []error
	if c.port == "" {
		c.port = defaultPort
	} else if n, err := strconv.Atoi(c.port); err != nil || n < 1 || n > 65535 {
		errs = append(errs, fmt.Errorf("%s=%q is not a TCP port: leave it to Cloud Run, or set a number from 1 to 65535", serverenv.Port, c.port))
	}

	if c.auth == "" {
		c.auth = serverenv.AuthBasic
	}
	switch c.auth {
	case serverenv.AuthBasic:
		// Never fail open: without credentials, a basic-auth server would have to let everyone in.
		if c.username == "" || c.password == "" {
			errs = append(errs, fmt.Errorf("%s is %q but %s and %s are not both set: set both (from secrets), or set %s=%s to leave access control to Cloud Run IAM",
				serverenv.Auth, serverenv.AuthBasic, serverenv.Username, serverenv.Password, serverenv.Auth, serverenv.AuthIAM))
			break
		}
		if strings.Contains(c.username, ":") {
			errs = append(errs, fmt.Errorf("%s contains a colon, which HTTP basic auth cannot carry in a user name: choose a user name without one", serverenv.Username))
		}
		if utf8.RuneCountInString(c.password) < minPasswordLength {
			// The error does not say how short: that would help a guesser.
			errs = append(errs, fmt.Errorf("%s is shorter than %d characters, too short for a service that anyone can reach: add a longer version to the password secret (e.g. openssl rand -base64 24 | gcloud secrets versions add SECRET --data-file=-) and deploy again",
				serverenv.Password, minPasswordLength))
		}
	case serverenv.AuthIAM, serverenv.AuthMLflow:
	default:
		errs = append(errs, fmt.Errorf("%s=%q is not an auth mode: set it to %q (HTTP basic auth), %q (Cloud Run IAM) or %q (MLflow's own users and permissions)",
			serverenv.Auth, c.auth, serverenv.AuthBasic, serverenv.AuthIAM, serverenv.AuthMLflow))
	}
	errs = append(errs, c.loadMLflowAuth(e)...)

	if c.backendURI == "" {
		errs = append(errs, fmt.Errorf("%s is not set: set it to MLflow's backend store URL, e.g. postgresql+psycopg2://USER:PASSWORD@/DB?host=/cloudsql/PROJECT:REGION:INSTANCE, or sqlite:///mlflow.db for a local run", serverenv.BackendStoreURI))
	} else if _, _, err := postgresConnString(c.backendURI); err != nil {
		errs = append(errs, err)
	}
	if c.artifacts == "" {
		// MLflow would fall back to ./mlartifacts, inside the container, lost with the instance.
		errs = append(errs, fmt.Errorf("%s is not set: set it to where MLflow stores artifacts, e.g. gs://BUCKET/mlflow, or a local directory for a local run", serverenv.ArtifactsDestination))
	}

	cmd := e.getenv(serverenv.MLflowCommand)
	if cmd == "" {
		cmd = "mlflow"
	}
	if path, err := e.lookPath(cmd); err != nil {
		errs = append(errs, fmt.Errorf("cannot run MLflow: %q not found (%v): install MLflow in the image, or set %s to the mlflow executable", cmd, err, serverenv.MLflowCommand))
	} else {
		c.mlflow = path
	}

	c.shutdownGrace = defaultShutdownGrace
	if v := e.getenv(serverenv.ShutdownGrace); v != "" {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil || d < 0:
			errs = append(errs, fmt.Errorf("%s=%q is not a duration: set it like 5s, at most %v (Cloud Run allows 10s between SIGTERM and SIGKILL)", serverenv.ShutdownGrace, v, maxShutdownGrace))
		case d > maxShutdownGrace:
			c.shutdownGrace = maxShutdownGrace
			c.warnings = append(c.warnings, fmt.Sprintf("%s=%s would leave MLflow no time to stop before Cloud Run's SIGKILL, 10s after SIGTERM; using %v", serverenv.ShutdownGrace, v, maxShutdownGrace))
		default:
			c.shutdownGrace = d
		}
	}

	c.migrationTimeout = defaultMigrationTimeout
	if v := e.getenv(serverenv.MigrationTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q is not a positive duration: set it like 200s (Cloud Run's startup probe allows 240s in all)", serverenv.MigrationTimeout, v))
		} else {
			c.migrationTimeout = d
		}
	}
	return c, errors.Join(errs...)
}

// secrets lists the values that must never appear in a log line.
func (c config) secrets() []string {
	return append(urlSecrets(c.backendURI), c.password, c.flaskSecretKey, c.kekPassphrase)
}
