#!/usr/bin/env bash
# One-command benchmark: installs what is missing, builds ferrocorn, then runs
# bench/bench.py (Python standard library only) with all arguments passed on.
#
#   bench/run.sh [--quick] [--workloads hello,flask,io,download,upload] [--servers ...]
#   bench/run.sh asgi [--quick] [--scenarios hello,sleep,ws] [--servers ...]
#       ASGI benchmarks (bench/asgi.py): also installs bench/requirements-asgi.txt
#       and builds the websocket load client bench/wsload.
#   bench/run.sh green [--quick] [--scenarios sleep,longpoll] [--servers ...]
#       greenlet-worker benchmarks (bench/green.py): installs the pinned
#       bench/requirements-green.txt (gevent, eventlet, gunicorn 27).
#
# Environment:
#   FERROCORN_BIN   use this ferrocorn binary instead of building one
#   BENCH_SKIP_INSTALL=1  do not apt-get / pip install anything
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
SYS_PY=/usr/bin/python3
VENV="$BENCH_DIR/.venv"

log() { printf '[run.sh] %s\n' "$*" >&2; }

MODE=wsgi
DRIVER="$BENCH_DIR/bench.py"
if [ "${1:-}" = "asgi" ]; then
  MODE=asgi
  DRIVER="$BENCH_DIR/asgi.py"
  shift
elif [ "${1:-}" = "green" ]; then
  MODE=green
  DRIVER="$BENCH_DIR/green.py"
  shift
fi

# Pass --help straight through without installing anything.
for a in "$@"; do
  case "$a" in -h|--help) exec "$SYS_PY" "$DRIVER" "$@";; esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
APT_UPDATED=0
apt_install() {
  # apt_install pkg...: install, running apt-get update first if needed.
  if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get not available; cannot install $*"; return 1
  fi
  if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@" >/dev/null; then
    return 0
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get install $* failed; running apt-get update and retrying"
    $SUDO apt-get update -q >/dev/null || true
    APT_UPDATED=1
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@" >/dev/null
  else
    return 1
  fi
}

if [ "${BENCH_SKIP_INSTALL:-0}" != "1" ]; then
  # --- load generator -------------------------------------------------------
  if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk"
    apt_install wrk || { log "could not install wrk"; exit 1; }
  fi
  command -v curl >/dev/null 2>&1 || apt_install curl || true

  # --- throwaway venv with the peer servers and flask ------------------------
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV with $SYS_PY"
    if ! "$SYS_PY" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      log "python3 -m venv failed; installing python3-venv"
      apt_install python3-venv
      "$SYS_PY" -m venv "$VENV"
    fi
  fi
  VPIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
  if [ "$MODE" = asgi ]; then
    # uvicorn (httptools, uvloop, websockets), granian, gunicorn 27.
    if ! "$VENV/bin/python" -c 'import uvicorn, httptools, uvloop, websockets, granian, gunicorn, sys; sys.exit(not gunicorn.__version__.startswith("27."))' 2>/dev/null; then
      log "pip installing bench/requirements-asgi.txt"
      "${VPIP[@]}" -r "$BENCH_DIR/requirements-asgi.txt" || log "pip install of the ASGI peers failed; missing servers will be skipped"
    fi
  fi
  if [ "$MODE" = green ]; then
    # Every pin in bench/requirements-green.txt must be installed exactly.
    if ! "$VENV/bin/python" - "$BENCH_DIR/requirements-green.txt" <<'PY' 2>/dev/null
import importlib.metadata as m, re, sys
for line in open(sys.argv[1]):
    pin = re.match(r"\s*([A-Za-z0-9_.-]+)==(\S+)", line)
    if pin and m.version(pin.group(1)) != pin.group(2):
        sys.exit(1)
PY
    then
      log "pip installing bench/requirements-green.txt"
      "${VPIP[@]}" -r "$BENCH_DIR/requirements-green.txt" || log "pip install of the greenlet libraries failed; servers that need them will fail to start"
    fi
  fi
  missing=()
  [ "$MODE" != wsgi ] || for mod in gunicorn granian flask; do
    "$VENV/bin/python" -c "import $mod" 2>/dev/null || missing+=("$mod")
  done
  for pkg in "${missing[@]}"; do
    log "pip installing $pkg"
    "${VPIP[@]}" "$pkg" || log "pip install $pkg failed; what needs it will be skipped"
  done
  if [ "$MODE" = wsgi ] && [ ! -x "$VENV/bin/uwsgi" ]; then
    # uWSGI is built from source: needs a C compiler and the Python headers.
    py_inc="$("$SYS_PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
    if ! command -v cc >/dev/null 2>&1 || [ ! -e "$py_inc/Python.h" ]; then
      log "installing build-essential python3-dev for uwsgi"
      apt_install build-essential python3-dev || log "could not install uwsgi build deps"
    fi
    log "pip installing uwsgi (compiles; may take a minute)"
    if ! "${VPIP[@]}" uwsgi >"$VENV/uwsgi-build.log" 2>&1; then
      log "uwsgi failed to build (see bench/.venv/uwsgi-build.log); uwsgi will be skipped"
    fi
  fi
fi

# --- ferrocorn binary --------------------------------------------------------
# Only needed when a ferrocorn server is selected (the default selects all).
want_ferrocorn=1
prev=""
for a in "$@"; do
  case "$prev" in --servers) case ",$a," in *,ferrocorn*) ;; *) want_ferrocorn=0;; esac;; esac
  case "$a" in --servers=*) case ",${a#--servers=}," in *,ferrocorn*) ;; *) want_ferrocorn=0;; esac;; esac
  prev="$a"
done
if [ "$want_ferrocorn" = 1 ] && [ -z "${FERROCORN_BIN:-}" ]; then
  if command -v cargo >/dev/null 2>&1; then
    log "building ferrocorn (cargo build --release)"
    if (cd "$REPO_ROOT" && cargo build --release); then
      export FERROCORN_BIN="$REPO_ROOT/target/release/ferrocorn"
    else
      log "cargo build failed; ferrocorn servers will be skipped"
    fi
  else
    log "cargo not found; ferrocorn servers will be skipped"
  fi
fi

if [ "$MODE" = asgi ]; then
  # --- websocket load client (Rust, its own Cargo package) ----------------
  if [ -z "${WSLOAD_BIN:-}" ]; then
    if command -v cargo >/dev/null 2>&1; then
      log "building bench/wsload (cargo build --release)"
      cargo build --release --manifest-path "$BENCH_DIR/wsload/Cargo.toml" \
        || log "wsload build failed; the ws scenario will be skipped"
    else
      log "cargo not found; the ws scenario will be skipped"
    fi
  fi
fi

exec "$SYS_PY" "$DRIVER" --venv "$VENV" "$@"
