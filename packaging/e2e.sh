#!/usr/bin/env bash
# packaging/e2e.sh: the Debian package end to end, in a fresh systemd-box
# (see box-lib.sh):
#   - builds target/debian/ferrocorn_V1 and a copy labelled V2 (V1 with the
#     patch number bumped, or $FERROCORN_UPGRADE_VERSION);
#   - "apt-get install ./ferrocorn_V1.deb" on a box without libpython3.11
#     pulls the dependencies, creates the ferrocorn user, enables nothing;
#   - deploys a stdlib app in /srv/demo, "systemctl enable --now ferrocorn@demo",
#     checks it over loopback;
#   - "systemctl reload" under load: no failed request;
#   - installs V2 under constant load: no failed request, no restart, and the
#     running master now reports V2;
#   - "apt-get remove" stops the instance gracefully (an in-flight request
#     completes), "apt-get purge" leaves no process, user or file behind.
# Prints one summary line ("e2e: N passed, M failed in S s"); exits 1 on any
# failure. Needs root and the Debian mirror. KEEP_BOX=1 keeps the box.
set -euo pipefail
# shellcheck source=packaging/box-lib.sh
source "$(dirname "$0")/box-lib.sh"

v1=$(sed -n '0,/^version = "\(.*\)"/s//\1/p' "$root/Cargo.toml")
v2=${FERROCORN_UPGRADE_VERSION:-$(awk -F. '{printf "%d.%d.%d", $1, $2, $3 + 1}' <<<"$v1")}
log "building ferrocorn $v1 and $v2 packages"
deb1=$("$root/packaging/build-deb.sh" 2>"$work/build1.log" | tail -n 1) || { cat "$work/build1.log" >&2; exit 1; }
deb2=$(FERROCORN_VERSION=$v2 NO_LINTIAN=1 "$root/packaging/build-deb.sh" 2>"$work/build2.log" | tail -n 1) || { cat "$work/build2.log" >&2; exit 1; }
log "built $deb1 and $deb2 ($(grep -h 'built in' "$work"/build*.log | tr '\n' ' '))"
port=$(free_port)
unit=ferrocorn@demo.service
url=http://127.0.0.1:$port/
body() { curl -fsS -m 10 "$url"; }

start_box
"$sbox" cp "$box" "$deb1" "/root/${deb1##*/}"
"$sbox" cp "$box" "$deb2" "/root/${deb2##*/}"
export_env=(env DEBIAN_FRONTEND=noninteractive)
# The base box has libpython3.11 (systemd-box installs it); remove it so the
# install must pull it in.
in_box "${export_env[@]}" apt-get purge -y -qq libpython3.11 >/dev/null
in_box apt-get update -qq

# --- install ---
log "apt-get install ./${deb1##*/}"
s=$SECONDS
if in_box "${export_env[@]}" apt-get install -y -qq "/root/${deb1##*/}" >"$work/install.log" 2>&1; then
  pass "install: apt-get install ./${deb1##*/} ($((SECONDS - s)) s)"
else
  fail "install: apt-get install failed"; cat "$work/install.log" >&2
fi
check "install: pulled libpython3.11" in_box dpkg -s libpython3.11 >/dev/null
check "install: ferrocorn user and group exist" in_box getent passwd ferrocorn >/dev/null
check "install: /var/log/ferrocorn owned by ferrocorn" [ "$(in_box stat -c %U "/var/log/ferrocorn")" = ferrocorn ]
check "install: nothing enabled" [ "$(in_box systemctl is-enabled ferrocorn.service ferrocorn.socket 2>/dev/null | sort -u | tr '\n' ' ')" = "disabled " ]
check "install: nothing running" no_ferrocorn_process
check "install: man page, completions, example config" in_box test -s /usr/share/man/man1/ferrocorn.1.gz -a -s /usr/share/bash-completion/completions/ferrocorn -a -s /usr/share/zsh/vendor-completions/_ferrocorn -a -s /etc/ferrocorn/example.toml
check "install: postinst configure is idempotent (run twice more)" \
  in_box sh -c '/var/lib/dpkg/info/ferrocorn.postinst configure && /var/lib/dpkg/info/ferrocorn.postinst configure'
log "   $(in_box ferrocorn --version)"

