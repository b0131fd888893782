#!/usr/bin/env bash
# Builds the C library (release) and installs it under $PREFIX (default /usr/local):
#   $PREFIX/lib/libtokenward.a                   static archive
#   $PREFIX/lib/libtokenward.so.$VERSION         shared library, SONAME libtokenward.so.$MAJOR
#   $PREFIX/lib/libtokenward.so.$MAJOR -> libtokenward.so.$VERSION   (what programs load)
#   $PREFIX/lib/libtokenward.so -> libtokenward.so.$MAJOR            (what -ltokenward finds)
#   $PREFIX/include/tokenward.h, $PREFIX/lib/pkgconfig/tokenward.pc
# Run `ldconfig` afterwards when $PREFIX/lib is in the loader's search path (/usr/local/lib
# is on Debian), or link programs with -Wl,-rpath,$PREFIX/lib.
# Usage: PREFIX=/some/dir scripts/c-install.sh
# Env: PROFILE=release|dev (default release), CARGO_TARGET_DIR honoured.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PREFIX="${PREFIX:-/usr/local}"
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = release ]; then
  cargo build --locked --release -p tokenward-capi
  outdir="${CARGO_TARGET_DIR:-$root/target}/release"
else
  cargo build --locked -p tokenward-capi
  outdir="${CARGO_TARGET_DIR:-$root/target}/debug"
fi
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)"
# System libraries the static archive needs (what rustc reports for a staticlib on Linux/glibc).
libs_private="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
mkdir -p "$PREFIX/lib/pkgconfig" "$PREFIX/include"
install -m 0644 "$outdir/libtokenward_c.a" "$PREFIX/lib/libtokenward.a"
# The SONAME (libtokenward.so.$major) is set at link time by bindings/c/build.rs.
major="${version%%.*}"
install -m 0755 "$outdir/libtokenward_c.so" "$PREFIX/lib/libtokenward.so.$version"
ln -sfn "libtokenward.so.$version" "$PREFIX/lib/libtokenward.so.$major"
ln -sfn "libtokenward.so.$major" "$PREFIX/lib/libtokenward.so"
install -m 0644 include/tokenward.h "$PREFIX/include/tokenward.h"
sed -e "s|@PREFIX@|$PREFIX|" -e "s|@VERSION@|$version|" -e "s|@LIBS_PRIVATE@|$libs_private|" \
  bindings/c/tokenward.pc.in >"$PREFIX/lib/pkgconfig/tokenward.pc"
echo "installed tokenward $version ($PROFILE) under $PREFIX"
