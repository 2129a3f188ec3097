#!/usr/bin/env bash
# The main job: set up, build the examples, and serve them on http://127.0.0.1:8080 with `wasmfn up`.
# Extra arguments go to `wasmfn up` (e.g. --listen 127.0.0.1:9000 --data-dir /tmp/wasmfn).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-examples.sh
cargo build --release -p wasmfn-cli
exec "${CARGO_TARGET_DIR:-target}/release/wasmfn" up examples "$@"
