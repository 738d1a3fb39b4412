#!/usr/bin/env bash
# HTTP/2 hello world over h2c (prior knowledge): ferrocorn against granian
# --http 2, two workers each, loaded by h2load (Debian's nghttp2-client) with
# 10 connections x 100 concurrent streams. Rounds alternate between the
# servers; the medians and their ratio are printed.
#
#   bench/h2.sh                 5 rounds of 200,000 requests each
#   ROUNDS=7 N=400000 KIND=gthread bench/h2.sh
#
# Environment:
#   FERROCORN_BIN  the ferrocorn binary (default target/release/ferrocorn)
#   GRANIAN        the granian executable (default bench/.venv/bin/granian,
#                  from bench/run.sh's venv)
#   KIND           ferrocorn's worker class: sync (default) or gthread
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
ROUNDS=${ROUNDS:-5}
N=${N:-200000}
KIND=${KIND:-sync}
FERRO=${FERROCORN_BIN:-$REPO_ROOT/target/release/ferrocorn}
GRANIAN=${GRANIAN:-$BENCH_DIR/.venv/bin/granian}
command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
[ -x "$FERRO" ] || { echo "no ferrocorn at $FERRO (cargo build --release)" >&2; exit 1; }
[ -x "$GRANIAN" ] || { echo "no granian at $GRANIAN (bench/run.sh installs it)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; PID=""; }
trap cleanup EXIT

start() { # start NAME PORT
  local extra=()
  [ "$KIND" = gthread ] && extra=(--threads 4)
  case "$1" in
    ferrocorn) "$FERRO" -w 2 -k "$KIND" "${extra[@]}" -b "127.0.0.1:$2" --chdir "$BENCH_DIR" \
                 --no-control-socket --http-protocols h1,h2 --http2-cleartext prior-knowledge \
                 apps.hello:app >/dev/null 2>&1 & ;;
    granian) "$GRANIAN" --interface wsgi --http 2 --workers 2 --host 127.0.0.1 --port "$2" \
               --working-dir "$BENCH_DIR" --no-access-log apps.hello:app >/dev/null 2>&1 & ;;
  esac
  PID=$!
  for _ in $(seq 100); do
    if h2load -n 10 -c 1 "http://127.0.0.1:$2/" 2>/dev/null | grep -q "10 succeeded"; then return 0; fi
    sleep 0.1
  done
  echo "$1 did not answer" >&2; exit 1
}

round() { # round NAME -> req/s
  local port; port=$(free_port)
  start "$1" "$port"
  h2load -n 20000 -c 10 -m 100 "http://127.0.0.1:$port/" >/dev/null 2>&1 # warm-up
  local out; out=$(h2load -n "$N" -c 10 -m 100 "http://127.0.0.1:$port/" 2>&1)
  cleanup
  local ok; ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
  [ "$ok" = "$N" ] || { echo "$1: only $ok of $N succeeded" >&2; grep -E "^(requests|status)" <<<"$out" >&2; }
  sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
F=(); G=()
for r in $(seq "$ROUNDS"); do
  if ((r % 2)); then F+=("$(round ferrocorn)"); G+=("$(round granian)")
  else G+=("$(round granian)"); F+=("$(round ferrocorn)"); fi
  echo "round $r: ferrocorn-$KIND ${F[-1]} req/s, granian ${G[-1]} req/s" >&2
done
fm=$(printf '%s\n' "${F[@]}" | median); gm=$(printf '%s\n' "${G[@]}" | median)
echo "h2c hello, 2 workers, h2load -n $N -c 10 -m 100, $ROUNDS rounds (medians):"
echo "  ferrocorn -k $KIND  $fm req/s"
echo "  granian --http 2   $gm req/s"
awk -v f="$fm" -v g="$gm" 'BEGIN {printf "  ratio ferrocorn/granian: %.2fx\n", f/g}'
