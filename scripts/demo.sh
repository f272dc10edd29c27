#!/usr/bin/env bash
# The main demo, offline: our mailbox server and transit relay on loopback, two peers meeting with
# a one-time code, a local TCP service forwarded from one to the other and data pushed through it.
# Arguments go to the example (e.g. --relay-only, --megabytes N).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --release --example local_forward -- "$@"
