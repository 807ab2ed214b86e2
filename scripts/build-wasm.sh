#!/usr/bin/env bash
# Builds the runtime for the browser and for Node:
#   target/wasm-node/   wasm-bindgen --target nodejs (tests)
#   www/pkg/            wasm-bindgen --target web (the page and the widget)
# and prints the .wasm sizes. Needs: rustup target wasm32-unknown-unknown, wasm-bindgen-cli
# at the same version as the wasm-bindgen crate (scripts/setup.sh installs both).
# wasm SIMD (simd128) is on: every browser with WebAssembly SIMD (Chrome 91, Firefox 89, Safari 16.4)
# and Node >= 16.4 run it; BEDSIDE_WASM_SIMD=0 builds without it (to measure the difference).
# WASM_OPT: a wasm-opt binary (default node_modules/.bin/wasm-opt, from `npm install binaryen`).
set -euo pipefail
cd "$(dirname "$0")/.."

simd=()
[ "${BEDSIDE_WASM_SIMD:-1}" = 0 ] || simd=(-C target-feature=+simd128)
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${simd[*]}" \
  cargo build -p bedside-runtime --target wasm32-unknown-unknown --profile wasm
raw=target/wasm32-unknown-unknown/wasm/bedside_runtime.wasm
wasm-bindgen --target nodejs --out-dir target/wasm-node "$raw"
wasm-bindgen --target web --out-dir www/pkg "$raw"

# wasm-opt (npm binaryen) shrinks the browser build when it is installed.
opt=${WASM_OPT:-node_modules/.bin/wasm-opt}
if [ -x "$opt" ]; then
  "$opt" -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
    www/pkg/bedside_runtime_bg.wasm -o www/pkg/bedside_runtime_bg.opt.wasm
  mv www/pkg/bedside_runtime_bg.opt.wasm www/pkg/bedside_runtime_bg.wasm
fi
size() { stat -c %s "$1"; }
printf 'wasm size: raw %s bytes; web build %s bytes (gzip %s)%s\n' \
  "$(size "$raw")" "$(size www/pkg/bedside_runtime_bg.wasm)" \
  "$(gzip -9c www/pkg/bedside_runtime_bg.wasm | wc -c)" \
  "$([ -x "$opt" ] && echo ', after wasm-opt -O3' || echo ', wasm-opt not installed')"
