#!/usr/bin/env bash
# The main demo, offline: a local mailbox server on loopback and two Rust peers that run the whole
# wormhole key exchange and trade messages. (The embedded Rust server replaces the Python one later.)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/python-env.sh
exec cargo run --quiet --release --example key_exchange -- "$@"
