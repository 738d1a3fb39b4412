#!/usr/bin/env bash
# Real-apps compatibility suite: pinned Django, Flask, Werkzeug and whitenoise
# from PyPI, served by ferrocorn (or by gunicorn, for reference) and checked
# the way a user of those apps would. See compat/README.md.
#
#   compat/run.sh [--server ferrocorn|gunicorn] [CASE...]
#   compat/run.sh --accesslog [-v]
#   compat/run.sh --differential [-v]
#   compat/run.sh --edge [-v]
#   compat/run.sh --asgi [--server ferrocorn|uvicorn] [CASE...]
#   compat/run.sh --green [--server ferrocorn|gunicorn] [CASE...]
#   compat/run.sh --asgi-differential [-v]
#   compat/run.sh --ctl [CASE...]
#
# --accesslog runs gunicorn and ferrocorn side by side instead and compares
# their access-log lines for the same requests (compat/accesslog.py; -v
# prints both lines of every case). --differential sends both the same raw
# requests and compares status codes and environs (compat/differential.py;
# the README's deliberate differences are reported, not counted).
# --edge does the same for PROXY protocol headers and uwsgi requests
# (compat/edge_compare.py).
# --asgi runs the ASGI suite instead (compat/asgi_suite.py): FastAPI,
# Starlette, Django with Channels, Quart, Litestar and BlackSheep under
# ferrocorn -k asgi, or under uvicorn for reference, from their own venv
# (compat/.venv-asgi, requirements-asgi.txt).
# --asgi-differential sends the same raw requests to ferrocorn -k asgi and
# gunicorn 27 -k asgi (both from compat/.venv-asgi) and compares the scopes,
# status codes, access-log lines and lifespan-failure exits
# (compat/asgi_differential.py).
# --green runs the greenlet workers' suite (compat/green_suite.py): a
# blocking WSGI app under ferrocorn -k gevent and -k eventlet, or gunicorn 27
# -k gevent for reference, from their own venv (compat/.venv-green,
# requirements-green.txt).
# --ctl runs gunicorn 27's own control client, gunicornc, against
# ferrocorn's control socket (compat/ctl_suite.py), from its own venv
# (compat/.venv-ctl, requirements-ctl.txt).
# CASE selects cases whose name contains it (compat/run.sh --list lists them).
# Environment:
#   FERROCORN_BIN  the ferrocorn binary to test; by default
#                  target/release/ferrocorn, built when missing or older
#                  than the sources
#
# The venv (compat/.venv, made with /usr/bin/python3, the interpreter
# ferrocorn embeds; compat/.venv-asgi for --asgi) is reused while its
# requirements file and that Python stay the same, and rebuilt otherwise. If the package index cannot be reached, the
# suite is skipped with one line and exit status 0.
set -euo pipefail

COMPAT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$COMPAT_DIR/.." && pwd)"
SYS_PY=/usr/bin/python3
VENV="$COMPAT_DIR/.venv"
REQUIREMENTS="$COMPAT_DIR/requirements.txt"

log() { printf 'compat: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

server=ferrocorn
asgi=0  # 1: the ASGI suite
green=0  # 1: the greenlet workers' suite
ctl=0  # 1: gunicornc against the control socket
accesslog=0  # 1: a side-by-side run of gunicorn and ferrocorn
side_by_side=accesslog
suite_args=()
while (($#)); do
  case "$1" in
    --accesslog) accesslog=1; shift ;;
    --asgi) asgi=1; shift ;;
    --asgi-differential) asgi=2; shift ;;
    --green) green=1; shift ;;
    --ctl) ctl=1; shift ;;
    --differential) accesslog=1; side_by_side=differential; shift ;;
    --edge) accesslog=1; side_by_side=edge_compare; shift ;;
    --server) server="${2:-}"; shift $(($# > 1 ? 2 : 1)) ;;
    --server=*) server="${1#*=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) suite_args+=("$1"); shift ;;
  esac
done
if ((ctl)); then
  ((accesslog == 0 && asgi == 0)) || { log "--ctl goes with neither --asgi, --accesslog nor --differential"; exit 2; }
  [[ "$server" == ferrocorn ]] || { log "--ctl runs against ferrocorn only"; exit 2; }
  VENV="$COMPAT_DIR/.venv-ctl"
  REQUIREMENTS="$COMPAT_DIR/requirements-ctl.txt"
elif ((asgi)); then
  ((accesslog == 0)) || { log "--asgi does not go with --accesslog or --differential"; exit 2; }
  case "$server" in
    ferrocorn|uvicorn) ;;
    *) log "--asgi: --server must be ferrocorn or uvicorn"; exit 2 ;;
  esac
  VENV="$COMPAT_DIR/.venv-asgi"
  REQUIREMENTS="$COMPAT_DIR/requirements-asgi.txt"
elif ((green)); then
  ((accesslog == 0)) || { log "--green does not go with --accesslog or --differential"; exit 2; }
  case "$server" in
    ferrocorn|gunicorn) ;;
    *) log "--green: --server must be ferrocorn or gunicorn"; exit 2 ;;
  esac
  VENV="$COMPAT_DIR/.venv-green"
  REQUIREMENTS="$COMPAT_DIR/requirements-green.txt"
