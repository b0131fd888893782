#!/usr/bin/env bash
# Scale benchmark: tokenward vs keystonemiddleware 13.0.1's external_oauth2_token.
#
#   scripts/bench-scale.sh [--quick] [other benches/bench_scale.py options]
#
# Creates (or reuses) a virtualenv, installs tokenward from this checkout (maturin build, needs a
# Rust toolchain), keystonemiddleware==13.0.1, python-memcached (keystonemiddleware's memcached
# client) and matplotlib (for the plot), checks that a memcached binary is there, then runs
# benches/bench_scale.py (results: docs/bench/scale.json) and benches/plot_scale.py
# (docs/bench/hit-latency-vs-cache-size.png). --quick: a short, CI-sized run.
#
# Environment:
#   VENV                 virtualenv to create/use (default: <repo>/.venv)
#   PYTHON               interpreter used to create it (default: python3)
#   BENCH_SKIP_INSTALL=1 use the venv as it is (no rebuild of tokenward, no pip calls)
#   MEMCACHED            memcached binary (default: memcached on PATH; Debian: apt-get install memcached)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
KSM_VERSION="13.0.1"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "bench-scale.sh: creating virtualenv $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

if [[ "${BENCH_SKIP_INSTALL:-0}" != "1" ]]; then
    echo "bench-scale.sh: installing tokenward from $ROOT, keystonemiddleware==$KSM_VERSION," \
        "python-memcached, matplotlib" >&2
    "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >&2
    # keystonemiddleware first: installing it afterwards could never replace the tokenward built below.
    "$PY" -m pip install -q --disable-pip-version-check "keystonemiddleware==$KSM_VERSION" \
        python-memcached matplotlib >&2
    "$PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$ROOT" >&2
fi

MEMCACHED="${MEMCACHED:-$(command -v memcached || true)}"
if [[ -z "$MEMCACHED" || ! -x "$MEMCACHED" ]]; then
    echo "bench-scale.sh: memcached not found (Debian/Ubuntu: apt-get install memcached)" >&2
    exit 1
fi
export PATH="$(dirname "$MEMCACHED"):$PATH"

"$PY" - <<'PYEOF' >&2
import importlib.metadata as m
print("bench-scale.sh: tokenward", m.version("tokenward"), "| keystonemiddleware",
      m.version("keystonemiddleware"), "| python-memcached", m.version("python-memcached"))
PYEOF

mkdir -p "$ROOT/docs/bench"
"$PY" "$ROOT/benches/bench_scale.py" --json "$ROOT/docs/bench/scale.json" "$@"
"$PY" "$ROOT/benches/plot_scale.py" "$ROOT/docs/bench/scale.json" "$ROOT/docs/bench/hit-latency-vs-cache-size.png"
