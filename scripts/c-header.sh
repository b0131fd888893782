#!/usr/bin/env bash
# Regenerates include/tokenward.h from bindings/c with the pinned cbindgen.
#   scripts/c-header.sh           write include/tokenward.h
#   scripts/c-header.sh --check   fail (exit 1, with a diff) if the checked-in header is stale
# Install the pinned tool with: cargo install cbindgen --locked --version 0.29.4
set -euo pipefail
CBINDGEN_VERSION=0.29.4
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
have="$(cbindgen --version 2>/dev/null | awk '{print $2}')" || true
if [ "$have" != "$CBINDGEN_VERSION" ]; then
  echo "error: need cbindgen $CBINDGEN_VERSION (found '${have:-none}'): cargo install cbindgen --locked --version $CBINDGEN_VERSION" >&2
  exit 2
fi
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
cbindgen --quiet --config bindings/c/cbindgen.toml --crate tokenward-capi --output "$tmp" bindings/c
if [ "$check" = 1 ]; then
  if ! diff -u include/tokenward.h "$tmp"; then
    echo "include/tokenward.h is out of date: run scripts/c-header.sh" >&2
    exit 1
  fi
  echo "include/tokenward.h is up to date"
else
  mkdir -p include
  cp "$tmp" include/tokenward.h
  echo "wrote include/tokenward.h"
fi
