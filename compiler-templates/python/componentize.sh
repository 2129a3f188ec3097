#!/usr/bin/env bash
# Componentizes a Python wasi:http handler with componentize-py:
#   componentize.sh OUT.wasm MODULE DIR [DIR...]
# MODULE (found in the DIRs, the first of which is the working folder) defines
# `class IncomingHandler(exports.IncomingHandler)`. The world is wasi:http/proxy@0.2.12, whose WIT packages come
# from the jco npm package that the JavaScript template installs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 3 ] || { echo "usage: componentize.sh OUT.wasm MODULE DIR [DIR...]" >&2; exit 2; }
out=$(realpath -m "$1")
module=$2
shift 2
paths=()
for d in "$@"; do paths+=(-p "$(realpath "$d")"); done
builtin="$here/../js/node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12"
[ -d "$builtin" ] || { echo "componentize.sh: $builtin is missing: run scripts/setup.sh" >&2; exit 1; }
py="$here/.venv/bin/componentize-py"
command -v "$py" >/dev/null 2>&1 || py=componentize-py
wit=$(mktemp -d)
trap 'rm -rf "$wit"' EXIT
for pkg in "$builtin"/*/; do
  mkdir -p "$wit/deps/$(basename "$pkg")"
  cp "$pkg/package.wit" "$wit/deps/$(basename "$pkg")/"
done
printf 'package wasmfn:guest;\n\nworld handler {\n  include wasi:http/proxy@0.2.12;\n}\n' > "$wit/world.wit"
cd "$1"
"$py" -d "$wit" -w handler componentize "${paths[@]}" "$module" -o "$out"
