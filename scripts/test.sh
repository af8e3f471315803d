#!/usr/bin/env bash
# Every test, as CI runs them (`make test` runs scripts/setup.sh first):
#   Rust: the plugin (golden fixtures against onnxruntime, bundles, ops), the host (units, and
#   end-to-end tests that run the real binary, strict protocol peers, the WASM runtime and the
#   Fluent Bit calling convention), then Python: training, export, parity on real rows,
#   MLflow, Airflow, Kubeflow, the DaemonSet manifests, Prometheus rules and the dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."
export FLOWTAG_DATASETS=${FLOWTAG_DATASETS:-$PWD/../shared/datasets}
[ -d "$FLOWTAG_DATASETS" ] || { echo "no datasets at $FLOWTAG_DATASETS (set FLOWTAG_DATASETS)" >&2; exit 2; }

# Bold only on a terminal, and never with NO_COLOR (a CI log or a pipe gets plain text).
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
step() { printf '\n%s[test]%s %s\n' "$B" "$N" "$*"; }
started=$SECONDS

step "WASM filter module"
scripts/build-wasm.sh

step "Rust: cargo test --release (plugin, host)"
# bindings/python is a CPython extension: setup.sh builds it and pytest tests it.
cargo test --release --workspace --exclude flowtag-python

step "Fuzzing: a short pass over every target (scripts/fuzz.sh 600 is the long one)"
scripts/fuzz.sh 5

step "Python: pytest"
.venv/bin/python -m pytest -q

step "all tests passed in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
