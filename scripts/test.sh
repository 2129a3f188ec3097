#!/usr/bin/env bash
# The test command: set up, then formatting, lints and every test (unit, doc and end-to-end; the
# end-to-end tests compile real components with the real toolchains and run real `wasmfn` processes).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
# The node and CLI modules depend downward only (ARCHITECTURE.md): no import cycle, no file over ~400 lines.
for crate in runtime/node/src runtime/cli/src; do python3 scripts/check-module-cycles.py "$crate"; done
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# deploy/: the CRD is current (a test above), every manifest renders and validates offline.
INSTALL=1 scripts/check-manifests.sh
