#!/usr/bin/env bash
# The main job: a real AS, a protected WSGI app behind the tokenward filter (PasteDeploy),
# tokens obtained with each of the five client-authentication methods and accepted; then the
# C door (scripts/c-demo.sh). Temporary files (test PKI with private keys, paste files, the C
# install prefix) live under one /tmp/tokenward-demo-* folder that is removed on exit.
# Ends with one line: `demo OK`, or an error.
set -euo pipefail
demo_tmp="$(mktemp -d /tmp/tokenward-demo-XXXXXX)"
trap 'rm -rf "$demo_tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
. "$(dirname "$0")/env.sh"
export TMPDIR="$demo_tmp" TOKENWARD_DEMO=1
echo
echo "== the Python door: examples/demo.py"
(cd "$ROOT/examples" && python demo.py)
bash "$ROOT/scripts/c-demo.sh"
echo
echo "demo OK"
