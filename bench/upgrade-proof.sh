#!/usr/bin/env bash
# Zero-downtime proof: under constant load (bench/loadgen.py: 100 clients, half
# keep-alive and half a new connection per request, plus long /slow requests)
# run (a) HUP, (b) USR2 -> new master ready -> TERM old master, with the app's
# code changed from v1 to v2 between generations, and (c) a USR2 whose new
# generation cannot import the app. Each scenario prints loadgen's JSON summary
# and PASS/FAIL; any failed or reset request, or a long request that did not
# complete, is a FAIL. Takes about 40 seconds.
#
#   bench/upgrade-proof.sh [--workers N] [--clients N] [--binary PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
workers=4 clients=100 bin=target/release/ferrocorn
while (($#)); do
  case $1 in
    --workers) workers=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --binary) bin=$2; shift 2 ;;
    *) echo "usage: $0 [--workers N] [--clients N] [--binary PATH]" >&2; exit 2 ;;
  esac
done
[[ -x $bin ]] || cargo build --release --quiet
bin=$(realpath "$bin")
loadgen=$(realpath bench/loadgen.py)
work=$(mktemp -d /tmp/ferrocorn-proof.XXXXXX)
master=
cleanup() {
  [[ -n $master ]] && kill -QUIT "$master" 2>/dev/null || true
  [[ -f $work/m.pid ]] && kill -QUIT "$(cat "$work/m.pid")" 2>/dev/null || true
  sleep 0.5
  pkill -KILL -f "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

write_app() { # VERSION [broken]
  {
    echo "import time"
    [[ ${2:-} == broken ]] && echo "raise RuntimeError('v-broken cannot start')"
    cat <<EOF
VERSION = "$1"

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(float(environ.get("QUERY_STRING") or "1"))
    body = VERSION.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
EOF
  } >"$work/app.py"
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
write_app v1
"$bin" --chdir "$work" -w "$workers" -b "127.0.0.1:$port" -p "$work/m.pid" \
  --graceful-timeout 20 app:app 2>"$work/server.log" &
master=$!
for _ in $(seq 100); do grep -q "Ready:" "$work/server.log" 2>/dev/null && break; sleep 0.1; done
grep -q "Ready:" "$work/server.log" || { cat "$work/server.log"; exit 1; }

fails=0
run() { # NAME ACTION...
  local name=$1; shift
  rm -f "$work/stop" "$work/started"
  python3 "$loadgen" --url "http://127.0.0.1:$port/" --clients "$clients" \
    --slow-path "/slow?1" --slow-clients 4 --until-file "$work/stop" \
    --started-file "$work/started" >"$work/$name.json" &
  local lg=$!
  for _ in $(seq 100); do [[ -f $work/started ]] && break; sleep 0.05; done
  sleep 1
  "$@"
  sleep 2
  touch "$work/stop"
  local rc=0
  wait "$lg" || rc=$?
  printf '%-16s %s  ' "$name" "$(cat "$work/$name.json")"
  if ((rc == 0)); then echo PASS; else echo FAIL; fails=$((fails + 1)); fi
}

hup() {
  write_app v2
  kill -HUP "$(cat "$work/m.pid")"
  for _ in $(seq 200); do grep -q "Reload complete" "$work/server.log" && return; sleep 0.05; done
  echo "reload did not complete" >&2
}

usr2() {
  write_app v3
  local old; old=$(cat "$work/m.pid")
  kill -USR2 "$old"
  for _ in $(seq 400); do [[ -s $work/m.pid.2 ]] && break; sleep 0.05; done
  [[ -s $work/m.pid.2 ]] || { echo "new master never ready" >&2; return; }
  kill -TERM "$old"
  for _ in $(seq 400); do [[ $(cat "$work/m.pid") != "$old" ]] && break; sleep 0.05; done
  master=
}

failed_usr2() {
  write_app v4 broken
  kill -USR2 "$(cat "$work/m.pid")"
  for _ in $(seq 400); do grep -q "Upgrade failed" "$work/server.log" && return; sleep 0.05; done
  echo "no 'Upgrade failed' in the log" >&2
}

echo "ferrocorn $("$bin" --version | awk '{print $NF}' | tr -d ')') workers=$workers clients=$clients+4 slow"
run hup hup
run usr2-term-old usr2
run failed-usr2 failed_usr2
grep -E "Reload complete|Upgrade|Handing over|Promoted" "$work/server.log" | sed 's/^/  log: /'
((fails == 0)) && echo "upgrade-proof: all scenarios passed" || { echo "upgrade-proof: $fails scenario(s) failed"; exit 1; }
