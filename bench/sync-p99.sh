#!/usr/bin/env bash
# Latency of the sync worker under a crowd, side by side with gunicorn's:
# the 10 ms app (bench/apps/io.py), 2 sync workers each, 200 keep-alive
# connections from wrk, alternating runs; prints req/s, p50, p99 and wrk's
# socket errors (timeouts count requests slower than 2 s, which the
# percentiles leave out).
#
#   bench/sync-p99.sh [ROUNDS]
#
# Environment: FERROCORN_BIN (default target/release/ferrocorn), GUNICORN
# (default bench/.venv/bin/gunicorn, installed by bench/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
ferrocorn=${FERROCORN_BIN:-target/release/ferrocorn}
gunicorn=${GUNICORN:-bench/.venv/bin/gunicorn}
command -v wrk >/dev/null || { echo "sync-p99: wrk is missing (apt-get install wrk)" >&2; exit 1; }

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # name program args...
  local name=$1 port pid out
  shift
  port=$(free_port)
  "$@" -w 2 -b "127.0.0.1:$port" --chdir "$PWD" bench.apps.io:app >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$port/" && break; sleep 0.1; done
  out=$(wrk -t2 -c200 -d10s --latency "http://127.0.0.1:$port/")
  printf '%-10s %s  p50 %s  p99 %s  %s\n' "$name" \
    "$(grep Requests/sec <<<"$out" | awk '{print $2 " req/s"}')" \
    "$(awk '$1=="50%"{print $2}' <<<"$out")" "$(awk '$1=="99%"{print $2}' <<<"$out")" \
    "$(grep -o 'timeout [0-9]*' <<<"$out" || echo 'timeout 0')"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

for _ in $(seq "$rounds"); do
  run ferrocorn "$ferrocorn"
  run gunicorn "$gunicorn"
done
