#!/usr/bin/env bash
# Benchmark tokenward against keystonemiddleware 13.0.1's external_oauth2_token filter.
#
#   scripts/bench.sh [--quick] [--rounds R] [--iterations N] [--cache-size N] [--json out.json]
#
# Creates (or reuses) a virtualenv, installs tokenward from this checkout (maturin build, needs
# a Rust toolchain) and keystonemiddleware==13.0.1 from PyPI, then runs
# benches/bench_filter.py with the given arguments.
#
# Environment:
#   VENV                 virtualenv to create/use (default: <repo>/.venv)
#   PYTHON               interpreter used to create it (default: python3)
#   BENCH_SKIP_INSTALL=1 use the venv as it is (no rebuild of tokenward, no pip calls)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
KSM_VERSION="13.0.1"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "bench.sh: creating virtualenv $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

if [[ "${BENCH_SKIP_INSTALL:-0}" != "1" ]]; then
    echo "bench.sh: installing tokenward from $ROOT and keystonemiddleware==$KSM_VERSION" >&2
    "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >&2
    # keystonemiddleware first: it pins nothing that tokenward needs, and installing it
    # afterwards could never replace the tokenward built below.
    "$PY" -m pip install -q --disable-pip-version-check "keystonemiddleware==$KSM_VERSION" >&2
    "$PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$ROOT" >&2
fi

"$PY" - <<'EOF' >&2
import importlib.metadata as m
print("bench.sh: tokenward", m.version("tokenward"), "| keystonemiddleware",
      m.version("keystonemiddleware"))
EOF

exec "$PY" "$ROOT/benches/bench_filter.py" "$@"
