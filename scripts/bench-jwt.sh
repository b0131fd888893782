#!/usr/bin/env bash
# Offline JWT validation benchmark (issue 10), one run, one table: first sight of a JWT (a new
# token every call) and cache hit, RS256 2048-bit and ES256, from C, from Python (the _native
# authenticator and the paste filter's WSGI call), PyJWT's jwt.decode, the core from Rust,
# jsonwebtoken 11 and the floor (a bare aws-lc-rs verify), with an introspection miss and hit
# against the real test AS for scale. See benches/bench_jwt.py for the rows.
#
#   scripts/bench-jwt.sh [--tokens N] [--hits N] [--misses N] [--passes N] [--json OUT]
#
# Installs what it needs through scripts/env.sh (the tests' venv with tokenward built from
# this checkout, the AS's npm packages), installs the release C library into a prefix under
# the target directory, builds tests/c/bench_jwt.c through its pkg-config file (static, as
# scripts/c-bench.sh) and the jwt_floor bench (cargo bench), then runs benches/bench_jwt.py.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
work="${CARGO_TARGET_DIR:-$ROOT/target}/bench-jwt"
prefix="$work/prefix"
mkdir -p "$work"

echo "== C library (release) into ${prefix#"$ROOT"/}"
if ! PREFIX="$prefix" PROFILE=release scripts/c-install.sh >"$work/c-install.log" 2>&1; then
  tail -n 40 "$work/c-install.log" >&2
  exit 1
fi
# shellcheck disable=SC2046 # word splitting of pkg-config output is intended
gcc -std=c11 -O2 -Wall -Wextra -Wpedantic -Werror $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags tokenward) \
  tests/c/bench_jwt.c $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --variable=libs_static tokenward) \
  -o "$work/bench_jwt"

echo "== jwt_floor bench (cargo bench, release)"
floor="$(cargo bench --locked --bench jwt_floor --no-run --message-format=json 2>"$work/floor-build.log" |
  python -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "jwt_floor" and m.get("executable"):
        print(m["executable"])')" || { tail -n 40 "$work/floor-build.log" >&2; exit 1; }
[ -x "$floor" ] || { echo "error: no jwt_floor executable" >&2; tail -n 40 "$work/floor-build.log" >&2; exit 1; }

echo "== benchmark (benches/bench_jwt.py)"
exec python benches/bench_jwt.py --c-bench "$work/bench_jwt" --floor-bench "$floor" "$@"
