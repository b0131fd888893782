#!/usr/bin/env bash
# Cache-hit latency benchmark of the C API (tests/c/bench_hit.c) on the release build.
#   scripts/c-bench.sh [ITERATIONS] [PY_ITERATIONS] [POP_ITERATIONS]
#     (defaults 200000 calls per thread and case; 100000 for the Python door; 20000 for the
#     proof-of-possession cases, whose DPoP proofs are made beforehand)
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
# Proof of possession: forwarded certificates and DPoP (inputs made by the Python bench).
# shellcheck disable=SC2046
gcc -std=c11 -O2 -Wall -Wextra -Wpedantic -Werror $(pkg-config --cflags tokenward) tests/c/bench_pop.c \
  $(pkg-config --variable=libs_static tokenward) -o "$work/bench_pop"
# The Python door, same cases, same run.
if [ -x "$root/tests/.work/venv/bin/python" ] || [ -n "${VIRTUAL_ENV:-}" ]; then
  py="${VIRTUAL_ENV:-$root/tests/.work/venv}/bin/python"
  "$py" benches/bench_python_hit.py "$cert" "$x5t" "${2:-100000}"
  "$py" benches/bench_pop.py --c-inputs "$work/pop" "${3:-20000}"
  "$work/bench_pop" "$work/pop" "${3:-20000}"
  "$py" benches/bench_pop.py "${3:-20000}"
else
  echo "(Python door figures: run scripts/test.sh or scripts/demo.sh once to create the venv)"
fi
