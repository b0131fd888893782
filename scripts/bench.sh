#!/usr/bin/env bash
# Benchmark tokenward against keystonemiddleware 13.0.1's external_oauth2_token filter.
#
#   scripts/bench.sh [--quick] [--rounds R] [--iterations N] [--cache-size N] [--json out.json]
#
# Installs what it needs through scripts/env.sh (the venv of the tests, with tokenward built
# from this checkout and keystonemiddleware==13.0.1 from tests/requirements.txt), then runs
# benches/bench_filter.py with the given arguments.
set -euo pipefail
. "$(dirname "$0")/env.sh"
python - <<'PYEOF' >&2
import importlib.metadata as m
print("bench.sh: tokenward", m.version("tokenward"), "| keystonemiddleware", m.version("keystonemiddleware"))
PYEOF
exec python "$ROOT/benches/bench_filter.py" "$@"
