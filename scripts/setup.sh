#!/usr/bin/env bash
# Install everything flowtag needs on a bare machine of our kind (Debian 12, Rust stable via
# rustup, Python 3.11): the wasm32-wasip1 target, Debian packages for the monitoring tests, and
# one Python virtual environment (.venv) with the pinned requirements.lock plus our two packages.
# Idempotent: each step is skipped when already done, so `make test` can always call it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Bold only on a terminal, and never with NO_COLOR (a CI log or a pipe gets plain text).
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
say() { printf '%s[setup]%s %s\n' "$B" "$N" "$*"; }

# --- Rust ------------------------------------------------------------------------------------
if ! rustup target list --installed | grep -qx wasm32-wasip1; then
    say "adding Rust target wasm32-wasip1"
    rustup target add wasm32-wasip1
fi

# --- Debian packages -------------------------------------------------------------------------
# prometheus (+ promtool) and prometheus-alertmanager (+ amtool) for the monitoring tests;
# Node.js and npm for schema-check/ (Grafana's dashboard schema, prometheus-operator's CRDs);
# softflowd, pmacct and fprobe (NetFlow/IPFIX exporters; fprobe captures in a network namespace
# the test makes with iproute2's `ip netns`) and nfdump (nfcapd, a reference collector) for the
# netflow source's tests; nginx-light and apache2 write real access logs for the `combined`
# decoder's.
# postgresql: the server MLflow's and Airflow's metadata live in for the tests that start one.
APT_PACKAGES=(prometheus prometheus-alertmanager softflowd pmacct fprobe iproute2 nfdump nginx-light apache2 postgresql)
command -v node >/dev/null && command -v npm >/dev/null || APT_PACKAGES+=(nodejs npm)
# Java 17 for Spark (pyspark 4 runs on 17 or 21): the preparation and batch-scoring tests.
command -v java >/dev/null || APT_PACKAGES+=(openjdk-17-jre-headless)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    # The packages' init scripts try to start daemons; the tests start their own on 127.0.0.1.
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Stop anything the packages started, so ports 9090/9093 stay free.
    $SUDO pkill -x prometheus 2>/dev/null || true
    $SUDO pkill -f prometheus-alertmanager 2>/dev/null || true
    $SUDO pkill -x nfcapd 2>/dev/null || true
    $SUDO pkill -x softflowd 2>/dev/null || true
    $SUDO pkill -x fprobe 2>/dev/null || true
    $SUDO pkill -f 'pmacctd|nfacctd|sfacctd|uacctd' 2>/dev/null || true
    $SUDO pkill -x nginx 2>/dev/null || true
    $SUDO pkill -x apache2 2>/dev/null || true
    $SUDO pkill -x postgres 2>/dev/null || true
fi

# --- Python ----------------------------------------------------------------------------------
PY=${PYTHON:-python3.11}
stamp=.venv/.flowtag-setup
want="$(sha256sum requirements.lock requirements-nodeps.lock onnx-export/pyproject.toml training/pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "creating the Python environment (.venv) from requirements.lock"
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -r requirements.lock
    .venv/bin/pip install -q --no-deps -r requirements-nodeps.lock
    .venv/bin/pip install -q --no-deps -e onnx-export -e training
    echo "$want" > "$stamp"
fi

# --- npm ---------------------------------------------------------------------------------------
stamp=schema-check/node_modules/.flowtag-setup
want="$(sha256sum schema-check/package-lock.json | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing schema-check/ npm packages (package-lock.json)"
    (cd schema-check && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
fi

# --- Python bindings of the plugin ------------------------------------------------------------
# flowtag_native (bindings/python, pyo3) into .venv, for Spark batch scoring: maturin runs cargo
# on the workspace's target/, so it rebuilds only what changed since the last build.
say "building the Python bindings (bindings/python) into .venv"
VIRTUAL_ENV=$ROOT/.venv PATH="$ROOT/.venv/bin:$PATH" .venv/bin/maturin develop --release --quiet -m bindings/python/Cargo.toml

say "ready: $ROOT/.venv (with flowtag_native), schema-check/node_modules, Rust targets, Debian packages"
