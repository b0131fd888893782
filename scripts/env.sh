# Sourced by the demo, test and bench scripts: installs what they need on a fresh machine
# (Debian packages, a Python venv with tokenward built from this tree, the test AS's npm
# packages) and activates the venv. Idempotent; safe to source again.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$ROOT/tests/.work"
mkdir -p "$WORK"

# command → Debian package providing it; only what is missing gets installed.
need=()
for pair in openssl:openssl node:nodejs npm:npm valgrind:valgrind curl:curl pkg-config:pkg-config \
            memcached:memcached redis-server:redis-server redis-cli:redis-tools gcc:gcc; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "== apt-get install ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi

VENV="$WORK/venv"
if [ ! -x "$VENV/bin/python" ]; then
  echo "== python venv in $VENV"
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --disable-pip-version-check -r "$ROOT/tests/requirements.txt"
echo "== building and installing tokenward (maturin, release)"
python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$ROOT"

if [ ! -d "$ROOT/tests/as/node_modules/oidc-provider" ]; then
  echo "== npm ci (test authorization server)"
  npm ci --prefix "$ROOT/tests/as" --no-audit --no-fund --loglevel=error
fi
