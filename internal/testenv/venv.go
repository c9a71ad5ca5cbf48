package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
)

// VenvEnv names a virtualenv with MLflow to use instead of the one internal/testenv/setup.sh creates by default.
const VenvEnv = "DEPLOY_MLFLOW_VENV"

// ErrNoVenv means the MLflow virtualenv is missing; run internal/testenv/setup.sh.
var ErrNoVenv = errors.New("MLflow virtualenv not found")

// Venv returns the virtualenv with MLflow, scikit-learn, psycopg2 and google-cloud-storage: $DEPLOY_MLFLOW_VENV,
// or the path internal/testenv/setup.sh uses by default ($XDG_CACHE_HOME or ~/.cache, then
// deploy-mlflow/venv-mlflow-<config.DefaultMLflowVersion>).
func Venv() (string, error) {
	dir := os.Getenv(VenvEnv)
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("%w: cannot find the home directory (%v); set %s to the virtualenv that internal/testenv/setup.sh printed", ErrNoVenv, err, VenvEnv)
			}
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "deploy-mlflow", "venv-mlflow-"+config.DefaultMLflowVersion)
	}
	if _, err := os.Stat(filepath.Join(dir, "bin", "mlflow")); err != nil {
		return "", fmt.Errorf("%w at %s (%v): run make setup (internal/testenv/setup.sh), or set %s to a virtualenv with mlflow==%s, scikit-learn, psycopg2 and google-cloud-storage",
			ErrNoVenv, dir, err, VenvEnv, config.DefaultMLflowVersion)
	}
	return dir, nil
}

// MLflowCommand returns the mlflow executable in Venv.
func MLflowCommand() (string, error) {
	dir, err := Venv()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "bin", "mlflow"), nil
}

// Python returns the python interpreter in Venv.
func Python() (string, error) {
	dir, err := Venv()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "bin", "python"), nil
}
