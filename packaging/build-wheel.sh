#!/usr/bin/env bash
# Build the Python wheel(s) and the sdist of this checkout, check them, and
# serve the example app from a fresh venv of another CPython:
#
#   packaging/build-wheel.sh
#       -> target/wheels/ferrocorn-<v>-cp39-abi3-manylinux_2_17_x86_64.whl
#          and target/wheels/ferrocorn-<v>.tar.gz (the sdist)
#   WHEEL_ARCHES="x86_64 aarch64" packaging/build-wheel.sh
#       also cross-builds aarch64 (rustup target add, zig links it); it is
#       checked for its tags but cannot be run here
#   WHEEL_SDIST_BUILD=1 packaging/build-wheel.sh
#       also builds the sdist from source with pip (needs cargo) and serves
#       from that install (a release build: minutes)
#   WHEEL_PYTHONS="/path/python3.12 ..." packaging/build-wheel.sh
#       the interpreters to test the wheel under (default: every pyenv
#       CPython >= 3.9 in ~/.pyenv/versions, then Debian's python3)
#
# Needs cargo and python3 with its venv module (Debian 12: python3-venv).
# maturin, ziglang and auditwheel come from PyPI into a throwaway venv
# (target/wheel-tools). The wheel is one abi3 extension module for every
# CPython from 3.9, linked by zig against glibc 2.17 symbols (manylinux2014,
# the floor Rust's standard library allows), and it links no libpython.
#
# The last line printed is the `ferrocorn` command of a venv (made by the
# first tested interpreter) with the wheel installed; .ci/run points the
# integration tests at it (FERROCORN_BIN).
set -euo pipefail

start=$SECONDS
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=$root/target/wheels
tools=$root/target/wheel-tools
export CARGO_TARGET_DIR=$root/target/wheel-build
arches=${WHEEL_ARCHES:-x86_64}
say() { echo "build-wheel: $*" >&2; }
die() { say "$*"; exit 1; }

command -v cargo >/dev/null || die "cargo not found (install Rust with rustup)"
python3 -c 'import venv, ensurepip' 2>/dev/null || die "python3 with venv and ensurepip is needed (Debian: apt-get install python3-venv)"

# The build tools, pinned: the versions this script was written against.
if [[ ! -x $tools/bin/maturin ]] || ! "$tools/bin/python" -c 'import ziglang' 2>/dev/null ||
  [[ ! -x $tools/bin/auditwheel ]]; then
  say "installing maturin, ziglang and auditwheel into $tools"
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q --disable-pip-version-check \
    'maturin==1.16.0' 'ziglang==0.17.1' 'auditwheel==6.8.2'
fi
export PATH=$tools/bin:$PATH

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
rm -rf "$out"
mkdir -p "$out"

for arch in $arches; do
  target=$arch-unknown-linux-gnu
  if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    say "adding the Rust standard library for $target"
    rustup target add "$target" >/dev/null
  fi
  say "building the $arch wheel (release, zig, manylinux2014)"
  maturin build --release --locked --zig --compatibility manylinux2014 \
    --target "$target" --out "$out" >&2
done
say "building the sdist"
maturin sdist --out "$out" >&2

# The tags: cp39-abi3 (one wheel for CPython 3.9 and later) and
# manylinux_2_17 as auditwheel reads the binary (its glibc symbol versions),
# and no libpython among the extension's libraries, so interpreters built
# without a shared libpython load it too.
for arch in $arches; do
  whl=$out/ferrocorn-$version-cp39-abi3-manylinux2014_$arch.manylinux_2_17_$arch.whl
  [[ -f $whl ]] || die "expected $whl; built: $(ls "$out")"
  # (auditwheel wraps its lines: one line, single spaces, before matching)
  report=$(auditwheel show "$whl" | tr -s ' \n' ' ')
  grep -q "consistent with the following platform tag: \"manylinux_2_17_$arch\"" <<<"$report" ||
    die "auditwheel: $whl is not manylinux_2_17_$arch:"$'\n'"$report"
  unpacked=$(mktemp -d)
  python3 -m zipfile -e "$whl" "$unpacked"
  so=$unpacked/ferrocorn/_ferrocorn.abi3.so
  [[ -f $so ]] || die "$whl has no ferrocorn/_ferrocorn.abi3.so"
  needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  [[ $needed != *libpython* ]] || die "$so links libpython: $needed"
  grep -Eq '^ferrocorn ?= ?ferrocorn.__main__:main' "$unpacked"/ferrocorn-*.dist-info/entry_points.txt ||
    die "$whl has no ferrocorn console script"
  rm -rf "$unpacked"
  say "ok: $(basename "$whl"): auditwheel manylinux_2_17_$arch; needs only: $needed"