else
  case "$server" in
    ferrocorn|gunicorn) ;;
    *) log "--server must be ferrocorn or gunicorn"; exit 2 ;;
  esac
fi

# Signs in pip's output that the index was not reached at all (as opposed to
# a pin it does not have, which pip answers with the versions it does have).
NETWORK_ERRORS='Failed to establish a new connection|Temporary failure in name resolution|Name or service not known|Network is unreachable|No route to host|Connection refused|ConnectTimeoutError|ReadTimeoutError|Read timed out|Cannot connect to proxy|ProxyError|SSLError|connection broken by|Could not fetch URL'

network_reason() {  # network_reason PIP_LOG: the most telling part of the error
  local re
  for re in 'Cannot connect to proxy' \
    "Failed to establish a new connection: [^'\")]*" \
    "\[Errno -?[0-9]+\] [^'\")]*" \
    "(Read timed out|ConnectTimeoutError|ReadTimeoutError|SSLError)[^'\")]*"; do
    grep -oE -m 1 "$re" "$1" | head -n 1 && return
  done
  grep -E -m 1 "$NETWORK_ERRORS" "$1" | cut -c 1-160
}

pip_install() {  # pip_install REQUIREMENTS_FILE
  local out status=0
  out="$(mktemp)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
    --timeout 20 --retries 2 -r "$1" >"$out" 2>&1 || status=$?
  if ((status == 0)); then
    rm -f "$out"
    return 0
  fi
  if grep -qE "$NETWORK_ERRORS" "$out"; then
    echo "compat${asgi_tag}: SKIPPED: PyPI unreachable ($(network_reason "$out"))"
    rm -f "$out"
    exit 0
  fi
  cat "$out" >&2
  rm -f "$out"
  die "pip install -r ${1#"$REPO_ROOT/"} failed"
}

stamp_of() {  # stamp_of FILE: what the installed set depends on
  { "$SYS_PY" -VV; cat "$1"; } | sha256sum | cut -d' ' -f1
}

asgi_tag=""
((asgi == 0)) || asgi_tag=" (asgi)"
((green == 0)) || asgi_tag=" (green)"
((ctl == 0)) || asgi_tag=" (ctl)"
started=$SECONDS
want="$(stamp_of "$REQUIREMENTS")"
if [[ -x "$VENV/bin/python" && "$(cat "$VENV/.compat-stamp" 2>/dev/null)" == "$want" ]]; then
  log "reusing $VENV"
else
  log "creating $VENV with $SYS_PY"
  rm -rf "$VENV"
  "$SYS_PY" -m venv "$VENV" || die "$SYS_PY -m venv failed (is python3-venv installed?)"
  pip_install "$REQUIREMENTS"
  echo "$want" >"$VENV/.compat-stamp"
fi
if [[ ($server == gunicorn || $accesslog == 1) && $green == 0 && $ctl == 0 ]]; then  # not with --asgi
  want="$(stamp_of "$COMPAT_DIR/requirements-gunicorn.txt")"
  if [[ "$(cat "$VENV/.compat-gunicorn-stamp" 2>/dev/null)" != "$want" ]]; then
    log "installing gunicorn into $VENV"
    pip_install "$COMPAT_DIR/requirements-gunicorn.txt"
    echo "$want" >"$VENV/.compat-gunicorn-stamp"
  fi
fi
log "venv ready in $((SECONDS - started)) s"

if [[ "$server" == ferrocorn || $accesslog == 1 ]]; then
  if [[ -n "${FERROCORN_BIN:-}" ]]; then
    [[ -x "$FERROCORN_BIN" ]] || die "FERROCORN_BIN=$FERROCORN_BIN is not an executable file"
  else
    FERROCORN_BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/ferrocorn"
    if [[ ! -x "$FERROCORN_BIN" ]] ||
      [[ -n "$(cd "$REPO_ROOT" && find src Cargo.toml Cargo.lock -newer "$FERROCORN_BIN" -print -quit)" ]]; then
      log "building $FERROCORN_BIN (cargo build --release)"
      (cd "$REPO_ROOT" && cargo build --release --locked)
    fi
  fi
  suite_args=(--ferrocorn-bin "$FERROCORN_BIN" "${suite_args[@]}")
fi

if ((accesslog)); then
  exec "$VENV/bin/python" "$COMPAT_DIR/$side_by_side.py" --gunicorn "$VENV/bin/python -m gunicorn" \
    "${suite_args[@]}"
fi

if ((green)); then
  exec "$VENV/bin/python" "$COMPAT_DIR/green_suite.py" --server "$server" "${suite_args[@]}"
fi
if ((asgi == 2)); then
  exec "$VENV/bin/python" "$COMPAT_DIR/asgi_differential.py" "${suite_args[@]}"
fi
if ((ctl)); then
  exec "$VENV/bin/python" "$COMPAT_DIR/ctl_suite.py" --gunicornc "$VENV/bin/gunicornc" "${suite_args[@]}"
fi

if ((asgi)); then
  exec "$VENV/bin/python" "$COMPAT_DIR/asgi_suite.py" --server "$server" "${suite_args[@]}"
fi
"$VENV/bin/python" "$COMPAT_DIR/suite.py" --server "$server" "${suite_args[@]}"
