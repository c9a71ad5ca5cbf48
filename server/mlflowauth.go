package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// MLflow's own variables for its auth app (mlflow.environment_variables). Set ones win over the INI file,
// so the server sets them itself and never lets inherited ones through.
const (
	authConfigPathEnv    = "MLFLOW_AUTH_CONFIG_PATH"
	authAdminUsernameEnv = "MLFLOW_AUTH_ADMIN_USERNAME"
	authAdminPasswordEnv = "MLFLOW_AUTH_ADMIN_PASSWORD"
	// authBootstrappedEnv tells MLflow's uvicorn workers that the mlflow CLI has bootstrapped the admin;
	// private to MLflow, and never inherited.
	authBootstrappedEnv = "_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED"
)

// mlflowAuth is MLflow's authentication app as the server sets it up in auth mode mlflow: the INI file
// that the app reads, in a directory only this process's user can read, and the environment that points
// MLflow's processes at it. A nil *mlflowAuth stands for the other auth modes.
type mlflowAuth struct {
	dir, ini string
	env      map[string]string
}

// newMLflowAuth writes the INI file for c; nil when c's auth mode is not mlflow. close removes it.
func newMLflowAuth(c config) (*mlflowAuth, error) {
	if c.auth != serverenv.AuthMLflow {
		return nil, nil
	}
	dir, err := os.MkdirTemp("", "deploy-mlflow-auth-")
	if err != nil {
		return nil, fmt.Errorf("create a private directory for MLflow's auth configuration: %w", err)
	}
	a := &mlflowAuth{dir: dir, ini: filepath.Join(dir, "basic_auth.ini")}
	// O_EXCL: the name is new in a directory of mode 0700, so nothing else can have put a file there.
	f, err := os.OpenFile(a.ini, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		_, err = f.WriteString(authINI(c))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		a.close()
		return nil, fmt.Errorf("write MLflow's auth configuration in %s: %w", dir, err)
	}
	a.env = map[string]string{
		authConfigPathEnv: a.ini,
		// The admin's name and password go by environment, which carries them byte for byte; configparser
		// would strip spaces at their ends and read % as interpolation.
		authAdminUsernameEnv:     c.username,
		authAdminPasswordEnv:     c.password,
		serverenv.FlaskSecretKey: c.flaskSecretKey,
	}
	return a, nil
}

// authINI is the [mlflow] section that MLflow's auth app reads (mlflow.server.auth.config): the users
// live in the tracking database, in tables of their own (users, roles, alembic_version_auth, ...).
// configparser reads % as interpolation, so it is doubled; a URL holds no line breaks.
func authINI(c config) string {
	esc := func(s string) string { return strings.ReplaceAll(s, "%", "%%") }
	var b strings.Builder
	b.WriteString("[mlflow]\n")
	fmt.Fprintf(&b, "default_permission = %s\n", c.defaultPermission)
	fmt.Fprintf(&b, "database_uri = %s\n", esc(c.backendURI))
	b.WriteString("authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
	return b.String()
}

func (a *mlflowAuth) close() {
	if a != nil {
		_ = os.RemoveAll(a.dir)
	}
}

// environ returns MLflow's environment base with the auth app's settings forced: unchanged for the other
// auth modes, except that MLflow's auth variables are never inherited.
func (a *mlflowAuth) environ(base []string) []string {
	drop := map[string]bool{authConfigPathEnv: true, authAdminUsernameEnv: true, authAdminPasswordEnv: true, authBootstrappedEnv: true}
	if a != nil {
		for k := range a.env {
			drop[k] = true
		}
	}
	out := make([]string, 0, len(base)+len(drop))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			out = append(out, kv)
		}
	}
	if a != nil {
		for k, v := range a.env {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// serverArgs are the arguments of `mlflow server`: with MLflow's auth app in auth mode mlflow.
func (a *mlflowAuth) serverArgs() []string {
	if a == nil {
		return []string{"server"}
	}
	return []string{"server", "--app-name", "basic-auth"}
}

// pythonFor finds the Python interpreter that runs the mlflow executable at path: the one its #! line
// names (pip writes an absolute one into console scripts), else python3 beside it.
func pythonFor(path string) string {
	if f, err := os.Open(path); err == nil {
		line, _ := bufio.NewReader(f).ReadString('\n')
		f.Close()
		if p, ok := shebangInterpreter(line); ok {
			return p
		}
	}
	return filepath.Join(filepath.Dir(path), "python3")
}

// shebangInterpreter reads the interpreter from a #! line: "#!/venv/bin/python" or "#!/usr/bin/env python3".
func shebangInterpreter(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "#!")
	if !ok {
		return "", false
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", false
	}
	if filepath.Base(fields[0]) == "env" {
		if len(fields) < 2 || strings.HasPrefix(fields[1], "-") {
			return "", false
		}
		return fields[1], true
	}
	return fields[0], true
}
