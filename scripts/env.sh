# Sourced by the demo, test and bench scripts: installs what they need on a fresh machine
# (Debian packages, a Python venv with tokenward built from this tree, the test AS's npm
# packages) and activates the venv. Idempotent; safe to source again.
# Prerequisites it checks but does not install: the Rust toolchain (≥ the crate's
# rust-version), Python ≥ 3.10 with venv, Node.js ≥ 20 (installed from Debian when missing).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$ROOT/tests/.work"
mkdir -p "$WORK/logs"

# ---- prerequisites, checked before anything is installed or built
prereq_fail() {
  echo "error: $1" >&2
  echo "       (the prerequisites are listed in README.md, \"Two commands\")" >&2
  return 1
}
version_at_least() { # have want: true when version `have` >= `want`
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}
rust_wanted="$(sed -n '/^\[workspace.package\]/,/^\[/s/^rust-version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml")"
if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
  prereq_fail "the Rust toolchain (cargo, rustc >= $rust_wanted) is needed: install it with rustup (https://rustup.rs), then open a new shell"
fi
rust_have="$(rustc --version | awk '{print $2}')"
version_at_least "${rust_have%%-*}" "$rust_wanted" ||
  prereq_fail "rustc $rust_have is older than the crate's rust-version $rust_wanted: run \`rustup update\`"
command -v python3 >/dev/null 2>&1 || prereq_fail "Python >= 3.10 (python3) is needed"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
  prereq_fail "Python >= 3.10 is needed; python3 is $(python3 -c 'import platform; print(platform.python_version())')"
if [ ! -x "$WORK/venv/bin/python" ] && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  prereq_fail "python3 cannot make a venv: install python3-venv (Debian: apt-get install python3-venv)"
fi

# command → Debian package providing it; only what is missing gets installed. nginx (the
# TLS-terminating proxy of tests/python/test_nginx.py) is in /usr/sbin, often not on PATH.
need=()
for pair in openssl:openssl node:nodejs npm:npm valgrind:valgrind curl:curl pkg-config:pkg-config \
            memcached:memcached redis-server:redis-server redis-cli:redis-tools gcc:gcc nginx:nginx; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "== apt-get install ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi
node_have="$(node --version 2>/dev/null | sed 's/^v//')"
version_at_least "${node_have:-0}" 20 ||
  prereq_fail "Node.js >= 20 is needed by the test authorization server (tests/as); node is ${node_have:-missing} (older Debian releases ship 18: install Node 20+ from nodejs.org or NodeSource)"

VENV="$WORK/venv"
if [ ! -x "$VENV/bin/python" ]; then
  echo "== python venv in $VENV"
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --disable-pip-version-check -r "$ROOT/tests/requirements.txt"

# The release build is the longest step (minutes on a small machine): its output goes to a
# log, and a status line shows cargo's progress (crates built of the total).
# TOKENWARD_FEATURES (e.g. `bench`, set by scripts/bench-scale.sh) adds cargo features of
# bindings/python to this build; the next plain run builds the wheel without them again.
build_log="$WORK/logs/wheel-build.log"
wheels="$WORK/wheels"
echo "== building tokenward (maturin, release${TOKENWARD_FEATURES:+, features $TOKENWARD_FEATURES}; log: ${build_log#"$ROOT"/})"
rm -rf "$wheels"
start=$SECONDS
(cd "$ROOT" && CARGO_TERM_PROGRESS_WHEN=always CARGO_TERM_PROGRESS_WIDTH=100 \
  maturin build --release -i "$VENV/bin/python" -o "$wheels" \
    ${TOKENWARD_FEATURES:+--features "$TOKENWARD_FEATURES"}) >"$build_log" 2>&1 &
build_pid=$!
last_shown=-1
while kill -0 "$build_pid" 2>/dev/null; do
  sleep 2
  elapsed=$((SECONDS - start))
  # cargo's progress bar ("Building [===>   ] 87/150: serde_json"), last state in the log.
  progress="$(tr '\r' '\n' <"$build_log" | sed -n 's/.*Building \[[^]]*\] \([0-9]*\/[0-9]*\).*/\1/p' | tail -n1)"
  status="   ${progress:+$progress crates, }$((elapsed / 60))m$(printf %02d $((elapsed % 60)))s"
  if [ -t 1 ]; then
    printf '\r%s   ' "$status"
  elif [ $((elapsed / 30)) -ne "$last_shown" ]; then # no terminal: a line every 30 s
    last_shown=$((elapsed / 30))
    echo "$status"
  fi
done
[ -t 1 ] && printf '\r%60s\r' ''
if ! wait "$build_pid"; then
  echo "error: the build failed after $((SECONDS - start)) s; the end of $build_log:" >&2
  tr '\r' '\n' <"$build_log" | grep -v 'Building \[' | tail -n 40 >&2
  return 1 2>/dev/null || exit 1
fi
echo "   built in $((SECONDS - start)) s"
python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheels"/tokenward-*.whl

if [ ! -d "$ROOT/tests/as/node_modules/oidc-provider" ]; then
  echo "== npm ci (test authorization server)"
  npm ci --prefix "$ROOT/tests/as" --no-audit --no-fund --loglevel=error
fi
