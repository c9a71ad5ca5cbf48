package config

import "time"

// DefaultMLflowVersion is the MLflow release the action deploys unless told otherwise. The tests and the
// demo run this same version from PyPI (internal/testenv/setup.sh reads it from here), so it is the newest
// release whose packages all install: mlflow 3.18.0 needs mlflow-skinny 3.18.0, which PyPI does not serve.
const DefaultMLflowVersion = "3.17.2"

// Defaults for optional inputs.
const (
	DefaultRegion       = "us-central1"
	DefaultService      = "mlflow"
	DefaultMemory       = "2Gi"
	DefaultCPU          = "1"
	DefaultMinInstances = 0
	DefaultMaxInstances = 3
	DefaultConcurrency  = 80
	DefaultTimeout      = 300 * time.Second
	DefaultWaitTimeout  = 10 * time.Minute
	// DefaultSecretVersions pins secret versions at deploy time, as Cloud Run's docs recommend.
	DefaultSecretVersions = SecretVersionsPinned
)

// DefaultBaseImage is the official MLflow image with the PostgreSQL and GCS extras.
func DefaultBaseImage(mlflowVersion string) string {
	return "ghcr.io/mlflow/mlflow:v" + mlflowVersion + "-full"
}
