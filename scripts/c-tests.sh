#!/usr/bin/env bash
# Builds and installs the C library into a temporary prefix, checks its SONAME and symlinks,
# compiles the C tests, the example server and the README's C example with
# -Wall -Wextra -Wpedantic -Werror through the installed pkg-config file (shared, and
# statically with the README's static line), checks what each binary links, and runs them
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
bin="$work/bin"
# A fresh temporary install prefix per run (removed on exit), so nothing left over from an
# earlier install can make a test pass.
if [ "${1:-}" != "--inner" ]; then
  TW_C_PREFIX="$(mktemp -d "${TMPDIR:-/tmp}/tokenward-c-prefix.XXXXXX")"
  export TW_C_PREFIX
  trap 'rm -rf "$TW_C_PREFIX"' EXIT
fi
prefix="$TW_C_PREFIX"

readme_example="$work/readme_example.c"

if [ "${1:-}" != "--inner" ]; then
  set -e
  mkdir -p "$bin"
  PREFIX="$prefix" PROFILE="${PROFILE:-dev}" scripts/c-install.sh
  # The tests compile and link the way a user does: through the installed pkg-config file.
  # (Set after the build: build scripts watch PKG_CONFIG_PATH and would rebuild every time.)
  export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  command -v pkg-config >/dev/null || { echo "error: pkg-config is needed" >&2; exit 2; }
  # shellcheck disable=SC2207 # pkg-config output is a list of words
  PC_CFLAGS=($(pkg-config --cflags tokenward))
  libdir="$(pkg-config --variable=libdir tokenward)"
  # Shared: -L… -ltokenward (resolves to libtokenward.so -> .so.0), run through the rpath.
  # shellcheck disable=SC2207
  LIBS_SHARED=($(pkg-config --libs tokenward) -Wl,-rpath,"$libdir" -lpthread)
  # Static: the archive itself plus what it needs (the line the README gives).
  # shellcheck disable=SC2207
  LIBS_STATIC=($(pkg-config --variable=libs_static tokenward))
  echo "cflags: ${PC_CFLAGS[*]}"
  echo "shared: ${LIBS_SHARED[*]}"
  echo "static: ${LIBS_STATIC[*]}"
  CFLAGS=(-std=c11 -g -O1 -Wall -Wextra -Wpedantic -Werror "${PC_CFLAGS[@]}" -Itests/c)
  ASAN=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  for t in test_api test_as test_token test_jwt test_keystone; do
    gcc "${CFLAGS[@]}" "tests/c/$t.c" "${LIBS_SHARED[@]}" -o "$bin/$t"
    gcc "${CFLAGS[@]}" "${ASAN[@]}" "tests/c/$t.c" "${LIBS_SHARED[@]}" -o "$bin/$t-asan"
  done
  gcc "${CFLAGS[@]}" tests/c/test_api.c "${LIBS_STATIC[@]}" -o "$bin/test_api-static"
  gcc "${CFLAGS[@]}" examples/c/protected_server.c "${LIBS_SHARED[@]}" -o "$bin/protected_server"
  gcc "${CFLAGS[@]}" "${ASAN[@]}" examples/c/protected_server.c "${LIBS_SHARED[@]}" -o "$bin/protected_server-asan"
  gcc "${CFLAGS[@]}" examples/c/protected_server.c "${LIBS_STATIC[@]}" -lpthread -o "$bin/protected_server-static"
  # The README's C example, exactly as printed there, must compile (both link lines).
  awk '/^## Using tokenward from C/ {s = 1} s && /^```c$/ {c = 1; next} c && /^```$/ {exit} c' README.md >"$readme_example"
  [ -s "$readme_example" ] || { echo "error: no C example in README.md" >&2; exit 1; }
  gcc "${CFLAGS[@]}" "$readme_example" "${LIBS_SHARED[@]}" -o "$bin/readme_example"
  gcc "${CFLAGS[@]}" "$readme_example" "${LIBS_STATIC[@]}" -o "$bin/readme_example-static"
  # The same program pointed at a closed local port, to run its 503 branch.
  sed 's|https://keycloak:8443|http://127.0.0.1:1|g' "$readme_example" >"$work/readme_example_offline.c"
  gcc "${CFLAGS[@]}" "$work/readme_example_offline.c" "${LIBS_SHARED[@]}" -o "$bin/readme_example_offline"
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

