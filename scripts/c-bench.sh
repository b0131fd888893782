#!/usr/bin/env bash
# Cache-hit latency benchmark of the C API (tests/c/bench_hit.c) on the release build.
#   scripts/c-bench.sh [ITERATIONS]     (default 200000 calls per thread and case)
# The introspection endpoint is a tiny responder inside the benchmark (first miss only).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
work="${CARGO_TARGET_DIR:-$root/target}/c-bench"
prefix="$work/prefix"
mkdir -p "$work"
PREFIX="$prefix" PROFILE=release scripts/c-install.sh
cert=tests/data/x5t-vector.pem
openssl x509 -in "$cert" -outform DER -out "$work/cert.der"
x5t="$(openssl dgst -sha256 -binary "$work/cert.der" | openssl base64 -A | tr '+/' '-_' | tr -d '=')"
# Statically linked, with the link line the installed pkg-config file gives.
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046 # word splitting of pkg-config output is intended
gcc -std=c11 -O2 -Wall -Wextra -Wpedantic -Werror $(pkg-config --cflags tokenward) tests/c/bench_hit.c \
  $(pkg-config --variable=libs_static tokenward) -o "$work/bench_hit"
echo "$(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
"$work/bench_hit" "$cert" "$work/cert.der" "$x5t" "${1:-200000}"
# The Python door, same cases, same run.
if [ -x "$root/tests/.work/venv/bin/python" ] || [ -n "${VIRTUAL_ENV:-}" ]; then
  py="${VIRTUAL_ENV:-$root/tests/.work/venv}/bin/python"
  "$py" benches/bench_python_hit.py "$cert" "$x5t" "${2:-100000}"
else
  echo "(Python door figures: run scripts/test.sh or scripts/demo.sh once to create the venv)"
fi
