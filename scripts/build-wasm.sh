#!/usr/bin/env bash
# Builds the runtime for the browser and for Node, in two flavours:
#   simd128         every browser with WebAssembly SIMD (Chrome 91, Firefox 89, Safari 16.4), Node >= 16.4
#   relaxed-simd    + relaxed SIMD (Chrome/Edge 114): q8_0/q4_0 matmuls on
#                   `i32x4.relaxed_dot_i8x16_i7x16_add_s` (model/packed/quads.rs)
# Outputs:
#   target/wasm-node/, target/wasm-node-relaxed/   wasm-bindgen --target nodejs (tests)
#   www/pkg/                                       wasm-bindgen --target web (the page and the widget):
#       bedside_runtime.js (one glue for both), bedside_runtime_bg.wasm (simd128),
#       bedside_runtime_relaxed_bg.wasm (relaxed-simd); www/widget/wasm-build.js picks one.
# and prints the .wasm sizes. Needs: rustup target wasm32-unknown-unknown, wasm-bindgen-cli
# at the same version as the wasm-bindgen crate (scripts/setup.sh installs both).
# BEDSIDE_WASM_SIMD=0 builds the first flavour without SIMD (to measure the difference).
# WASM_OPT: a wasm-opt binary (default tests/browser/node_modules/.bin/wasm-opt: npm binaryen,
# pinned in tests/browser/package.json, installed by scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

simd=-C\ target-feature=+simd128
[ "${BEDSIDE_WASM_SIMD:-1}" = 0 ] && simd=
# The relaxed build has its own target directory: a change of target features rebuilds every crate.
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="$simd" \
  cargo build -p bedside-runtime --target wasm32-unknown-unknown --profile wasm
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
  cargo build -p bedside-runtime --target wasm32-unknown-unknown --profile wasm --target-dir target/relaxed
raw=target/wasm32-unknown-unknown/wasm/bedside_runtime.wasm
raw_relaxed=target/relaxed/wasm32-unknown-unknown/wasm/bedside_runtime.wasm
wasm-bindgen --target nodejs --out-dir target/wasm-node "$raw"
wasm-bindgen --target nodejs --out-dir target/wasm-node-relaxed "$raw_relaxed"
wasm-bindgen --target web --out-dir www/pkg "$raw"
web_relaxed=target/relaxed/web
wasm-bindgen --target web --out-dir "$web_relaxed" "$raw_relaxed"
# One glue serves both .wasm files only if the two builds import and export the same things.
cmp -s www/pkg/bedside_runtime.js "$web_relaxed/bedside_runtime.js" ||
  { echo "build-wasm: the simd128 and relaxed-simd builds need different JS glue" >&2; exit 1; }
cp "$web_relaxed/bedside_runtime_bg.wasm" www/pkg/bedside_runtime_relaxed_bg.wasm

# wasm-opt (npm binaryen) shrinks the browser builds when it is installed.
opt=${WASM_OPT:-tests/browser/node_modules/.bin/wasm-opt}
if [ -x "$opt" ]; then
  features=(--enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals)
  for f in bedside_runtime_bg bedside_runtime_relaxed_bg; do
    "$opt" -O3 "${features[@]}" --enable-relaxed-simd www/pkg/$f.wasm -o www/pkg/$f.opt.wasm
    mv www/pkg/$f.opt.wasm www/pkg/$f.wasm
  done
fi
size() { stat -c %s "$1"; }
for f in bedside_runtime_bg bedside_runtime_relaxed_bg; do
  printf 'wasm size %s: raw %s bytes; web build %s bytes (gzip %s)%s\n' "$f" \
    "$(size "$([ $f = bedside_runtime_bg ] && echo "$raw" || echo "$raw_relaxed")")" "$(size www/pkg/$f.wasm)" \
    "$(gzip -9c www/pkg/$f.wasm | wc -c)" \
    "$([ -x "$opt" ] && echo ', after wasm-opt -O3' || echo ', wasm-opt not installed')"
done
