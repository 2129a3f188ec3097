#!/usr/bin/env bash
# Benchmarks wasmfn against `wasmtime serve` (wasmtime-cli 48.0.8) on this machine, in one run.
# Usage: bench/run.sh [--quick] [--only throughput|cold|density|deploys|revisions|events|reuse|shim]   (results are printed and written to bench/results.json)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p wasmfn-cli -p containerd-shim-wasmfn -p wasmfn-bench-native
wasmfn="${CARGO_TARGET_DIR:-target}/release/wasmfn"
shim="${CARGO_TARGET_DIR:-target}/release/containerd-shim-wasmfn-v1"
native="${CARGO_TARGET_DIR:-target}/release/native-hello"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$wasmfn" build examples/hello-rust -o "$out/hello-rust.wasm" >/dev/null
"$wasmfn" build examples/hello-js -o "$out/hello-js.wasm" >/dev/null
"$wasmfn" build examples/hello-py -o "$out/hello-py.wasm" >/dev/null
tools="${WASMFN_BENCH_TOOLS:-$HOME/.cache/wasmfn-bench}"
if [ ! -x "$tools/bin/wasmtime" ] || ! "$tools/bin/wasmtime" --version | grep -q "48.0.8"; then
  echo "bench: installing wasmtime-cli 48.0.8 into $tools (about 15 minutes on 2 cores)"
  cargo install --locked wasmtime-cli@48.0.8 --root "$tools"
fi
python3 bench/bench.py \
  --wasmfn "$wasmfn" \
  --wasmtime "$tools/bin/wasmtime" \
  --component "$out/hello-rust.wasm" \
  --js-component "$out/hello-js.wasm" \
  --py-component "$out/hello-py.wasm" \
  --shim "$shim" \
  --native "$native" \
  "$@"
