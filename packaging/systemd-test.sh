#!/usr/bin/env bash
# packaging/systemd-test.sh: the unit files against real systemd 252, without
# the package. In a fresh systemd-box (see box-lib.sh) with systemd/*.service
# and *.socket and the release binary (target/release/ferrocorn, built or
# brought up to date first, or $FERROCORN_BIN) copied in, it checks that
#   1. "systemctl start" returns, and the unit is active, only once workers serve;
#      the control socket is /run/ferrocorn/demo/control.sock (0600, ferrocorn)
#      and "ferrocorn ctl" works through it (after an upgrade, with the new
#      master; after a failed one, with the old master again);
#   2. "systemctl reload" under load fails no request and replaces the workers;
#   3. "ferrocorn upgrade" (USR2, then TERM to the old master) leaves MainPID on
#      the new master, the unit active, and fails no request under load;
#      and a failed upgrade (the app no longer imports) leaves the old master
#      serving under the unit;
#   4. "systemctl stop" lets an in-flight slow request finish with 200;
#   5. socket activation: a connection to ferrocorn.socket (TCP) or
#      ferrocorn@demo.socket (Unix) starts the service, which serves on the
#      inherited socket instead of binding its own address.
# Prints one summary line ("systemd-test: N passed, M failed in S s"); exits 1
# on any failure. Needs root. KEEP_BOX=1 keeps the box for inspection.
set -euo pipefail
# shellcheck source=packaging/box-lib.sh
source "$(dirname "$0")/box-lib.sh"

bin=${FERROCORN_BIN:-}
if [[ -z $bin ]]; then
  bin=$root/target/release/ferrocorn
  (cd "$root" && cargo build --release --locked --quiet)
fi
version=$("$bin" --version | sed 's/.*version \([^)]*\)).*/\1/')
port=$(free_port)
sport=$(free_port)
unused=$(free_port)
unit=ferrocorn@demo.service
pidfile=/run/ferrocorn/demo/master.pid
ctlsock=/run/ferrocorn/demo/control.sock
# The pid of the master answering on the instance's control socket.
ctl_pid() { in_box ferrocorn ctl --control-socket "$ctlsock" --json show stats 2>/dev/null | sed -n 's/^ *"pid": \([0-9]*\),*$/\1/p'; }

start_box
# What the package does: the binary, the units, the system user, /run/ferrocorn.
"$sbox" cp "$box" "$bin" /usr/bin/ferrocorn
for u in "$root"/systemd/*.service "$root"/systemd/*.socket; do
  "$sbox" cp "$box" "$u" "/lib/systemd/system/${u##*/}"
done
in_box useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ferrocorn
in_box install -d -m 0755 /run/ferrocorn
deploy_demo "$port"
in_box systemctl daemon-reload
url=http://127.0.0.1:$port/

check "units: systemd-analyze verify" in_box systemd-analyze verify --man=no ferrocorn.service ferrocorn.socket "$unit" ferrocorn@demo.socket
log "   exposure: $(in_box systemd-analyze security --no-pager "$unit" 2>/dev/null | tail -n 1)"

# 1. Start: Type=notify, READY=1 only once the workers serve (the demo app
# takes 1.5 s to import, so a premature READY would show as a failed request).
log "1. systemctl start $unit"
s=$SECONDS
if in_box systemctl start "$unit"; then
  check "start: a request right after 'systemctl start' returned succeeds" http_ok "$url"
  check "start: unit active" [ "$(unit_prop "$unit" ActiveState)" = active ]
  log "   start took $((SECONDS - s)) s; status: $(unit_prop "$unit" StatusText)"
  check "start: STATUS= names ferrocorn $version" grep -q "$version" <<<"$(unit_prop "$unit" StatusText)"
  check "ctl: $ctlsock is a socket, mode 0600, owned by ferrocorn" \
    [ "$(in_box stat -c %F/%a/%U "$ctlsock" 2>/dev/null)" = "socket/600/ferrocorn" ]
  check "ctl: 'ferrocorn ctl show workers' through it lists 2 workers" \
    grep -q "Total: 2 workers" <<<"$(in_box ferrocorn ctl --control-socket "$ctlsock" show workers 2>&1)"
else
  fail "start: systemctl start $unit failed"
fi

# 2. Reload under load.
log "2. systemctl reload under load"
before=$(workers_of "$unit")
start_load "$url"
in_box systemctl reload "$unit" || fail "reload: systemctl reload failed"
rotated() {
  local now
  now=$(workers_of "$unit")
  [[ $(wc -w <<<"$now") == 2 ]] || return 1
  for p in $before; do [[ " $now " == *" $p "* ]] && return 1; done
  return 0
}
check "reload: all workers replaced (before: $before)" wait_for 30 rotated
sleep 1
check "reload: no failed request under load" stop_load
check "reload: unit still active" [ "$(unit_prop "$unit" ActiveState)" = active ]

# 3. Binary upgrade: USR2, new master ready, TERM the old one; systemd must
# follow the hand-over (MAINPID=).
log "3. ferrocorn upgrade under load"
old_main=$(unit_prop "$unit" MainPID)
start_load "$url"
if in_box ferrocorn upgrade --pidfile "$pidfile" --timeout 60; then
  pass "upgrade: 'ferrocorn upgrade' exited 0"
else
  fail "upgrade: 'ferrocorn upgrade' failed"
