#!/usr/bin/env bash
# Every test: Rust (fmt, clippy, unit and integration), Python (ruff, pytest against the real
# AS, gunicorn, eventlet), the C door (header check, ASan, valgrind), a fuzz smoke.
# Installs what it needs.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"

echo "== rust: fmt, clippy, tests"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p tokenward --features fuzzing --locked -- -D warnings
cargo clippy -p tokenward-python --features bench --all-targets --locked -- -D warnings
cargo test --workspace --exclude tokenward-python --locked
# The Python door's own tests embed the venv's interpreter.
PYO3_PYTHON="$VENV/bin/python" cargo test -p tokenward-python --locked

echo "== rust: dependency policy (cargo deny: bans, licences, sources; deny.toml)"
if [ "$(cargo deny --version 2>/dev/null | awk '{print $2}')" != 0.20.2 ]; then
  cargo install cargo-deny --locked --version 0.20.2 --quiet
fi
cargo deny --offline check --hide-inclusion-graph bans licenses sources

echo "== python: ruff"
ruff check python tests examples benches scripts
ruff format --check python tests examples benches scripts

echo "== python: stubs match the extension module"
python -m mypy.stubtest tokenward._native

echo "== python: pytest (real AS, PasteDeploy, gunicorn, eventlet)"
python -m pytest -q tests/python tests/support

if [ -x scripts/c-tests.sh ]; then
  echo "== C door"
  if [ "$(cbindgen --version 2>/dev/null | awk '{print $2}')" != 0.29.4 ]; then
    cargo install cbindgen --locked --version 0.29.4 --quiet
  fi
  bash scripts/c-header.sh --check
  bash scripts/c-tests.sh
fi
echo "== fuzz smoke: every target, 3000 executions, fixed seed (cargo-fuzz on stable)"
FUZZ_SEED=1 bash scripts/fuzz.sh 3000
echo "== all tests passed"
