#!/usr/bin/env bash
# Slow-client attack bench: slowhttptest keeps 1,000 slowloris connections
# (headers trickling in) and 200 slow-body connections (a body trickling in)
# open against each server while bench/probe.py, a normal client, keeps
# making requests on fresh connections and reports its success rate and
# latency. Results: bench/results/slowloris.md (and the raw logs beside it).
#
#   bench/slowloris.sh [SERVER ...]    (default: all of the below)
#
# Servers: ferrocorn-sync ferrocorn-gthread ferrocorn-sync-wc300 (only 300
# connection slots per worker, fewer than the attack opens) gunicorn-sync
# gunicorn-gthread, 2 workers each, hello-world app, default settings
# otherwise (gthread: --threads 4). Needs slowhttptest (apt), and gunicorn in bench/.venv
# (bench/run.sh creates it). Environment: FERROCORN_BIN, ATTACK_SECONDS
# (default 40), PROBE_SECONDS (default 25), PROBE_TIMEOUT (default 5).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
VENV="$BENCH_DIR/.venv"
OUT="$BENCH_DIR/results"
BIN="${FERROCORN_BIN:-$REPO_ROOT/target/release/ferrocorn}"
ATTACK_SECONDS="${ATTACK_SECONDS:-40}"
PROBE_SECONDS="${PROBE_SECONDS:-25}"
PROBE_TIMEOUT="${PROBE_TIMEOUT:-5}"
log() { printf '[slowloris.sh] %s\n' "$*" >&2; }

if ! command -v slowhttptest >/dev/null 2>&1; then
  log "installing slowhttptest"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slowhttptest >/dev/null \
    || { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q slowhttptest >/dev/null; }
fi
[ -x "$BIN" ] || (cd "$REPO_ROOT" && cargo build --release)
ulimit -n 20000 2>/dev/null || true
mkdir -p "$OUT"

servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(ferrocorn-sync ferrocorn-gthread ferrocorn-sync-wc300 gunicorn-sync gunicorn-gthread)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

server_cmd() {
  local name=$1 port=$2
  case $name in
    ferrocorn-sync) echo "$BIN -w 2 -b 127.0.0.1:$port --chdir $BENCH_DIR apps.hello:app" ;;
    ferrocorn-gthread) echo "$BIN -w 2 -k gthread --threads 4 -b 127.0.0.1:$port --chdir $BENCH_DIR apps.hello:app" ;;
    # Fewer slots than attackers: exercises eviction at the connection limit.
    ferrocorn-sync-wc300) echo "$BIN -w 2 --worker-connections 300 -b 127.0.0.1:$port --chdir $BENCH_DIR apps.hello:app" ;;
    gunicorn-sync) echo "$VENV/bin/gunicorn -w 2 -b 127.0.0.1:$port --chdir $BENCH_DIR apps.hello:app" ;;
    gunicorn-gthread) echo "$VENV/bin/gunicorn -w 2 -k gthread --threads 4 -b 127.0.0.1:$port --chdir $BENCH_DIR apps.hello:app" ;;
    *) log "unknown server $name"; return 1 ;;
  esac
}

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
}
trap cleanup EXIT

table="$OUT/slowloris.md"
{
  echo "slowhttptest: 1000 slowloris (-H -c 1000 -r 200 -i 5) + 200 slow-body (-B -c 200 -r 100 -i 5 -s 65536) connections for ${ATTACK_SECONDS}s;"
  echo "probe: 4 threads, GET / on a fresh connection every 50 ms each, for ${PROBE_SECONDS}s starting 8 s into the attack; success = 200 within ${PROBE_TIMEOUT}s."
  echo
  echo "| server | probe requests | success | p50 ms | p99 ms (successful) | slowhttptest verdict (slowloris / slow body) |"
  echo "|---|---|---|---|---|---|"
} > "$table"

for name in "${servers[@]}"; do
  port=$(free_port)
  cmd=$(server_cmd "$name" "$port")
  log "$name: $cmd"
  setsid $cmd >"$OUT/slowloris-$name-server.log" 2>&1 &
  spid=$!
  PIDS+=("$spid")
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.2
  done
  url="http://127.0.0.1:$port/"
  slowhttptest -H -c 1000 -r 200 -i 5 -x 24 -p 3 -l "$ATTACK_SECONDS" -u "$url" \
    >"$OUT/slowloris-$name-headers.log" 2>&1 &
  a1=$!
  slowhttptest -B -c 200 -r 100 -i 5 -x 10 -s 65536 -p 3 -l "$ATTACK_SECONDS" -u "$url" \
    >"$OUT/slowloris-$name-body.log" 2>&1 &
  a2=$!
  sleep 8
  result=$(python3 "$BENCH_DIR/probe.py" "$port" "$PROBE_SECONDS" 4 "$PROBE_TIMEOUT")
  log "$name: $result"
  wait "$a1" "$a2" || true
  verdict() { sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -a "service available" | tail -1 | sed 's/.*service available: *//; s/[^A-Za-z]//g'; }
  v1=$(verdict "$OUT/slowloris-$name-headers.log"); v2=$(verdict "$OUT/slowloris-$name-body.log")
  python3 - "$name" "$result" "${v1:-?}" "${v2:-?}" >>"$table" <<'PY'
import json, sys
name, r, v1, v2 = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
print("| %s | %d | %.1f%% | %s | %s | %s / %s |" % (
    name, r["requests"], r["success_pct"], r["p50_ms"], r["p99_ms"], v1, v2))
PY
  kill -TERM -- "-$spid" 2>/dev/null || true
  sleep 2
  kill -KILL -- "-$spid" 2>/dev/null || true
done
cat "$table"
