#!/usr/bin/env bash
# Build the Debian package from this checkout, in one command:
#
#   packaging/build-deb.sh            -> target/debian/ferrocorn_<version>_<arch>.deb
#   FERROCORN_VERSION=0.1.1 packaging/build-deb.sh
#                                     -> the same source labelled 0.1.1 (Cargo and
#                                        Debian version both, so the binary reports
#                                        it); used to test package upgrades
#   NO_LINTIAN=1 packaging/build-deb.sh   skip the lintian run
#
# Needs cargo (Rust) and CPython's headers; installs debhelper, dpkg-dev,
# python3-dev and lintian with apt-get when they are missing (as root). The
# binary links the distribution's libpython3.X, so build on the release you
# install on. The last line printed is the path of the .deb.
set -euo pipefail

start=$SECONDS
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/target/debian
mkdir -p "$out"

missing=()
command -v dh >/dev/null || missing+=(debhelper)
command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
# CPython's headers for the distribution's python3 (3.11 on Debian 12).
python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null ||
  missing+=(python3-dev)
[[ -n ${NO_LINTIAN:-} ]] || command -v lintian >/dev/null || missing+=(lintian)
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || { echo "build-deb: install ${missing[*]} first" >&2; exit 1; }
  echo "build-deb: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "build-deb: cargo not found (install Rust with rustup)" >&2; exit 1; }

src=$root
if [[ -n ${FERROCORN_VERSION:-} ]]; then
  [[ $FERROCORN_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "build-deb: FERROCORN_VERSION must be X.Y.Z" >&2; exit 1; }
  # A copy of the checkout (tracked and new files, not target/) relabelled.
  # It builds in its own target directory, kept between runs, so that
  # target/release/ferrocorn keeps matching the checkout.
  src=$out/src-$FERROCORN_VERSION
  rm -rf "$src"
  mkdir -p "$src"
  (
    cd "$root"
    git ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' f; do if [[ -e $f ]]; then printf '%s\0' "$f"; fi; done |
      xargs -0 cp --parents -t "$src"
  )
  sed -i '0,/^version = ".*"/s//version = "'"$FERROCORN_VERSION"'"/' "$src/Cargo.toml"
  sed -i '/^name = "ferrocorn"$/{n;s/^version = ".*"/version = "'"$FERROCORN_VERSION"'"/}' "$src/Cargo.lock"
  {
    echo "ferrocorn ($FERROCORN_VERSION) bookworm; urgency=medium"
    echo
    echo "  * Rebuild labelled $FERROCORN_VERSION (FERROCORN_VERSION) to test upgrades."
    echo
    echo " -- $(sed -n 's/^Maintainer: //p' "$root/debian/control")  $(date -R)"
    echo
    cat "$root/debian/changelog"
  } >"$src/debian/changelog"
  export CARGO_TARGET_DIR=$out/target-relabelled
fi

cd "$src"
version=$(dpkg-parsechangelog -SVersion)
cargo_version=$(sed -n '0,/^version = "\(.*\)"/s//\1/p' Cargo.toml)
if [[ $version != "$cargo_version" ]]; then
  echo "build-deb: debian/changelog says $version but Cargo.toml says $cargo_version" >&2
  exit 1
fi
arch=$(dpkg --print-architecture)
deb=$out/ferrocorn_${version}_${arch}.deb
rm -f "$deb"
export DEB_DESTDIR=$out
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(dpkg-parsechangelog -STimestamp)}
debian/rules clean >/dev/null
debian/rules binary
debian/rules clean >/dev/null
[[ -f $deb ]] || { echo "build-deb: $deb was not produced" >&2; exit 1; }

if [[ -z ${NO_LINTIAN:-} ]]; then
  echo "build-deb: lintian $deb" >&2
  lintian --fail-on error "$deb" >&2 || { echo "build-deb: lintian reported errors" >&2; exit 1; }
fi
echo "build-deb: built in $((SECONDS - start)) s" >&2
echo "$deb"
