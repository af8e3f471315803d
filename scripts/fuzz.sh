#!/usr/bin/env bash
# Fuzz every target for a set time (default 10 s each; the long pass is 600):
#   scripts/fuzz.sh [SECONDS] [--target json,decode,...]
# Prints executions and crashes per target; exits 1 on a crash, with the input kept in
# target/fuzz-crashes/ (make it a regression test). See fuzz/src/main.rs for the targets.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
[ $# -gt 0 ] && shift
cargo build --release -q -p flowtag-fuzz
exec target/release/flowtag-fuzz --seconds "$seconds" "$@"