done
sdist=$out/ferrocorn-$version.tar.gz
[[ -f $sdist ]] || die "expected $sdist"

# Serve from a venv: the example app answers, the app runs in the venv's
# interpreter (sys.prefix, version), `python -m ferrocorn` works, and TERM
# stops everything with exit 0. Prints nothing but failures and one line.
serve_check() { # PYTHON VENV INSTALL-ARGS...
  local py=$1 venv=$2
  shift 2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$@"
  local ver
  ver=$("$venv/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
  "$venv/bin/python" -m ferrocorn --version | grep -q "ferrocorn (version $version)" ||
    die "python -m ferrocorn --version failed in $venv"
  local app
  app=$(mktemp -d)
  cat >"$app/where.py" <<'EOF'
import sys
def app(environ, start_response):
    body = ("%s %d.%d.%d" % ((sys.prefix,) + tuple(sys.version_info[:3]))).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
EOF
  local log=$app/log
  (cd /tmp && exec "$venv/bin/ferrocorn" --chdir "$root/examples" \
    -b 127.0.0.1:0 -w 2 --graceful-timeout 5 --no-control-socket hello:app \
    >"$log" 2>&1) &
  local pid=$! port="" i
  for i in $(seq 100); do
    port=$(sed -n 's/.*Listening at: http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
    [[ -n $port ]] && grep -q "Ready: 2 workers" "$log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n $port ]] || { cat "$log" >&2; kill -TERM "$pid" 2>/dev/null || true; wait "$pid" || true; die "ferrocorn from $venv did not start"; }
  local hello
  hello=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=10).read().decode().strip())' "$port") || true
  kill -TERM "$pid"
  local code=0
  wait "$pid" || code=$?
  [[ $hello == "Hello, World!" ]] || { cat "$log" >&2; die "examples/hello.py under $venv answered: $hello"; }
  [[ $code == 0 ]] || { cat "$log" >&2; die "ferrocorn from $venv exited $code on TERM"; }
  # The second app: which interpreter and prefix serve it.
  (cd /tmp && exec "$venv/bin/ferrocorn" --chdir "$app" -b 127.0.0.1:0 -w 1 \
    --no-control-socket where:app >"$log" 2>&1) &
  pid=$!
  port=""
  for i in $(seq 100); do
    port=$(sed -n 's/.*Listening at: http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
    [[ -n $port ]] && grep -q "Ready: 1 workers" "$log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  local where
  where=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=10).read().decode().strip())' "$port") || true
  kill -TERM "$pid"
  wait "$pid" || true
  [[ $where == "$venv $ver" ]] || { cat "$log" >&2; die "the app in $venv ran in: '$where' (expected '$venv $ver')"; }
  rm -rf "$app"
  say "ok: CPython $ver ($py): examples/hello.py served from $venv/bin/ferrocorn, app in the venv's interpreter"
}

if [[ -n ${WHEEL_PYTHONS:-} ]]; then
  read -r -a pythons <<<"$WHEEL_PYTHONS"
else
  pythons=()
  for p in "$HOME"/.pyenv/versions/3.*/bin/python3; do
    [[ -x $p ]] && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null && pythons+=("$p")
  done
  # Newest first: the venv the tests use is made by a CPython other than
  # the build's (Debian's 3.11) when pyenv has one.
  mapfile -t pythons < <(printf '%s\n' "${pythons[@]}" | sort -rV)
  pythons+=(/usr/bin/python3)
fi
host=$(uname -m)
whl=$out/ferrocorn-$version-cp39-abi3-manylinux2014_$host.manylinux_2_17_$host.whl
[[ -f $whl ]] || die "no $host wheel built (WHEEL_ARCHES=$arches) to test"
first=""
for py in "${pythons[@]}"; do
  n=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
  venv=$root/target/wheel-venv-$n
  [[ -n $first ]] || first=$venv
  serve_check "$py" "$venv" --no-index "$whl"
done

if [[ -n ${WHEEL_SDIST_BUILD:-} ]]; then
  say "building the sdist from source with pip (release build)"
  t=$SECONDS
  serve_check "${pythons[0]}" "$root/target/wheel-venv-sdist" "$sdist"
  say "the sdist built and served in $((SECONDS - t)) s"
fi

say "done in $((SECONDS - start)) s: $(cd "$out" && ls | tr '\n' ' ')"
echo "$first/bin/ferrocorn"
