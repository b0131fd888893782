#!/usr/bin/env bash
# Cache-hit cost of proof of possession (certificate sources, DPoP) in the Python door.
#   scripts/bench-pop.sh [ITERATIONS]
# Installs what it needs through scripts/env.sh (the tests' venv with tokenward built from
# this checkout), then runs benches/bench_pop.py.
set -euo pipefail
. "$(dirname "$0")/env.sh"
exec python "$ROOT/benches/bench_pop.py" "$@"
