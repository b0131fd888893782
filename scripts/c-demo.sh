#!/usr/bin/env bash
# The C door in the demo: the example C HTTP server (examples/c/protected_server.c) protecting
# one endpoint with tokenward, against the real AS: a real token accepted, a bad one refused.
set -euo pipefail
echo
echo "== the C door: examples/c/protected_server.c"
C_DEMO=1 NO_VALGRIND=1 bash "$(dirname "$0")/c-tests.sh"
