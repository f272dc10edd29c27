#!/usr/bin/env bash
# Benchmarks (not tests): builds in release and runs them in a loopback-only network namespace
# (Dilation peers dial every interface address they advertise). Needs root and iproute2.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/python-env.sh
cargo build --release --locked --examples
ns="fowl-bench-$$"
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip -n "$ns" link set lo up
ip netns exec "$ns" target/release/examples/bench_dilation "$@"
