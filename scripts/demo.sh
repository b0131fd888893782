#!/usr/bin/env bash
# The main job: a real AS, a protected WSGI app behind the tokenward filter (PasteDeploy),
# tokens obtained with each of the five client-authentication methods and accepted.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT/examples"
python demo.py
if [ -x "$ROOT/scripts/c-demo.sh" ]; then bash "$ROOT/scripts/c-demo.sh"; fi
