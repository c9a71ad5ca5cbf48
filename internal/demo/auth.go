package main

import (
	"fmt"
	"strings"

	"github.com/deploy-mlflow/deploy-mlflow/internal/localcloud"
	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// authEnv names the environment variable that chooses the demo's auth mode.
const authEnv = "DEPLOY_MLFLOW_DEMO_AUTH"

// authMode reads the auth mode from the value of DEPLOY_MLFLOW_DEMO_AUTH: basic when empty, else basic,
// mlflow or iam, as the action's auth input.
func authMode(value string) (string, error) {
	switch mode := strings.ToLower(strings.TrimSpace(value)); mode {
	case "":
		return serverenv.AuthBasic, nil
	case serverenv.AuthBasic, serverenv.AuthMLflow, serverenv.AuthIAM:
		return mode, nil
	}
	return "", fmt.Errorf("%s=%q: use basic (the default), mlflow or iam, as the action's auth input", authEnv, value)
}

// withAuth sets the action's inputs in env (from localcloud's ActionEnv) for mode: auth iam names no
// username or password secret, and makes the service private.
func withAuth(env map[string]string, mode string) {
	env["INPUT_AUTH"] = mode
	if mode == serverenv.AuthIAM {
		delete(env, "INPUT_USERNAME_SECRET")
		delete(env, "INPUT_PASSWORD_SECRET")
		env["INPUT_ALLOW_UNAUTHENTICATED"] = "false"
	}
}

// loginHelp says how to get into the deployed MLflow at url in mode, whose username and password (for
// basic, and the first admin's for mlflow) are those in the local cloud's secrets.
func loginHelp(mode, url, password string) string {
	var b strings.Builder
	switch mode {
	case serverenv.AuthBasic:
		fmt.Fprintf(&b, "  auth      basic: the server asks for one username and password\n")
		fmt.Fprintf(&b, "  username  %s\n  password  %s\n", localcloud.Username, password)
		fmt.Fprintf(&b, "  clients   MLFLOW_TRACKING_USERNAME=%s MLFLOW_TRACKING_PASSWORD=%s\n", localcloud.Username, password)
	case serverenv.AuthMLflow:
		fmt.Fprintf(&b, "  auth      mlflow: MLflow's own users; log in as the first admin\n")
		fmt.Fprintf(&b, "  username  %s\n  password  %s\n", localcloud.Username, password)
		fmt.Fprintf(&b, "  users     the admin creates them in the UI: %s/#/admin (Platform Admin, Users, Create User),\n", url)
		fmt.Fprintf(&b, "            with MLflow's form at %s/signup, or through the API:\n", url)
		fmt.Fprintf(&b, "            curl -u %s:%s -H 'Content-Type: application/json' \\\n", localcloud.Username, password)
		fmt.Fprintf(&b, "              -d '{\"username\": \"alice\", \"password\": \"at-least-12-chars\"}' %s/api/2.0/mlflow/users/create\n", url)
		fmt.Fprintf(&b, "            (passwords have at least 12 characters; new users may READ what others own, the\n")
		fmt.Fprintf(&b, "            default_permission input's default)\n")
		fmt.Fprintf(&b, "  who am I  %s/ajax-api/2.0/mlflow/users/current\n", url)
	case serverenv.AuthIAM:
		fmt.Fprintf(&b, "  auth      iam: the service is private; Cloud Run lets in callers with roles/run.invoker and an\n")
		fmt.Fprintf(&b, "            identity token, and no password is asked for\n")
		fmt.Fprintf(&b, "  clients   MLFLOW_TRACKING_TOKEN=$(gcloud auth print-identity-token) (a user; a service account\n")
		fmt.Fprintf(&b, "            needs --audiences=<service URL>)\n")
		fmt.Fprintf(&b, "  browser   gcloud run services proxy SERVICE --region REGION, then open http://localhost:8080\n")
		fmt.Fprintf(&b, "  here      the local cloud does not issue identity tokens, so %s refuses every request\n", url)
		fmt.Fprintf(&b, "            with Cloud Run's 403, as Cloud Run refuses a caller without one\n")
	}
	return b.String()
}
