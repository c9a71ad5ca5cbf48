# make demo: deploys MLflow to local stand-ins of Google Cloud and leaves it up until Ctrl-C.
# make test: every test, with the real PostgreSQL, registry, MLflow and fake-gcs-server they need.
# Both install what is missing first (Debian packages and a Python virtualenv; see internal/testenv/setup.sh).

GO ?= go
SETUP := internal/testenv/setup.sh

.PHONY: demo test setup build bench

setup:
	@DEPLOY_MLFLOW_VENV="$$(bash $(SETUP) | tail -n 1)" && echo "MLflow virtualenv: $$DEPLOY_MLFLOW_VENV"

demo:
	@DEPLOY_MLFLOW_VENV="$$(bash $(SETUP) | tail -n 1)" $(GO) run ./internal/demo

test:
	@export DEPLOY_MLFLOW_VENV="$$(bash $(SETUP) | tail -n 1)" && \
	$(GO) vet ./... && \
	$(GO) test -count=1 -timeout 40m ./...

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/deploy-mlflow .
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -o bin/deploy-mlflow-server ./server

bench:
	$(GO) test -run '^$$' -bench Push ./internal/image/
