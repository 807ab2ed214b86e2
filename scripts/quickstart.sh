#!/usr/bin/env bash
# The main job on the embedded default: the real all-MiniLM-L6-v2 checkpoint → a q8_0
# bundle → its manifest → semantic similarity of a clinical abbreviation to real ICD-10-CM
# code descriptions (public domain) → a note classifier on the sample notes → the web page
# serving it on 127.0.0.1 (BEDSIDE_NO_SERVE=1 stops before serving), all on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p bedside
bin=target/release/bedside
model=$(bash models/minilm.sh)
bundle=target/quickstart/minilm-q8_0.gguf
mkdir -p target/quickstart
$bin export --model "$model" --quant q8_0 --out "$bundle" --base-model sentence-transformers/all-MiniLM-L6-v2
$bin inspect "$bundle" | grep -E '"(task|quantization|pooling|normalize|max_seq_len|base_model|checksum|size_bytes)"'
query="T2DM with CKD stage 3"
echo "similarity of \"$query\" to ICD-10-CM descriptions:"
for description in \
  "Type 2 diabetes mellitus with diabetic chronic kidney disease" \
  "Chronic kidney disease, stage 3 unspecified" \
  "Essential (primary) hypertension" \
  "Acute myocardial infarction, unspecified" \
  "Fracture of unspecified part of neck of right femur"; do
  printf '  %s  %s\n' "$($bin similarity --model "$bundle" "$query" "$description")" "$description"
done

# A note classifier on the sample notes (frozen MiniLM + logistic regression: seconds),
# then the web page on it: paste a note, get a label, a confidence and the passage.
notes=target/quickstart/notes-classifier-q8_0.gguf
$bin train probe --base "$model" --train tests/browser/fixtures/train.csv --out target/quickstart/probe \
  --val-ratio 0.2 --test-ratio 0 --min-confidence 0.6 --probe-c 100 >/dev/null
$bin export --model target/quickstart/probe --quant q8_0 --out "$notes"
bash scripts/build-wasm.sh
if [ "${BEDSIDE_NO_SERVE:-0}" = 1 ]; then
  echo "bundles: $bundle, $notes (serve them with: $bin serve --model $notes)"
  exit 0
fi
echo "open the printed address; Ctrl-C stops the server"
exec $bin serve --model "$notes"
