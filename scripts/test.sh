#!/usr/bin/env bash
# Runs every test of the project.
#
# 1. Installs the pinned Python reference stack (tests/python/requirements.txt) into the
#    git-ignored virtualenv .venv, reused while the pin list is unchanged.
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
  ip netns add "$ns"
  trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
  ip -n "$ns" link set lo up
  echo "   (inside the loopback-only network namespace $ns)"
  ip netns exec "$ns" bash -c 'run_tests "$@"' run_tests "$@"
else
  echo "warning: not root or no 'ip': running tests without a loopback-only network namespace" >&2
  run_tests "$@"
fi
