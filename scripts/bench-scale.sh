#!/usr/bin/env bash
# Scale benchmark: tokenward vs keystonemiddleware 13.0.1's external_oauth2_token.
#
#   scripts/bench-scale.sh [--quick] [other benches/bench_scale.py options]
#
# Installs what it needs through scripts/env.sh (Debian memcached, the tests' venv with
# tokenward, keystonemiddleware==13.0.1 and python-memcached) plus matplotlib for the plot,
# then runs benches/bench_scale.py (results: docs/bench/scale.json) and benches/plot_scale.py
# (docs/bench/hit-latency-vs-cache-size.png). --quick: a short, CI-sized run.
set -euo pipefail
# The 1,000,000-token point is filled through the bench-only _prefill_for_bench.
TOKENWARD_FEATURES=bench
. "$(dirname "$0")/env.sh"
python -m pip install -q --disable-pip-version-check matplotlib
python - <<'PYEOF' >&2
import importlib.metadata as m
print("bench-scale.sh: tokenward", m.version("tokenward"), "| keystonemiddleware",
      m.version("keystonemiddleware"), "| python-memcached", m.version("python-memcached"))
PYEOF
mkdir -p "$ROOT/docs/bench"
python "$ROOT/benches/bench_scale.py" --json "$ROOT/docs/bench/scale.json" "$@"
python "$ROOT/benches/plot_scale.py" "$ROOT/docs/bench/scale.json" "$ROOT/docs/bench/hit-latency-vs-cache-size.png"
