#!/usr/bin/env bash
# The end-to-end demo (`make demo`): build flowtag, write synthetic UNSW-NB15-style flows (with
# labelled scans, floods and brute force) into a log that grows while the host tails it, tag every
# flow with the shipped unsupervised model, and show what came out.
#
#   scripts/demo.sh [--count N] [--rate R] [--model DIR] [--keep]
#
# Everything goes to a fresh temporary directory (printed at the end; removed unless --keep).
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=200000
RATE=50000
MODEL=models/unsw-unsupervised
KEEP=0
while (($#)); do
    case "$1" in
        --count) COUNT=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --model) MODEL=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "usage: scripts/demo.sh [--count N] [--rate R] [--model DIR] [--keep]" >&2; exit 2 ;;
    esac
done

# Bold only on a terminal, and never with NO_COLOR (a CI log or a pipe gets plain text).
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
say() { printf '%s[demo]%s %s\n' "$B" "$N" "$*"; }

say "building flowtag (release)"
cargo build --release -q -p flowtag-host
FLOWTAG=$PWD/target/release/flowtag

DIR=$(mktemp -d /tmp/flowtag-demo.XXXXXX)
mkdir -p "$DIR/flows" "$DIR/out"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export FLOWTAG_DEMO_DIR=$DIR FLOWTAG_DEMO_API_PORT=$PORT
CONFIG=examples/demo.toml
[ "$MODEL" = models/unsw-unsupervised ] || { sed "s#models/unsw-unsupervised#$MODEL#" examples/demo.toml > "$DIR/demo.toml"; CONFIG=$DIR/demo.toml; }

cleanup() {
    [ -n "${GEN:-}" ] && kill "$GEN" 2>/dev/null || true
    [ -n "${HOST:-}" ] && kill "$HOST" 2>/dev/null || true
    [ "$KEEP" = 1 ] || rm -rf "$DIR"
}
trap cleanup EXIT

"$FLOWTAG" validate --config "$CONFIG" >/dev/null
say "flowtag run --config $CONFIG  (model $MODEL, metrics on 127.0.0.1:$PORT)"
"$FLOWTAG" run --config "$CONFIG" 2>"$DIR/flowtag.log" &
HOST=$!
say "writing $COUNT flows at $RATE/s to $DIR/flows/flows.csv (flowtag gen --schema unsw)"
"$FLOWTAG" gen --schema unsw --count "$COUNT" --rate "$RATE" --seed 7 >"$DIR/flows/flows.csv" &
GEN=$!

python3 scripts/demo_report.py --api "127.0.0.1:$PORT" --count "$COUNT" --out "$DIR/out/tagged.jsonl" --siem "$DIR/out/siem.jsonl" --log "$DIR/flowtag.log"
status=$?
kill -TERM "$HOST" && wait "$HOST" || true
HOST=
[ "$KEEP" = 1 ] && say "kept $DIR (tagged records in $DIR/out/tagged.jsonl)"
exit $status