fi
sleep 1
check "upgrade: no failed request under load" stop_load
new_main=$(unit_prop "$unit" MainPID)
log "   MainPID $old_main -> $new_main, pidfile $(in_box cat "$pidfile" 2>/dev/null || echo none)"
check "upgrade: MainPID moved to the new master" test "$new_main" != "$old_main" -a "$new_main" != 0
check "upgrade: pidfile holds the new MainPID" [ "$(in_box cat "$pidfile" 2>/dev/null)" = "$new_main" ]
old_gone() { ! in_box kill -0 "$old_main" 2>/dev/null; }
check "upgrade: old master gone" wait_for 30 old_gone
check "upgrade: unit active" [ "$(unit_prop "$unit" ActiveState)" = active ]
check "upgrade: the control socket is the new master's" [ "$(ctl_pid)" = "$new_main" ]
before=$(workers_of "$unit")
in_box systemctl reload "$unit" || true
check "upgrade: reload reaches the new master (workers replaced)" wait_for 30 rotated

# 3b. A failed upgrade (the app no longer imports) leaves the old master in
# charge: non-zero exit, same MainPID, unit active, still serving.
log "3b. ferrocorn upgrade with a broken app"
main=$(unit_prop "$unit" MainPID)
in_box mv /srv/demo/demo.py /srv/demo/demo.py.off
start_load "$url"
if in_box ferrocorn upgrade --pidfile "$pidfile" --timeout 15 2>"$work/upgrade-fail.err"; then
  fail "failed upgrade: 'ferrocorn upgrade' exited 0 with a broken app"
else
  pass "failed upgrade: 'ferrocorn upgrade' exited non-zero: $(tail -n 1 "$work/upgrade-fail.err" 2>/dev/null)"
fi
check "failed upgrade: no failed request under load" stop_load
in_box mv /srv/demo/demo.py.off /srv/demo/demo.py
check "failed upgrade: same MainPID, unit active" [ "$(unit_prop "$unit" MainPID)/$(unit_prop "$unit" ActiveState)" = "$main/active" ]
check "failed upgrade: pidfile unchanged" [ "$(in_box cat "$pidfile")" = "$main" ]
check "failed upgrade: still serving" http_ok "$url"
ctl_is_main() { [ "$(ctl_pid)" = "$main" ]; }
check "failed upgrade: the old master answers on the control socket again" wait_for 10 ctl_is_main

# 4. Graceful stop drains an in-flight request.
log "4. systemctl stop with a slow request in flight"
curl -sS -m 30 -o /dev/null -w '%{http_code}' "${url}slow?s=3" >"$work/slow.code" 2>"$work/slow.err" &
slow=$!
bg_pids+=("$slow")
sleep 1
s=$SECONDS
in_box systemctl stop "$unit" || fail "stop: systemctl stop failed"
log "   stop took $((SECONDS - s)) s"
wait "$slow" || true
check "stop: the in-flight slow request completed with 200 (got $(cat "$work/slow.code"))" [ "$(cat "$work/slow.code")" = 200 ]
check "stop: unit inactive, result success" [ "$(unit_prop "$unit" ActiveState)/$(unit_prop "$unit" Result)" = inactive/success ]
check "stop: nothing listens any more" bash -c "! curl -s -m 2 -o /dev/null $url"

# 5. Socket activation.
log "5. socket activation"
in_box mkdir -p /etc/systemd/system/ferrocorn.socket.d
printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:%s\n' "$sport" >"$work/listen.conf"
"$sbox" cp "$box" "$work/listen.conf" /etc/systemd/system/ferrocorn.socket.d/test.conf
sed "s/127.0.0.1:$port/127.0.0.1:$unused/" "$work/demo.toml" >"$work/ferrocorn.toml"
"$sbox" cp "$box" "$work/ferrocorn.toml" /etc/ferrocorn/ferrocorn.toml
sed -i "s/127.0.0.1:$port/127.0.0.1:$unused/" "$work/demo.toml"
"$sbox" cp "$box" "$work/demo.toml" /etc/ferrocorn/demo.toml
in_box systemctl daemon-reload
in_box systemctl start ferrocorn.socket
check "socket: ferrocorn.service not started by the socket alone" [ "$(unit_prop ferrocorn.service ActiveState)" = inactive ]
check "socket: first connection to ferrocorn.socket is served" http_ok "http://127.0.0.1:$sport/"
# (the first request may be answered while the master still waits for its
# second worker, i.e. before the unit turns active)
active() { [ "$(unit_prop "$1" ActiveState)" = active ]; }
check "socket: the connection started ferrocorn.service" wait_for 10 active ferrocorn.service
check "socket: the service serves on the inherited socket, not its bind address" bash -c "! curl -s -m 2 -o /dev/null http://127.0.0.1:$unused/"
check "socket: keeps serving" http_ok "http://127.0.0.1:$sport/"
in_box systemctl stop ferrocorn.socket ferrocorn.service
in_box systemctl start ferrocorn@demo.socket
check "socket: template socket /run/ferrocorn/demo.sock serves (starts $unit)" \
  in_box curl -fsS -m 10 -o /dev/null --unix-socket /run/ferrocorn/demo.sock http://localhost/
check "socket: $unit active via its socket" wait_for 10 active "$unit"
check "socket: $unit did not bind its own address" bash -c "! curl -s -m 2 -o /dev/null http://127.0.0.1:$unused/"
in_box systemctl stop ferrocorn@demo.socket "$unit"

summary systemd-test
