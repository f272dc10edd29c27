#!/usr/bin/env bash
# Benchmarks (not tests): builds in release and runs them in a loopback-only network namespace
# (Dilation peers dial every interface address they advertise). Needs root and iproute2.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/python-env.sh
cargo build --release --locked --examples --bins
ns="fowl-bench-$$"
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip -n "$ns" link set lo up
# which benchmark: bench_dilation (default), bench_fowld, bench_relay; the rest are its arguments
bench="${1:-bench_dilation}"
[ $# -gt 0 ] && shift
ip netns exec "$ns" env FOWL_VENV="$FOWL_VENV" "target/release/examples/$bench" "$@"