# --- deploy an app the way the README says ---
in_box mkdir -p /srv/demo
"$sbox" cp "$box" "$root/packaging/testapp/demo.py" /srv/demo/demo.py
in_box chmod -R a+rX /srv/demo
{
  in_box cat /etc/ferrocorn/example.toml
  printf '\n# demo\nwsgi_app = "demo:app"\nchdir = "/srv/demo"\nbind = ["127.0.0.1:%s"]\nworkers = 2\n' "$port"
} >"$work/demo.toml"
"$sbox" cp "$box" "$work/demo.toml" /etc/ferrocorn/demo.toml
check "deploy: config checks" in_box runuser -u ferrocorn -- ferrocorn --config /etc/ferrocorn/demo.toml --check-config
s=$SECONDS
check "deploy: systemctl enable --now $unit" in_box systemctl enable --now --quiet "$unit"
log "   started in $((SECONDS - s)) s"
check "deploy: served over loopback by ferrocorn/$v1" [ "$(body)" = "ferrocorn/$v1" ]
check "deploy: master and 2 workers running" [ "$(ferrocorn_pids | wc -l)" = 3 ]
check "deploy: workers run as ferrocorn" [ "$(in_box ps -o user= --ppid "$(unit_prop "$unit" MainPID)" | sort -u)" = ferrocorn ]

# --- reload under load ---
log "systemctl reload under load"
start_load "$url"
in_box systemctl reload "$unit" || fail "reload: systemctl reload failed"
sleep 4
check "reload: no failed request under load" stop_load
check "reload: unit active" [ "$(unit_prop "$unit" ActiveState)" = active ]

# --- package upgrade under load ---
log "apt-get install ./${deb2##*/} under load"
old_main=$(unit_prop "$unit" MainPID)
restarts=$(unit_prop "$unit" NRestarts)
start_load "$url"
s=$SECONDS
if in_box "${export_env[@]}" apt-get install -y -qq "/root/${deb2##*/}" >"$work/upgrade.log" 2>&1; then
  pass "upgrade: apt-get install ./${deb2##*/} ($((SECONDS - s)) s)"
else
  fail "upgrade: apt-get install of $v2 failed"
fi
grep -v 'Reading database\|debconf' "$work/upgrade.log" | sed 's/^/    /' >&2
sleep 2
check "upgrade: no failed request under constant load" stop_load
check "upgrade: the load saw ferrocorn/$v2 answer" grep -q "ferrocorn/$v2" "$work/load.json"
new_main=$(unit_prop "$unit" MainPID)
log "   MainPID $old_main -> $new_main; status: $(unit_prop "$unit" StatusText)"
check "upgrade: unit active, not restarted" [ "$(unit_prop "$unit" ActiveState)/$(unit_prop "$unit" NRestarts)" = "active/$restarts" ]
check "upgrade: MainPID is a new master" test "$new_main" != "$old_main" -a "$new_main" != 0
check "upgrade: now served by ferrocorn/$v2" [ "$(body)" = "ferrocorn/$v2" ]
check "upgrade: STATUS= reports $v2" grep -q "$v2" <<<"$(unit_prop "$unit" StatusText)"
check "upgrade: log says 'Starting ferrocorn $v2'" bash -c "$sbox exec $box journalctl -u $unit --no-pager | grep -q 'Starting ferrocorn $v2'"

# --- remove: graceful stop ---
log "apt-get remove with a slow request in flight"
curl -sS -m 40 -o /dev/null -w '%{http_code}' "${url}slow?s=3" >"$work/slow.code" 2>"$work/slow.err" &
slow=$!
bg_pids+=("$slow")
sleep 1
check "remove: apt-get remove ferrocorn" in_box "${export_env[@]}" apt-get remove -y -qq ferrocorn >"$work/remove.log" 2>&1
wait "$slow" || true
check "remove: the in-flight request completed with 200 (got $(cat "$work/slow.code"))" [ "$(cat "$work/slow.code")" = 200 ]
check "remove: no ferrocorn process left" no_ferrocorn_process
check "remove: unit inactive" [ "$(unit_prop "$unit" ActiveState)" = inactive ]
check "remove: config kept until purge" in_box test -f /etc/ferrocorn/demo.toml

# --- purge: nothing left ---
check "purge: apt-get purge ferrocorn" in_box "${export_env[@]}" apt-get purge -y -qq ferrocorn >"$work/purge.log" 2>&1
check "purge: user gone" bash -c "! $sbox exec $box getent passwd ferrocorn"
check "purge: group gone" bash -c "! $sbox exec $box getent group ferrocorn"
check "purge: no process" no_ferrocorn_process
left=$(in_box sh -c 'find / -xdev -name "*ferrocorn*" ! -path "/root/ferrocorn_*.deb" 2>/dev/null; find /run -name "*ferrocorn*" 2>/dev/null' | sort -u | tr '\n' ' ')
check "purge: no file left (found: ${left:-none})" [ -z "$left" ]
check "purge: a second purge is a no-op" in_box dpkg --purge ferrocorn >/dev/null
check "purge: dpkg forgot it" bash -c "! $sbox exec $box dpkg -s ferrocorn >/dev/null 2>&1"

summary e2e
