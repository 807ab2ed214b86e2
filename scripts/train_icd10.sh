#!/usr/bin/env bash
# The README's training numbers, reproduced: the real all-MiniLM-L6-v2 checkpoint on a real
# labelled medical text set (ICD-10-CM code descriptions → chapter, 21 classes), fine-tuned
# with `bedside train classify` and compared with the frozen-encoder probe
# (`bedside train probe`) on the same test split. CPU, about 25 minutes on 2 cores.
# Usage: bash scripts/train_icd10.sh [EPOCHS] [LR]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-2}
lr=${2:-8e-5}
cargo build --release -p bedside
bin=target/release/bedside
model=$(bash models/minilm.sh)
data=target/data/icd10
[ -f "$data/test.csv" ] || python3 scripts/data/icd10_chapters.py "$data"
runs=target/runs/icd10
mkdir -p "$runs"
common=(--base "$model" --train "$data/train.csv" --val "$data/val.csv" --test "$data/test.csv"
        --text-col text --label-col label --max-seq-len 64)
[ -f "$runs/probe/report.json" ] || $bin train probe "${common[@]}" --out "$runs/probe"
$bin train classify "${common[@]}" --out "$runs/finetune" --epochs "$epochs" --lr "$lr" --class-weights balanced
python3 - "$runs" <<'PY'
import json, sys
runs = sys.argv[1]
print(f"{'run':<10} {'accuracy':>9} {'macro-F1':>9} {'weighted-F1':>12} {'ROC-AUC':>8} {'ECE':>6}")
rows = {}
for name in ["probe", "finetune"]:
    r = json.load(open(f"{runs}/{name}/report.json"))
    rows[name] = r
    print(f"{name:<10} {r['accuracy']:>9.3f} {r['macro_f1']:>9.3f} {r['weighted_f1']:>12.3f} "
          f"{r['roc_auc_macro']:>8.3f} {r['calibration']['ece']:>6.3f}")
print(f"fine-tuning vs probe, macro-F1: {rows['finetune']['macro_f1'] / rows['probe']['macro_f1']:.2f}x")
PY
