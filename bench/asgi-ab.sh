#!/usr/bin/env bash
# Two ferrocorn binaries side by side under -k asgi: for each round, A then
# B, each started with 2 workers on a free loopback port, warmed up for 1 s,
# measured with `wrk -t1 -c50 -d4s`, then stopped. Prints req/s and how
# wrk's 50 connections were split between the two workers (ss, mid-run).
#
#   bench/asgi-ab.sh OLD NEW [APP] [ROUNDS]
#   bench/asgi-ab.sh /tmp/ferrocorn-old target/release/ferrocorn apps.asgi_cpu:app 3
#
# APP defaults to apps.asgi_cpu:app (bench/apps/asgi_cpu.py), ROUNDS to 3.
# Needs wrk and ss; the apps use only the standard library.
set -euo pipefail
A=$1
B=$2
APP=${3:-apps.asgi_cpu:app}
ROUNDS=${4:-3}
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
LOG=$(mktemp)
SPLIT=$(mktemp)
trap 'rm -f "$LOG" "$SPLIT"' EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

for r in $(seq "$ROUNDS"); do
  for label in A B; do
    bin=$A
    [[ $label == B ]] && bin=$B
    port=$(free_port)
    "$bin" -w 2 -k asgi --chdir "$BENCH_DIR" -b "127.0.0.1:$port" "$APP" >"$LOG" 2>&1 &
    master=$!
    for _ in $(seq 100); do
      grep -q "Ready: 2 workers" "$LOG" && break
      sleep 0.1
    done
    if ! grep -q "Ready: 2 workers" "$LOG"; then
      echo "round $r $label: $bin did not start" >&2
      kill "$master" 2>/dev/null || true
      exit 1
    fi
    wrk -t1 -c50 -d1s "http://127.0.0.1:$port/" >/dev/null
    workers=$(pgrep -P "$master" | tr '\n' ' ')
    (
      sleep 2
      for w in $workers; do
        echo -n "$(ss -tnp state established "( sport = :$port )" | grep -c "pid=$w," || true) "
      done
    ) >"$SPLIT" &
    counter=$!
    rps=$(wrk -t1 -c50 -d4s "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
    wait "$counter"
    kill "$master"
    wait "$master" 2>/dev/null || true
    echo "round $r $label $rps req/s, connections per worker: $(cat "$SPLIT")"
  done
done
