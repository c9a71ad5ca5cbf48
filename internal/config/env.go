package config

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// Limits of Cloud Run's EnvVar: a name "must not exceed 32768 characters" and a value's "maximum length
// is 32768 bytes"
// (https://cloud.google.com/dotnet/docs/reference/Google.Cloud.Run.V2/latest/Google.Cloud.Run.V2.EnvVar); a service has
// "a maximum of 1000 environment variables"
// (https://cloud.google.com/run/docs/configuring/services/overview-environment-variables).
const (
	maxEnvName  = 32768
	maxEnvValue = 32768
	maxEnvVars  = 1000
)

// envNameRE is a C identifier, the form the v2 API once named (C_IDENTIFIER) and shells can read.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// serverEnvPrefix starts every variable through which the action configures the server (see
// internal/serverenv); the container may set none of them.
const serverEnvPrefix = "DEPLOY_MLFLOW_"

// cloudRunEnv are set by Cloud Run in every instance: the variables of the container runtime contract
// "are reserved and cannot be set", PORT in particular
// (https://cloud.google.com/run/docs/configuring/services/overview-environment-variables, which lists
// K_SERVICE and K_REVISION; K_CONFIGURATION is the contract's third,
// https://cloud.google.com/run/docs/container-contract#env-vars).
var cloudRunEnv = map[string]bool{"PORT": true, "K_SERVICE": true, "K_REVISION": true, "K_CONFIGURATION": true}

// cloudRunEnvPrefix is refused by Cloud Run: keys "cannot contain the X_GOOGLE_ prefix" (listed for
// functions deployed to Cloud Run on
// https://cloud.google.com/run/docs/configuring/services/overview-environment-variables; refused for
// every service here, as no user variable needs it).
const cloudRunEnvPrefix = "X_GOOGLE_"

// serverEnvInput names the input that sets each variable the action sets itself: the server's, and
// those of MLflow's that an input of the action fills in.
var serverEnvInput = map[string]string{
	serverenv.BackendStoreURI:      "backend_store_secret",
	serverenv.ArtifactsDestination: "artifacts_destination or artifacts_destination_secret",
	serverenv.Auth:                 "auth",
	serverenv.Username:             "username_secret",
	serverenv.Password:             "password_secret",
	serverenv.DefaultPermission:    "default_permission",
	serverenv.FlaskSecretKey:       "flask_secret_key_secret",
	serverenv.KEKPassphrase:        "kek_passphrase_secret",
	serverenv.Workers:              "workers",
}

// envNameProblem says why name cannot be a container variable and what to do instead, or "".
func envNameProblem(name string) string {
	switch {
	case len(name) > maxEnvName:
		return fmt.Sprintf("an environment variable name is at most %d characters (Cloud Run's limit)", maxEnvName)
	case !envNameRE.MatchString(name):
		return "an environment variable name is letters, digits and underscores, not starting with a digit"
	case cloudRunEnv[name]:
		return "Cloud Run sets " + name + " itself in every instance; remove it"
	case strings.HasPrefix(name, cloudRunEnvPrefix):
		return "Cloud Run refuses names starting with " + cloudRunEnvPrefix + "; rename the variable"
	case serverEnvInput[name] != "":
		return "deploy-mlflow sets " + name + " itself; use the input " + serverEnvInput[name] + " instead"
	case strings.HasPrefix(name, serverEnvPrefix):
		return "names starting with " + serverEnvPrefix + " configure deploy-mlflow's server, and the action sets them itself (this one has no input); rename the variable"
	}
	return ""
}

// env reads the plain env vars, then refuses names that are set twice or too many variables.
func (p *parser) env() {
	for _, item := range splitList(p.input("env_vars")) {
		k, v, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		// Only the name is ever echoed: the value may be sensitive.
		switch {
		case !ok:
			p.fail("env_vars", shown(k), "use KEY=VALUE, where KEY is letters, digits and underscores")
		case envNameProblem(k) != "":
			p.fail("env_vars", shown(k), envNameProblem(k))
		case len(v) > maxEnvValue:
			p.fail("env_vars", k, fmt.Sprintf("the value is longer than Cloud Run's %d bytes; put large values in a secret mounted as a file", maxEnvValue))
		default:
			p.c.EnvVars = append(p.c.EnvVars, EnvVar{Name: k, Value: v})
		}
	}
	p.checkEnvClash()
}

// checkEnvClash refuses a variable set twice, by secrets or env_vars, and more variables than Cloud
// Run takes (counting the server's own).
func (p *parser) checkEnvClash() {
	seen := map[string]string{} // name -> the input that set it
	check := func(input, name string) {
		if seen[name] != "" {
			p.fail(input, name, "is also set by "+seen[name]+"; set each variable once")
		}
		seen[name] = input
	}
	n := len(serverEnvInput) // the action's own variables, at most
	for _, m := range p.c.Secrets {
		// The action's own are counted above, and envNameProblem keeps their names out of the inputs.
		if m.Env != "" && m.Ref.Input == "secrets" {
			check("secrets", m.Env)
			n++
		}
	}
	for _, e := range p.c.EnvVars {
		check("env_vars", e.Name)
		n++
	}
	if n > maxEnvVars {
		p.fail("env_vars", "", fmt.Sprintf("Cloud Run takes at most %d environment variables per service, and secrets, env_vars and deploy-mlflow's own %d come to %d; mount secrets as files or merge variables", maxEnvVars, len(serverEnvInput), n))
	}
}
