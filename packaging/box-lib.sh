# shellcheck shell=bash
# Shared by packaging/systemd-test.sh and packaging/e2e.sh (sourced, not run).
# A fresh systemd-box per run: a copy of a pristine base box (debootstrapped
# once, then reused), booted, and powered off and deleted on exit.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sbox=${SYSTEMD_BOX:-$root/../shared/tools/systemd-box}
[[ -x $sbox ]] || sbox=/work/shared/tools/systemd-box
base=${FC_BOX_BASE:-/var/tmp/ferrocorn-box-base}
work=$(mktemp -d /var/tmp/ferrocorn-test.XXXXXX)
box=$work/box
passed=0
failed=0
failures=()
t0=$SECONDS
bg_pids=()

log() { printf '[%4ds] %s\n' $((SECONDS - t0)) "$*" >&2; }
pass() { passed=$((passed + 1)); log "PASS $*"; }
fail() { failed=$((failed + 1)); failures+=("$*"); log "FAIL $*"; }
check() { # check "description" command...
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

cleanup() {
  local rc=$?
  for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -f $box.state ]]; then
    if ((failed)) || [[ $rc != 0 ]]; then
      log "journal of the box (last 60 lines):"
      "$sbox" exec "$box" journalctl --no-pager -n 60 -o short-monotonic 2>/dev/null | sed 's/^/    /' >&2 || true
    fi
    "$sbox" stop "$box" >/dev/null 2>&1 || true
  fi
  if [[ -n ${bind_mounted:-} ]]; then
    umount "$box" 2>/dev/null || umount -l "$box" 2>/dev/null || true
  fi
  if [[ -n ${KEEP_BOX:-} ]]; then
    log "box kept in $box (stopped)"
  elif ! mountpoint -q "$box"; then
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_box() { "$sbox" exec "$box" "$@"; }

# A free TCP port on the (shared) loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_box() {
  if [[ ! -x $base/lib/systemd/systemd ]]; then
    log "creating the base box $base (debootstrap, a few minutes, once)"
    "$sbox" create "$base" >/dev/null
  fi
  cp -a "$base" "$box"
  # The box's root must be a mount point: systemd sets up the per-service
  # mount namespace (PrivateTmp=, ProtectSystem=, ...) by moving a bind
  # mount of / onto /, which fails with EINVAL on a plain chroot directory.
  mount --bind "$box" "$box"
  bind_mounted=1
  "$sbox" boot "$box" >/dev/null
  log "box $box is up"
}

# The demo app in /srv/demo and its instance config /etc/ferrocorn/demo.toml.
deploy_demo() { # port
  in_box mkdir -p /srv/demo /etc/ferrocorn
  "$sbox" cp "$box" "$root/packaging/testapp/demo.py" /srv/demo/demo.py
  in_box chmod -R a+rX /srv/demo
  local cfg=$work/demo.toml
  cat >"$cfg" <<TOML
# demo instance for the systemd-box tests
wsgi_app = "demo:app"
chdir = "/srv/demo"
bind = ["127.0.0.1:$1"]
workers = 2
graceful_timeout = 20
raw_env = ["DEMO_IMPORT_DELAY=1.5"]
TOML
  "$sbox" cp "$box" "$cfg" /etc/ferrocorn/demo.toml
}

# Start 100 clients (half keep-alive, half a new connection per request)
# plus 4 on /slow (2 s requests) against URL, until stop_load; the JSON
# summary of bench/loadgen.py lands in $work/load.json.
start_load() { # url
  rm -f "$work/load.stop" "$work/load.json" "$work/load.started"
  python3 "$root/bench/loadgen.py" --url "$1" --clients 100 --slow-path /slow --slow-clients 4 \
    --until-file "$work/load.stop" --started-file "$work/load.started" >"$work/load.json" 2>"$work/load.err" &
  load_pid=$!
  bg_pids+=("$load_pid")
  wait_for 10 test -e "$work/load.started" || true
  sleep 1
}
# Stop the load; true when no request failed. Prints the summary.
stop_load() {
  touch "$work/load.stop"
  local rc=0
  wait "$load_pid" || rc=$?
  log "load: $(cat "$work/load.json" 2>/dev/null) $(tail -n 3 "$work/load.err" 2>/dev/null)"
  [[ $rc == 0 ]] && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["failed"]==0 and d["slow_failed"]==0 and d["ok"]>0 else 1)' "$work/load.json"
}

unit_prop() { in_box systemctl show -P "$2" "$1"; }
# Worker PIDs (children of the unit's main PID), sorted, on one line.
workers_of() { # unit
  local main
  main=$(unit_prop "$1" MainPID)
  in_box pgrep -P "$main" | sort | tr '\n' ' '
}
# Wait until a command succeeds, up to N seconds.
wait_for() { # seconds command...
  local end=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < end)) || return 1
    sleep 0.2
  done
}
# PIDs of every process running /usr/bin/ferrocorn (whatever its title; a
# service's mount namespace may make the path show with the box's host prefix).
ferrocorn_pids() {
  # shellcheck disable=SC2016 # expanded by the box's shell
  in_box sh -c 'for p in /proc/[0-9]*; do case $(readlink "$p/exe" 2>/dev/null) in */usr/bin/ferrocorn*) echo "${p#/proc/}" ;; esac; done'
}
no_ferrocorn_process() { [ -z "$(ferrocorn_pids)" ]; }
http_ok() { curl -fsS -m 10 -o /dev/null "$@"; }

summary() { # name
  local secs=$((SECONDS - t0))
  ((failed)) && printf '  failed: %s\n' "${failures[@]}" >&2
  echo "$1: $passed passed, $failed failed in ${secs} s"
  ((failed == 0))
}
