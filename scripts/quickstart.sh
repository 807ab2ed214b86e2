#!/usr/bin/env bash
# The main job on the embedded default: the real all-MiniLM-L6-v2 checkpoint → a q8_0
# bundle → its manifest → semantic similarity of a clinical abbreviation to real ICD-10-CM
# code descriptions (public domain), all on this machine.
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
echo "bundle: $bundle (load it in the browser with www/pkg, see www/README.md)"
