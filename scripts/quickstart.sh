#!/usr/bin/env bash
# The main job on the embedded default: the real all-MiniLM-L6-v2 checkpoint → a q8_0
# bundle → its manifest → embeddings of real ICD-10-CM descriptions, all on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p bedside
bin=target/release/bedside
model=$(bash models/minilm.sh)
mkdir -p target/quickstart
$bin export --model "$model" --quant q8_0 --out target/quickstart/minilm-q8_0.gguf
$bin inspect target/quickstart/minilm-q8_0.gguf | head -n 12
$bin embed --model target/quickstart/minilm-q8_0.gguf \
  "Type 2 diabetes mellitus with diabetic chronic kidney disease" \
  "Essential (primary) hypertension" \
  "Acute myocardial infarction, unspecified"
echo "bundle: target/quickstart/minilm-q8_0.gguf"
