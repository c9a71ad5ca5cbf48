package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

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
}

const (
	defaultPort          = "8080"
	defaultShutdownGrace = 8 * time.Second
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
		} else if strings.Contains(c.username, ":") {
			errs = append(errs, fmt.Errorf("%s contains a colon, which HTTP basic auth cannot carry in a user name: choose a user name without one", serverenv.Username))
		}
	case serverenv.AuthIAM:
	default:
		errs = append(errs, fmt.Errorf("%s=%q is not an auth mode: set it to %q (HTTP basic auth) or %q (Cloud Run IAM)",
			serverenv.Auth, c.auth, serverenv.AuthBasic, serverenv.AuthIAM))
	}

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
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("%s=%q is not a duration: set it like 8s (Cloud Run allows 10s between SIGTERM and SIGKILL)", serverenv.ShutdownGrace, v))
		} else {
			c.shutdownGrace = d
		}
	}
	return c, errors.Join(errs...)
}

// secrets lists the values that must never appear in a log line.
func (c config) secrets() []string {
	return append(urlSecrets(c.backendURI), c.password)
}
