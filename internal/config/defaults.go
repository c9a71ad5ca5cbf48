package config

// DefaultMLflowVersion is the MLflow release the action deploys unless told otherwise. The tests and the
// demo run this same version from PyPI (internal/testenv/setup.sh reads it from here), so it is the newest
// release whose packages all install: mlflow 3.18.0 needs mlflow-skinny 3.18.0, which PyPI does not serve.
const DefaultMLflowVersion = "3.17.2"
