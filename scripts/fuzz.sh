#!/usr/bin/env bash
# Coverage-guided fuzzing of the core with cargo-fuzz (libFuzzer) on the stable toolchain.
# Usage: scripts/fuzz.sh [RUNS] [TARGET...]
#   RUNS    executions per target (default $FUZZ_RUNS, else 100000)
#   TARGET  any of: introspection claims certificate config jwt memcached (default: all)
# Env: FUZZ_SEED (libFuzzer -seed, default 1: reruns are reproducible), FUZZ_JOBS.
# Seeds are read from tests/fuzz/corpus/<target>/ (checked in, never written); new inputs go
# to tests/fuzz/corpus-run/<target>/, crashes to tests/fuzz/artifacts/<target>/. No
# sanitizer: `-s none` builds on stable (AddressSanitizer needs nightly, and the core has no
# unsafe code); overflow checks and debug assertions are on. Exits non-zero on any crash.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
runs=${1:-${FUZZ_RUNS:-100000}}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(introspection claims certificate config jwt memcached)
seed=${FUZZ_SEED:-1}

if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != 0.13.1 ]; then
  cargo install cargo-fuzz --locked --version 0.13.1 --quiet
fi
# 16 codegen units: the cold build takes half the time of cargo-fuzz's default of one.
flags=(--fuzz-dir tests/fuzz -s none -O --codegen-units 16)
cargo fuzz build "${flags[@]}"

status=0
summary=()
for target in "${targets[@]}"; do
  mkdir -p "tests/fuzz/corpus-run/$target" "tests/fuzz/artifacts/$target"
  log="tests/fuzz/artifacts/$target/last-run.log"
  start=$(date +%s.%N)
  if cargo fuzz run "${flags[@]}" "$target" \
      "tests/fuzz/corpus-run/$target" "tests/fuzz/corpus/$target" -- \
      -runs="$runs" -seed="$seed" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    status=1
    grep -E "panicked|Test unit written|SUMMARY" "$log" | head -5 >&2 || true
  fi
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  rate=$(awk -v e="${execs:-0}" -v s="$secs" 'BEGIN { printf "%d", (s > 0 ? e / s : 0) }')
  crashes=$(find "tests/fuzz/artifacts/$target" -name 'crash-*' | wc -l)
  summary+=("$(printf '%-14s %-5s execs %-9s %7s/s (incl. start-up)  coverage %-6s crash files %s' \
    "$target" "$result" "${execs:-?}" "$rate" "${cov:-?}" "$crashes")")
done
echo "== fuzz summary (runs=$runs seed=$seed)"
printf '%s\n' "${summary[@]}"
exit $status
