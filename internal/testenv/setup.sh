#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine, and nothing twice:
# PostgreSQL, the CNCF distribution registry and Chromium (for the browser test) from Debian's packages, and a Python virtualenv
# with MLflow (the version the action deploys by default) and its auth extra (Flask-WTF), its PostgreSQL and GCS
# drivers and scikit-learn; an existing virtualenv gets what it lacks.
# Prints the virtualenv's path as its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
mlflow_version=$(sed -n 's/^const DefaultMLflowVersion = "\(.*\)"$/\1/p' "$here/internal/config/defaults.go")
[ -n "$mlflow_version" ] || { echo "setup: cannot read DefaultMLflowVersion from internal/config/defaults.go" >&2; exit 1; }

need=()
command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v chromium >/dev/null 2>&1 || [ -n "${DEPLOY_MLFLOW_CHROMIUM:-}" ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq >&2
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  # Debian starts services on install; the tests start their own on loopback ports.
  $sudo_cmd systemctl stop docker-registry postgresql >/dev/null 2>&1 || true
  $sudo_cmd service docker-registry stop >/dev/null 2>&1 || true
  $sudo_cmd service postgresql stop >/dev/null 2>&1 || true
fi

venv="${DEPLOY_MLFLOW_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/deploy-mlflow/venv-mlflow-$mlflow_version}"
# mlflow[auth] brings Flask-WTF, which MLflow's own authentication app (--app-name basic-auth) needs.
packages=("mlflow[auth]==$mlflow_version" psycopg2-binary google-cloud-storage scikit-learn)
imports='import mlflow, flask_wtf, sklearn, psycopg2, google.cloud.storage'
if [ ! -x "$venv/bin/mlflow" ]; then
  echo "setup: creating $venv with mlflow[auth]==$mlflow_version" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "${packages[@]}" >&2
elif ! "$venv/bin/python" -c "$imports" >/dev/null 2>&1; then
  # An existing virtualenv (named by the MLflow version) that lacks a package gets what is missing; pip
  # keeps what is installed at the pinned versions.
  echo "setup: adding what is missing to $venv (mlflow[auth]==$mlflow_version and the rest)" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "${packages[@]}" >&2
fi
"$venv/bin/python" -c "$imports" || { echo "setup: $venv still cannot import what the tests need ($imports); remove it and run setup again" >&2; exit 1; }
echo "$venv"
