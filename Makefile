# make demo: deploys MLflow to local stand-ins of Google Cloud and leaves it up until Ctrl-C.
# make test: go vet, staticcheck, then every test under the race detector, with the real PostgreSQL,
# registry, MLflow and fake-gcs-server they need.
# Both install what is missing first (Debian packages and a Python virtualenv; see internal/testenv/setup.sh).
# make test-short: the inner loop, installing nothing: -short skips the tests that need PostgreSQL, the
# registry or MLflow; the race detector and a shuffled order run on the rest.
# make fuzz: each fuzz target for FUZZTIME (the seed corpora under testdata/fuzz run in every go test).

GO ?= go
SETUP := internal/testenv/setup.sh

.PHONY: demo test test-short fuzz setup build bench release-image actionlint-examples

setup:
	@DEPLOY_MLFLOW_VENV="$$(bash $(SETUP) | tail -n 1)" && echo "MLflow virtualenv: $$DEPLOY_MLFLOW_VENV"

demo:
	@DEPLOY_MLFLOW_VENV="$$(bash $(SETUP) | tail -n 1)" $(GO) run ./internal/demo

test:
	@export DEPLOY_MLFLOW_VENV="$$(bash $(SETUP) | tail -n 1)" && \
	$(GO) vet ./... && \
	$(GO) tool staticcheck ./... && \
	$(GO) tool actionlint .github/workflows/*.yml examples/*.yml && \
	$(MAKE) --no-print-directory actionlint-examples && \
	$(GO) test -race -count=1 -timeout 60m ./...

test-short:
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) test -short -race -shuffle=on -count=1 -timeout 15m ./...

FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/deploy-mlflow .
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -o bin/deploy-mlflow-server ./server

# actionlint checks an action's metadata only where a workflow uses it as ./: lint each example with the
# action as ./, so that action.yml's runs section and every input and output the examples use are checked
# against action.yml.
actionlint-examples:
	@for f in examples/*.yml; do \
	  sed 's|uses: org/deploy-mlflow@v1|uses: ./|' "$$f" | $(GO) tool actionlint -stdin-filename "$$f" - || exit 1; \
	done

# make release-image RELEASE_REF=ghcr.io/OWNER/deploy-mlflow:v1.2.3: builds the action's image from this
# commit without Docker (internal/release) and pushes it, with REGISTRY_USER and REGISTRY_TOKEN if set.
# Labelled with the commit and dated by it, so the same commit gives the same digest.
RELEASE_SOURCE ?= $(if $(GITHUB_REPOSITORY),$(GITHUB_SERVER_URL)/$(GITHUB_REPOSITORY),$(shell git remote get-url origin 2>/dev/null))
release-image:
	@test -n "$(RELEASE_REF)" || { echo "set RELEASE_REF=REGISTRY/REPOSITORY:TAG"; exit 1; }
	$(GO) run ./internal/release/cmd -ref "$(RELEASE_REF)" -source "$(RELEASE_SOURCE)" \
	  -revision "$$(git rev-parse HEAD)" -created "$$(git log -1 --format=%cI)" $(RELEASE_FLAGS)

# make bench: measures the server, the image pushes and the action against their baselines (internal/bench)
# and writes BENCHMARKS.md; about 8 minutes on 2 cores, and its first run also generates a 1 GB base image
# (cached under ~/.cache/deploy-mlflow/bench). BENCH_FLAGS='-groups registry' runs one group.
bench:
	@export DEPLOY_MLFLOW_VENV="$$(bash $(SETUP) | tail -n 1)" && \
	$(GO) run ./internal/bench -out BENCHMARKS.md $(BENCH_FLAGS)
