#!/usr/bin/env bash
# Componentizes a Python wasi:http handler with componentize-py:
#   componentize.sh OUT.wasm APP_DIR [MODULE]     (MODULE defaults to `app`)
# The module defines `class IncomingHandler(exports.IncomingHandler)`. The wasi 0.2.12 WIT packages come from
# the jco npm package that scripts/setup.sh installs for the JavaScript template.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "$1")
app=$(realpath "$2")
module=${3:-app}
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
cd "$app"
"$py" -d "$wit" -w handler componentize -p "$app" "$module" -o "$out"
