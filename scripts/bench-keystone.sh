#!/usr/bin/env bash
# Keystone figures of issue 14 (one run, one real Keystone): cache hit and miss of
# tokenward.auth_token beside keystonemiddleware.auth_token configured the same way (memcache
# off) and a bare validation call, from Python; and the C door's hit (release library).
#   scripts/bench-keystone.sh [ROUNDS] [HITS] [MISSES] [C_ITERATIONS]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
work="${CARGO_TARGET_DIR:-$root/target}/bench-keystone"
prefix="$work/prefix"
mkdir -p "$work"
PREFIX="$prefix" PROFILE=release scripts/c-install.sh
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046 # word splitting of pkg-config output is intended
gcc -std=c11 -O2 -Wall -Wextra -Wpedantic -Werror $(pkg-config --cflags tokenward) -Itests/c tests/c/bench_keystone.c \
  $(pkg-config --variable=libs_static tokenward) -o "$work/bench_keystone"
py="${VIRTUAL_ENV:-$root/tests/.work/venv}/bin/python"
echo "$(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
"$py" benches/bench_keystone.py --rounds "${1:-5}" --hits "${2:-20000}" --misses "${3:-20}" \
  --c-bench "$work/bench_keystone" --c-iterations "${4:-200000}"
