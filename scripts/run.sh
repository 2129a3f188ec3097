#!/usr/bin/env bash
# The main job: set up, then `wasmfn up examples`, which builds every example from source with its compiler
# template (cached by a hash of the sources) and serves them on http://127.0.0.1:8080.
# Extra arguments go to `wasmfn up` (e.g. --listen 127.0.0.1:9000 --data-dir /tmp/wasmfn).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p wasmfn-cli
# fetch-rust calls other functions on this node, i.e. loopback, which egress refuses by default.
exec "${CARGO_TARGET_DIR:-target}/release/wasmfn" up examples --allow-loopback-egress "$@"
