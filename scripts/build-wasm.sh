#!/usr/bin/env bash
# Builds the runtime for the browser and for Node:
#   target/wasm-node/   wasm-bindgen --target nodejs (tests)
#   www/pkg/            wasm-bindgen --target web (the page and the widget)
# and prints the .wasm sizes. Needs: rustup target wasm32-unknown-unknown, wasm-bindgen-cli
# at the same version as the wasm-bindgen crate (scripts/setup.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p bedside-runtime --target wasm32-unknown-unknown --profile wasm
raw=target/wasm32-unknown-unknown/wasm/bedside_runtime.wasm
wasm-bindgen --target nodejs --out-dir target/wasm-node "$raw"
wasm-bindgen --target web --out-dir www/pkg "$raw"

# wasm-opt (npm binaryen) shrinks the browser build when it is installed.
opt=node_modules/.bin/wasm-opt
if [ -x "$opt" ]; then
  "$opt" -O3 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
    www/pkg/bedside_runtime_bg.wasm -o www/pkg/bedside_runtime_bg.opt.wasm
  mv www/pkg/bedside_runtime_bg.opt.wasm www/pkg/bedside_runtime_bg.wasm
fi
size() { stat -c %s "$1"; }
printf 'wasm size: raw %s bytes; web build %s bytes (gzip %s)%s\n' \
  "$(size "$raw")" "$(size www/pkg/bedside_runtime_bg.wasm)" \
  "$(gzip -9c www/pkg/bedside_runtime_bg.wasm | wc -c)" \
  "$([ -x "$opt" ] && echo ', after wasm-opt -O3' || echo ', wasm-opt not installed')"
