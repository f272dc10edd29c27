#!/usr/bin/env bash
# Runs every test of the project.
#
# 1. Installs the pinned Python reference stack (tests/python/requirements.txt, with pproxy, a
#    SOCKS5 server) into the git-ignored virtualenv .venv, reused while the pin list is
#    unchanged; tmux and strace from Debian's packages if they are missing.
# 2. Checks formatting (rustfmt), lints (clippy) and the API docs (rustdoc), warnings being errors,
#    then builds everything
#    (this and step 1 need the package registries). Doc examples run with the tests.
# 3. Runs the tests. As root with iproute2 (as on CI) they run inside a fresh network namespace
#    whose only interface is loopback, so no test can dial a non-loopback address; elsewhere they
#    run directly, with a warning.
#
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/python-env.sh

# Terminal and privacy tests drive tmux and strace (both on the project's machines); a machine
# without them gets them from Debian's packages when we may install.
missing=""
for tool in tmux strace; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing$missing"
  apt-get update -qq && apt-get install -y -qq $missing
fi

echo "== building (formatting and lints first)"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps
cargo build --locked --all-targets
cargo test --locked --no-run

echo "== testing"
run_tests() {
  local status=0
  cargo test --locked --offline --no-fail-fast "$@" || status=$?
  echo "== the demo (README main command, debug build, direct then relay-only)"
  local demo="${CARGO_TARGET_DIR:-target}/debug/examples/local_forward"
  "$demo" --megabytes 64 || status=$?
  "$demo" --megabytes 64 --relay-only || status=$?
  return "$status"
}
export -f run_tests
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null 2>&1; then
  ns="fowl-test-$$-$RANDOM"
  ns2="fowl-demo-$$-$RANDOM"
  ip netns add "$ns"
  trap 'ip netns del "$ns" 2>/dev/null || true; ip netns del "$ns2" 2>/dev/null || true' EXIT
  ip -n "$ns" link set lo up
  echo "   (inside the loopback-only network namespace $ns)"
  status=0
  ip netns exec "$ns" bash -c 'run_tests "$@"' run_tests "$@" || status=$?
  # The demo must stay on loopback where other interfaces exist: a namespace of our own with a
  # veth pair addressed from 198.18.0.0/15 (routed nowhere), the demo's debug log checked for it.
  echo "== the demo beside a non-loopback interface (198.18.0.1): it advertises and dials only loopback"
  ip netns add "$ns2"
  ip -n "$ns2" link set lo up
  ip -n "$ns2" link add fowl0 type veth peer name fowl1
  ip -n "$ns2" addr add 198.18.0.1/24 dev fowl0
  ip -n "$ns2" link set fowl0 up
  ip -n "$ns2" link set fowl1 up
  demo_log="$(mktemp)"
  if RUST_LOG=fowl=debug ip netns exec "$ns2" "${CARGO_TARGET_DIR:-target}/debug/examples/local_forward" \
      --megabytes 8 >"$demo_log" 2>&1 &&
    grep -q "advertising direct hints" "$demo_log" && ! grep -q "198\.18\." "$demo_log"; then
    echo "   stayed on loopback: $(grep -c 'advertising direct hints' "$demo_log") hint lists advertised, no 198.18 address in its log"
  else
    cat "$demo_log"
    echo "error: the demo failed or used the non-loopback interface" >&2
    status=1
  fi
  rm -f "$demo_log"
  exit "$status"
else
  echo "warning: not root or no 'ip': running tests without a loopback-only network namespace" >&2
  run_tests "$@"
fi
