#!/usr/bin/env bash
# The C door in the demo, told as numbered steps: build libtokenward, compile the example C
# HTTP server (examples/c/protected_server.c) against it, put it in front of the real test AS,
# and send it a real token, a bad one and none. The build's and the server's own output go to
# log files (the build log is printed if the build fails; the server's log at the end).
# Everything temporary (install prefix, test PKI with its private keys) is removed on exit.
# Run on its own it ends with one OK line; scripts/demo.sh prints the final OK itself.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

check() { # description command...: runs a check, prints it with PASS/FAIL
  local what="$1"
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "   PASS $what"
  else
    failed=$((failed + 1))
    echo "   FAIL $what"
  fi
}

if [ "${1:-}" = --story ]; then
  # ---- runs under tests/c/run_against_as.py: the AS is up, TW_* describe it
  tmp="$2"
  passed=0 failed=0
  conf="$tmp/protected_server.conf" server_log="$tmp/server.log"
  cat >"$conf" <<CONF
introspect_endpoint = $TW_ENDPOINT
audience = $TW_ISSUER
client_id = svc-post
client_secret = p0st-secret-0123456789abcdefghijkl
auth_method = client_secret_post
cafile = $TW_CAFILE
mapping_project_id = project.id
mapping_project_name = project.name
mapping_project_domain_id = project.domain.id
mapping_project_domain_name = project.domain.name
mapping_user_domain_id = user_domain.id
mapping_user_domain_name = user_domain.name
mapping_roles = roles
CONF
  echo "4. start the example server with the tokenward options (introspects as svc-post)"
  "$tmp/protected_server" "$conf" 0 >"$server_log" 2>&1 &
  pid=$!
  port=""
  for _ in $(seq 100); do
    port="$(sed -n 's/^listening on //p' "$server_log")"
    [ -n "$port" ] && break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "error: the server did not start; its log:" >&2
    sed 's/^/   | /' "$server_log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
  fi
  echo "   listening on 127.0.0.1:$port"
  url="http://127.0.0.1:$port/"

  echo "5. a real token from the AS, with a spoofed X-Roles: admin header"
  body="$(curl -sS -w '\n%{http_code}' -H "Authorization: Bearer $TW_TOKEN" -H 'X-Roles: admin' "$url")"
  code="$(tail -n1 <<<"$body")"
  echo "   -> $code, identity headers: $(grep -o '"X-User-Id": "[^"]*"' <<<"$body"), $(grep -o '"X-Roles": "[^"]*"' <<<"$body" || echo 'no X-Roles')"
  check "accepted (200)" [ "$code" = 200 ]
  check "X-User-Id is the token's client" grep -q '"X-User-Id": "svc-post"' <<<"$body"
  check "the spoofed X-Roles was stripped" grep -q '"stripped": \["X-Roles"\]' <<<"$body"

  echo "6. a token the AS never issued"
  head="$(curl -sS -D - -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer not-a-valid-token-xyz' "$url")"
  code="$(tail -n1 <<<"$head")"
  echo "   -> $code, $(grep -i '^WWW-Authenticate:' <<<"$head" | tr -d '\r')"
  check "refused (401)" [ "$code" = 401 ]
  check "with the reference's challenge" grep -qi '^WWW-Authenticate: Authorization OAuth 2.0 uri=' <<<"$head"

  echo "7. no token at all"
  code="$(curl -sS -o /dev/null -w '%{http_code}' "$url")"
  echo "   -> $code"
  check "refused (401)" [ "$code" = 401 ]

  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "8. what the server logged meanwhile (its stderr, tokenward's log callback)"
  sed 's/^/   | /' "$server_log"
  echo
  if [ "$failed" = 0 ]; then
    echo "C door: all $passed checks passed"
  else
    echo "C door: $failed of $((passed + failed)) checks FAILED"
  fi
  [ "$failed" = 0 ]
  exit $?
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tokenward-demo-c.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
logs="$ROOT/tests/.work/logs"
mkdir -p "$logs"
python=python3
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/tests/.work/venv/bin/python" ]; then
  python="$ROOT/tests/.work/venv/bin/python"
fi

echo
echo "== the C door: examples/c/protected_server.c"
build_log="$logs/c-demo-build.log"
echo "1. build libtokenward (cargo, dev profile) and install it in a temporary prefix"
echo "   (log: ${build_log#"$ROOT"/})"
start=$SECONDS
if ! PREFIX="$tmp/prefix" PROFILE=dev bash scripts/c-install.sh >"$build_log" 2>&1; then
  echo "error: the build failed; its log:" >&2
  sed 's/^/   | /' "$build_log" >&2
  exit 1
fi
echo "   done in $((SECONDS - start)) s"

echo "2. compile examples/c/protected_server.c through the installed pkg-config file"
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# shellcheck disable=SC2207 # pkg-config prints a list of words
flags=($(pkg-config --cflags --libs tokenward))
echo "   gcc -std=c11 -Wall -Wextra -Werror protected_server.c ${flags[*]} -Wl,-rpath,... -lpthread"
gcc -std=c11 -O1 -Wall -Wextra -Wpedantic -Werror examples/c/protected_server.c "${flags[@]}" \
  -Wl,-rpath,"$tmp/prefix/lib" -lpthread -o "$tmp/protected_server"

echo "3. start the test authorization server (oidc-provider) and obtain a token as svc-post"
"$python" tests/c/run_against_as.py --pki "$tmp/pki" -- bash "$0" --story "$tmp" || exit 1
[ -n "${TOKENWARD_DEMO:-}" ] || echo "C demo OK"
