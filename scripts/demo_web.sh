#!/usr/bin/env bash
# The web demo (`make demo-web`): learn a generated shop's normal requests as a site baseline
# (`flowtag-train baseline --format combined`), then run examples/web.toml with it and the shipped
# `web-attacks` model, send the shop's requests (with labelled injected attacks) as nginx sends
# its access log through syslog, and show what the SIEM would get.
#
#   scripts/demo_web.sh [--count N] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=20000
KEEP=0
while (($#)); do
    case "$1" in
        --count) COUNT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "usage: scripts/demo_web.sh [--count N] [--keep]" >&2; exit 2 ;;
    esac
done
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
say() { printf '%s[web demo]%s %s\n' "$B" "$N" "$*"; }

cargo build --release -q -p flowtag-host
FLOWTAG=$PWD/target/release/flowtag
DIR=$(mktemp -d /tmp/flowtag-web.XXXXXX)
mkdir -p "$DIR/logs" "$DIR/out"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export FLOWTAG_WEB_DIR=$DIR FLOWTAG_WEB_API_PORT=$(free_port) FLOWTAG_WEB_SYSLOG_PORT=$(free_port)
cleanup() {
    [ -n "${HOST:-}" ] && kill "$HOST" 2>/dev/null || true
    [ "$KEEP" = 1 ] || rm -rf "$DIR"
}
trap cleanup EXIT

say "a week of the shop's own log (a few attacks among it): flowtag gen --schema access-log"
"$FLOWTAG" gen --schema access-log --format combined --count 50000 --attack-share 0.002 --seed 21 > "$DIR/history.log"
say "its site baseline: flowtag-train baseline --format combined"
.venv/bin/flowtag-train baseline --format combined --input "$DIR/history.log" --out "$DIR/shop-site" --name shop-site >/dev/null
sed "s#models/web-site#$DIR/shop-site#" examples/web.toml > "$DIR/web.toml"
"$FLOWTAG" validate --config "$DIR/web.toml" >/dev/null
"$FLOWTAG" run --config "$DIR/web.toml" 2>"$DIR/flowtag.log" &
HOST=$!
say "today's $COUNT requests through syslog (UDP 127.0.0.1:$FLOWTAG_WEB_SYSLOG_PORT), 10 % of them attacks"
"$FLOWTAG" gen --schema access-log --format json --count "$COUNT" --attack-share 0.1 --seed 22 > "$DIR/today.jsonl"
python3 scripts/demo_web_report.py --api "127.0.0.1:$FLOWTAG_WEB_API_PORT" --syslog "127.0.0.1:$FLOWTAG_WEB_SYSLOG_PORT" \
    --requests "$DIR/today.jsonl" --archive "$DIR/out/requests.jsonl" --siem "$DIR/out/siem.jsonl"
kill -TERM "$HOST" && wait "$HOST" || true
HOST=
[ "$KEEP" = 1 ] && say "kept $DIR"
exit 0