raw_request() { # port header-line...: sends GET / with these header lines, prints the status line
  local port="$1" line
  shift
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  {
    printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n'
    for line in "$@"; do printf '%s\r\n' "$line"; done
    printf '\r\n'
  } >&3
  timeout 10 head -n1 <&3 | tr -d '\r'
  exec 3<&-
}

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
  # Emptied first: the background job truncates it only once it runs, and until then the
  # loop below could read the previous server's port.
  : >"$out"
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
  # More header lines than the server can hold (MAX_HEADERS = 100; curl adds Host,
  # User-Agent, Accept), with a spoofed X-Roles late in the list: refused, not passed on.
  local fillers=() i
  for i in $(seq 100); do fillers+=(-H "X-Filler-$i: x"); done
  body="$(curl -sS -w '\n%{http_code}' -H "Authorization: Bearer $TW_TOKEN" "${fillers[@]}" -H 'X-Roles: admin' "http://127.0.0.1:$port/")"
  echo "105 headers, X-Roles last -> $(tail -n1 <<<"$body")"
  [ "$(tail -n1 <<<"$body")" = 431 ] || rc=1
  # Just within the limit (95 lines): accepted, and the late X-Roles is still stripped.
  body="$(curl -sS -w '\n%{http_code}' -H "Authorization: Bearer $TW_TOKEN" "${fillers[@]:0:180}" -H 'X-Roles: admin' "http://127.0.0.1:$port/")"
  echo "95 headers, X-Roles last -> $(tail -n1 <<<"$body")"
  [ "$(tail -n1 <<<"$body")" = 200 ] || rc=1
  grep -q '"stripped": \["X-Roles"\]' <<<"$body" || rc=1
  # Header lines whose name would not be checked as X-Roles, and a second credential: 400.
  local raw
  for raw in 'X-Roles : admin' ' X-Roles: admin' $'X-Ok: 1\nX-Roles: admin' "Authorization: Bearer $TW_TOKEN"; do
    body="$(raw_request "$port" "Authorization: Bearer $TW_TOKEN" "$raw")"
    printf 'extra header line %q -> %s\n' "${raw//"$TW_TOKEN"/TOKEN}" "$body"
    [ "$body" = "HTTP/1.1 400 Bad Request" ] || rc=1
  done
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return $rc
}

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)"
lib="$prefix/lib"
soname_check() { # the installed library names itself libtokenward.so.MAJOR; the symlinks lead to it
  local dyn
  dyn="$(readelf -d "$lib/libtokenward.so.$version")" && echo "$dyn" && ls -l "$lib" &&
    grep -q "Library soname: \[libtokenward.so.${version%%.*}\]" <<<"$dyn" &&
    [ "$(readlink "$lib/libtokenward.so.${version%%.*}")" = "libtokenward.so.$version" ] &&
    [ "$(readlink "$lib/libtokenward.so")" = "libtokenward.so.${version%%.*}" ] &&
    [ "$(pkg-config --modversion tokenward)" = "$version" ]
}
links_shared() { # a program linked by `pkg-config --libs` loads libtokenward.so.MAJOR from the prefix
  local dyn deps
  dyn="$(readelf -d "$1")" && deps="$(ldd "$1")" && echo "$dyn" && echo "$deps" &&
    grep -q "NEEDED.*\[libtokenward.so.${version%%.*}\]" <<<"$dyn" &&
    grep -q "libtokenward.so.${version%%.*} => $lib/libtokenward.so.${version%%.*}" <<<"$deps"
}
links_static() { # a program linked by the README's static line has no dynamic libtokenward
  local dyn deps
  dyn="$(readelf -d "$1")" && deps="$(ldd "$1")" && echo "$dyn" && echo "$deps" &&
    grep -q NEEDED <<<"$dyn" && ! grep -q libtokenward <<<"$dyn" && ! grep -q libtokenward <<<"$deps"
}
readme_example_checks() { # ASCII only; against an unreachable AS it prints the 503 and its reason
  local out
  ! LC_ALL=C grep -n '[^ -~]' "$readme_example" || return 1
  out="$("$bin/readme_example_offline" 2>&1)"
  echo "$out"
  grep -q '^tokenward: as_unavailable: .' <<<"$out" && grep -q '^503 Service Unavailable$' <<<"$out"
}
run soname soname_check
run readme-example readme_example_checks
run test_api-links-shared links_shared "$bin/test_api"
run test_api-links-static links_static "$bin/test_api-static"
run readme-example-links-shared links_shared "$bin/readme_example"
run readme-example-links-static links_static "$bin/readme_example-static"
TW_METRICS_TEXT_OUT="$work/metrics.txt" run test_api "$bin/test_api"
# The C metrics text, parsed by prometheus_client's own parser (as a scraper would).
run metrics-text-parses python3 - "$work/metrics.txt" <<'PYEOF'
import sys
from prometheus_client.parser import text_string_to_metric_families
families = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
# Exactly the families issue 12 lists for an introspection authenticator, with their types.
counters = """cache_hits cache_negative_hits cache_misses introspections as_errors breaker_rejections
    shared_cache_errors coalesced_waits stale_served""".split()
