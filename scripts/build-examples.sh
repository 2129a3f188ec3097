#!/usr/bin/env bash
# Builds every example under examples/ into examples/<name>/hello.wasm:
#   - a Cargo crate (cdylib) for wasm32-wasip2: rustup's target when installed, else Debian's toolchain
#     with -Zbuild-std (see scripts/setup.sh);
#   - a handler.js with componentize-js.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target="${CARGO_TARGET_DIR:-$root/target}/wasm-examples"

build_rust() {
  local dir=$1
  if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    (cd "$dir" && cargo build --release --target wasm32-wasip2 --target-dir "$target")
  else
    (cd "$dir" && env -u RUSTFLAGS RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
      CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS="-Clink-self-contained=no -L/usr/lib/wasm32-wasi" \
      /usr/bin/cargo build --release -Zbuild-std=std,panic_abort --target wasm32-wasip2 --target-dir "$target")
  fi
  local crate
  crate=$(sed -n 's/^name = "\(.*\)"/\1/p' "$dir/Cargo.toml" | head -1 | tr - _)
  cp "$target/wasm32-wasip2/release/$crate.wasm" "$dir/hello.wasm"
}

for dir in examples/*/; do
  dir=${dir%/}
  start=$(date +%s)
  if [ -f "$dir/Cargo.toml" ]; then
    echo "build: $dir (Rust -> wasm32-wasip2)"
    build_rust "$dir"
  elif [ -f "$dir/handler.js" ]; then
    echo "build: $dir (JavaScript -> componentize-js)"
    node compiler-templates/js/componentize.mjs "$dir/hello.wasm" "$dir/handler.js"
  else
    continue
  fi
  echo "build: $dir/hello.wasm $(stat -c %s "$dir/hello.wasm") bytes in $(( $(date +%s) - start ))s"
done
