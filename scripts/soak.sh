#!/usr/bin/env bash
# Soak (not in CI): gunicorn --preload, 2 gthread workers x 8 threads, the tokenward filter in
# front of a trivial app, introspection at the real test AS (oidc-provider) and memcached as the
# shared tier; 64 client threads for --duration seconds (default 120) with valid, refused and
# junk requests while the AS is killed and restarted twice and memcached once.
#
#   scripts/soak.sh [--duration S] [--json out.json] [other benches/soak.py options]
#
# Installs what it needs through scripts/env.sh (Debian memcached and Node.js, the tests' venv
# with tokenward built from this checkout, gunicorn and prometheus_client, the AS's npm
# packages), then runs benches/soak.py. Exit status 1 on a wrong verdict, a 500, an
# unexplained 503, a transport error, a worker restart or an fd leak.
set -euo pipefail
. "$(dirname "$0")/env.sh"
python - <<'PYEOF' >&2
import importlib.metadata as m
print("soak.sh: tokenward", m.version("tokenward"), "| gunicorn", m.version("gunicorn"))
PYEOF
exec python "$ROOT/benches/soak.py" "$@"