want = {f"tokenward_{n}": "counter" for n in counters}
want |= {"tokenward_cache_entries": "gauge", "tokenward_breaker_open": "gauge"}
want["tokenward_as_request_duration_seconds"] = "histogram"
got = {name: f.type for name, f in families.items()}
assert got == want, got
for name, f in families.items():
    suffixes = ("_bucket", "_sum", "_count") if f.type == "histogram" else ("_total",) if f.type == "counter" else ("",)
    assert {s.name for s in f.samples} == {name + x for x in suffixes}, (name, f.samples)
    assert all(s.labels["filter"] == "tokenward" and s.labels["pid"].isdigit() for s in f.samples), f.samples
kinds = {s.labels["kind"]: s.value for s in families["tokenward_as_errors"].samples}
assert set(kinds) == {"unreachable", "timeout", "status", "garbage", "too_large", "rejected"}, kinds
assert kinds["unreachable"] >= 1, kinds
print("parsed", len(families), "families")
PYEOF
run test_api-static "$bin/test_api-static"
run test_as "$bin/test_as"
run test_api-asan "$bin/test_api-asan"
run test_as-asan "$bin/test_as-asan"
run test_token "$bin/test_token"
run test_token-asan "$bin/test_token-asan"
run test_jwt "$bin/test_jwt"
run test_jwt-asan "$bin/test_jwt-asan"
run test_keystone "$bin/test_keystone"
run test_keystone-asan "$bin/test_keystone-asan"
# The same program against a real Keystone (tests/support/keystone_server.py).
run test_keystone-real python3 tests/c/run_against_keystone.py -- "$bin/test_keystone"
run test_keystone-real-asan python3 tests/c/run_against_keystone.py -- "$bin/test_keystone-asan"
run example-server example "$bin/protected_server"
run example-server-static example "$bin/protected_server-static"
run example-server-asan example "$bin/protected_server-asan"
if [ -z "${NO_VALGRIND:-}" ]; then
  run test_api-valgrind "${VALGRIND[@]}" "$bin/test_api"
  run test_as-valgrind "${VALGRIND[@]}" "$bin/test_as"
  run test_token-valgrind "${VALGRIND[@]}" "$bin/test_token"
  run test_jwt-valgrind "${VALGRIND[@]}" "$bin/test_jwt"
  run test_keystone-valgrind "${VALGRIND[@]}" "$bin/test_keystone"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
