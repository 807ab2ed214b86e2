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

# The threaded builds (www/pkg/threads/: glue, simd128 and relaxed-simd .wasm, rayon's worker
# script): rayon's pool on Web Workers over a shared memory, for cross-origin isolated pages. Wasm
# threads need std rebuilt with atomics, which only nightly does (`-Z build-std`; scripts/setup.sh
# installs rust-src). The memory is shared and imported (wasm-bindgen creates it), up to 4 GiB,
# and the TLS symbols wasm-bindgen needs to give each worker its own thread-locals are exported.
# BEDSIDE_WASM_THREADS=0 skips them (the widget then runs one thread everywhere).
if [ "${BEDSIDE_WASM_THREADS:-1}" != 0 ]; then
  link=""
  for arg in --shared-memory --import-memory --max-memory=4294967296 \
    --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base; do
    link="$link -C link-arg=$arg"
  done
  threads_out=www/pkg/threads
  rm -rf "$threads_out" target/threads/web-simd128 target/threads/web-relaxed
  for flavour in simd128 relaxed; do
    target_features=+atomics,+bulk-memory,+mutable-globals,+simd128
    [ $flavour = relaxed ] && target_features=$target_features,+relaxed-simd
    dir=target/threads/$flavour
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=$target_features$link" \
      rustup run nightly cargo build -q -p bedside-runtime --features threads --target wasm32-unknown-unknown \
      --profile wasm --target-dir "$dir" -Z build-std=panic_abort,std
    wasm-bindgen --target web --out-dir "target/threads/web-$flavour" "$dir/wasm32-unknown-unknown/wasm/bedside_runtime.wasm"
  done
  cmp -s target/threads/web-simd128/bedside_runtime.js target/threads/web-relaxed/bedside_runtime.js ||
    { echo "build-wasm: the two threaded builds need different JS glue" >&2; exit 1; }
  cp -r target/threads/web-simd128 "$threads_out"
  cp target/threads/web-relaxed/bedside_runtime_bg.wasm "$threads_out/bedside_runtime_relaxed_bg.wasm"
  # wasm-bindgen-rayon's worker script finds the glue as `import('../../..')`, the package a
  # bundler resolves; a plain page (no bundler) needs the file itself. Its own `no-bundler` mode
  # would start workers from blob: URLs, which the page's CSP refuses.
  helper=$(find "$threads_out/snippets" -name workerHelpers.js)
  grep -q "import('../../..')" "$helper" ||
    { echo "build-wasm: wasm-bindgen-rayon's worker script changed; check how it imports the glue" >&2; exit 1; }
  sed -i "s#import('../../..')#import('../../../bedside_runtime.js')#" "$helper"
  if [ -x "$opt" ]; then
    for f in bedside_runtime_bg bedside_runtime_relaxed_bg; do
      "$opt" -O3 --enable-simd --enable-relaxed-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
        --enable-sign-ext --enable-mutable-globals --enable-threads "$threads_out/$f.wasm" -o "$threads_out/$f.opt.wasm"
      mv "$threads_out/$f.opt.wasm" "$threads_out/$f.wasm"
    done
  fi
fi
size() { stat -c %s "$1"; }
for f in bedside_runtime_bg bedside_runtime_relaxed_bg; do
  printf 'wasm size %s: raw %s bytes; web build %s bytes (gzip %s)%s\n' "$f" \
    "$(size "$([ $f = bedside_runtime_bg ] && echo "$raw" || echo "$raw_relaxed")")" "$(size www/pkg/$f.wasm)" \
    "$(gzip -9c www/pkg/$f.wasm | wc -c)" \
    "$([ -x "$opt" ] && echo ', after wasm-opt -O3' || echo ', wasm-opt not installed')"
done
if [ -d www/pkg/threads ]; then
  for f in bedside_runtime_bg bedside_runtime_relaxed_bg; do
    printf 'wasm size threads/%s: web build %s bytes (gzip %s)\n' "$f" "$(size www/pkg/threads/$f.wasm)" "$(gzip -9c www/pkg/threads/$f.wasm | wc -c)"
  done
fi
