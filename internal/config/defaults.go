package config

// DefaultMLflowVersion is the MLflow release the action deploys unless told otherwise. The tests and the
// demo run this same version from PyPI (internal/testenv/setup.sh reads it from here).
const DefaultMLflowVersion = "3.17.2"
