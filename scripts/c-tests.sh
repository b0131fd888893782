#!/usr/bin/env bash
# Builds and installs the C library, compiles the C tests and the example server with
# -Wall -Wextra -Wpedantic -Werror against the installed header and library, and runs them
# against the real test authorization server (tests/as): plainly, under AddressSanitizer
# (+UBSan) and under valgrind. Prints `N passed, N failed`; exits non-zero on any failure.
#
#   scripts/c-tests.sh                 everything
#   PROFILE=release scripts/c-tests.sh test the release build (default: dev, faster to build)
#   NO_VALGRIND=1 scripts/c-tests.sh   skip the valgrind runs
#
# Needs gcc, python3 (requests, PyJWT, cryptography for tests/support/oidc_as.py), node/npm
# (the AS; `npm ci --prefix tests/as` is run if needed), curl, valgrind, openssl (test PKI).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
work="${CARGO_TARGET_DIR:-$root/target}/c-tests"
prefix="$work/prefix"
bin="$work/bin"

if [ "${1:-}" != "--inner" ]; then
  set -e
  mkdir -p "$bin"
  PREFIX="$prefix" PROFILE="${PROFILE:-dev}" scripts/c-install.sh
  CFLAGS=(-std=c11 -g -O1 -Wall -Wextra -Wpedantic -Werror -I"$prefix/include" -Itests/c)
  # What the static archive needs, from the installed pkg-config file.
  LIBS_STATIC=("$prefix/lib/libtokenward.a" -lpthread -ldl -lm -lrt -lgcc_s)
  LIBS_SHARED=(-L"$prefix/lib" -ltokenward -Wl,-rpath,"$prefix/lib" -lpthread)
  ASAN=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  pkgconf_libs="$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --libs --static tokenward 2>/dev/null || true)"
  echo "pkg-config --libs --static tokenward: ${pkgconf_libs:-(pkg-config not available)}"
  for t in test_api test_as test_token; do
    gcc "${CFLAGS[@]}" "tests/c/$t.c" "${LIBS_STATIC[@]}" -o "$bin/$t"
    gcc "${CFLAGS[@]}" "${ASAN[@]}" "tests/c/$t.c" "${LIBS_STATIC[@]}" -o "$bin/$t-asan"
  done
  gcc "${CFLAGS[@]}" tests/c/test_api.c "${LIBS_SHARED[@]}" -o "$bin/test_api-shared"
  gcc "${CFLAGS[@]}" examples/c/protected_server.c "${LIBS_STATIC[@]}" -o "$bin/protected_server"
  gcc "${CFLAGS[@]}" "${ASAN[@]}" examples/c/protected_server.c "${LIBS_STATIC[@]}" -o "$bin/protected_server-asan"
  set +e
  python3 tests/c/run_against_as.py -- bash "$0" --inner
  exit $?
fi

# ---- inner: runs with the AS up and TW_* set (see tests/c/run_against_as.py)
passed=0
failed=0
log="$work/logs"
mkdir -p "$log"
run() { # name command...
  local name="$1"
  shift
  if "$@" >"$log/$name.log" 2>&1; then
    passed=$((passed + 1))
    echo "PASS $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name (log: $log/$name.log)"
    tail -n 30 "$log/$name.log" | sed 's/^/    /'
  fi
}

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
VALGRIND=(valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect
  --errors-for-leak-kinds=definite,indirect --track-origins=yes --num-callers=30)

example() { # server binary: start it, send a real token (200) and a bad one (401)
  local server="$1" conf="$work/protected_server.conf" out="$work/server.out" port pid rc=0 body
  cat >"$conf" <<CONF
# tokenward options, as in the paste-deploy section
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
  "$server" "$conf" 0 >"$out" &
  pid=$!
  for _ in $(seq 100); do
    port="$(sed -n 's/^listening on //p' "$out")"
    [ -n "$port" ] && break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "server did not start"
    kill "$pid" 2>/dev/null
    return 1
  fi
  body="$(curl -sS -w '\n%{http_code}' -H "Authorization: Bearer $TW_TOKEN" -H 'X-Roles: admin' "http://127.0.0.1:$port/")"
  echo "good token -> $body"
  [ "$(tail -n1 <<<"$body")" = 200 ] || rc=1
  grep -q '"X-User-Id": "svc-post"' <<<"$body" || rc=1
  grep -q '"stripped": \["X-Roles"\]' <<<"$body" || rc=1
  body="$(curl -sS -D - -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer not-a-valid-token-xyz' "http://127.0.0.1:$port/")"
  echo "bad token -> $body"
  [ "$(tail -n1 <<<"$body")" = 401 ] || rc=1
  grep -qi '^WWW-Authenticate: Authorization OAuth 2.0 uri=' <<<"$body" || rc=1
  body="$(curl -sS -w '\n%{http_code}' "http://127.0.0.1:$port/")"
  echo "no token -> $body"
  [ "$(tail -n1 <<<"$body")" = 401 ] || rc=1
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return $rc
}

if [ -n "${C_DEMO:-}" ]; then # scripts/c-demo.sh: just the example server, output shown
  example "$bin/protected_server"
  exit $?
fi
run test_api "$bin/test_api"
run test_api-shared "$bin/test_api-shared"
run test_as "$bin/test_as"
run test_api-asan "$bin/test_api-asan"
run test_as-asan "$bin/test_as-asan"
run test_token "$bin/test_token"
run test_token-asan "$bin/test_token-asan"
run example-server example "$bin/protected_server"
run example-server-asan example "$bin/protected_server-asan"
if [ -z "${NO_VALGRIND:-}" ]; then
  run test_api-valgrind "${VALGRIND[@]}" "$bin/test_api"
  run test_as-valgrind "${VALGRIND[@]}" "$bin/test_as"
  run test_token-valgrind "${VALGRIND[@]}" "$bin/test_token"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
