#!/usr/bin/env bash
# Bedside beside its peers on real data anyone can rerun (issue P11): the frozen-encoder probe
# against scikit-learn on the same features and C, and fine-tuning against PyTorch +
# transformers with Bedside's recipe (same splits, batch size, schedule, class weights, max
# length), several seeds each; then one table (scripts/compare/summarize.py).
#
#   bash scripts/compare/run.sh [SETS] [SEEDS]          # default: icd10,hpo  1,2,3
#
# SETS: icd10 (ICD-10-CM description → chapter, 21 classes; scripts/data/icd10_chapters.py)
#       hpo   (HPO definition → organ system, 20 classes; scripts/data/hpo_organ_systems.py)
# Environment (defaults in brackets):
#   PYTHON     a Python with torch, transformers, scikit-learn   [python3]
#   PER_CLASS  training rows per class cap (val/test get a quarter) [60]
#   EPOCHS [3]  LR [1e-4]  BATCH [16]  MAX_LEN [64]  WARMUP [0.1]  CLASS_WEIGHTS [balanced]
#   PROBE_C    C of both probes                                   [1.0]
#   FEATURES   probe features compared                            [cls,mean,pooler]
#   THREADS    threads for each side (RAYON_NUM_THREADS / torch)  [2]
#   SKIP_FINETUNE=1  probes only
#   RANDOM_ORDER=0   skip Bedside's second fine-tuning run per seed with --no-group-by-length
#                    (random batches, as PyTorch's side draws them)  [1]
# Needs: the release CLI (built here), MiniLM (scripts/setup.sh). Results: target/compare/<set>/,
# the table in target/compare/table.md and table.json. On 2 cores, the default run takes about
# an hour, most of it fine-tuning.
set -euo pipefail
cd "$(dirname "$0")/../.."

sets=${1:-icd10,hpo}
seeds=${2:-1,2,3}
PYTHON=${PYTHON:-python3}
PER_CLASS=${PER_CLASS:-60}
EPOCHS=${EPOCHS:-3}
LR=${LR:-1e-4}
BATCH=${BATCH:-16}
MAX_LEN=${MAX_LEN:-64}
WARMUP=${WARMUP:-0.1}
CLASS_WEIGHTS=${CLASS_WEIGHTS:-balanced}
PROBE_C=${PROBE_C:-1.0}
FEATURES=${FEATURES:-cls,mean,pooler}
THREADS=${THREADS:-2}
export RAYON_NUM_THREADS=$THREADS

cargo build --release -q -p bedside
bin=target/release/bedside
model=$(bash models/minilm.sh)
root=target/compare

for set in ${sets//,/ }; do
    data=target/data/compare/$set-$PER_CLASS
    case $set in
        icd10) [ -f "$data/test.csv" ] || python3 scripts/data/icd10_chapters.py "$data" --per-class "$PER_CLASS" ;;
        hpo) [ -f "$data/test.csv" ] || python3 scripts/data/hpo_organ_systems.py "$data" --per-class "$PER_CLASS" ;;
        *) echo "unknown set $set: use icd10 or hpo" >&2; exit 2 ;;
    esac
    out=$root/$set
    mkdir -p "$out"
    common=(--base "$model" --train "$data/train.csv" --val "$data/val.csv" --test "$data/test.csv"
            --text-col text --label-col label --id-col id --max-seq-len "$MAX_LEN")

    # Probes: fit, export an f32 bundle, and let the bundle classify the test split.
    for f in ${FEATURES//,/ }; do
        rm -rf "$out/bedside-probe-$f"
        $bin train probe "${common[@]}" --features "$f" --probe-c "$PROBE_C" --out "$out/bedside-probe-$f" >/dev/null
        $bin export --model "$out/bedside-probe-$f" --quant f32 --out "$out/probe-$f.gguf" 2>/dev/null
        $bin classify --backend cpu --model "$out/probe-$f.gguf" --input "$data/test.csv" --text-col text --id-col id --json \
            > "$out/probe-$f-predictions.jsonl"
    done
    # Fine-tuning, one run per seed (the baseline probe off: it is measured above).
    if [ "${SKIP_FINETUNE:-0}" != 1 ]; then
        rm -rf "$out"/bedside-finetune-* "$out"/bedside-random-*
        orders=(finetune); if [ "${RANDOM_ORDER:-1}" = 1 ]; then orders+=(random); fi
        for seed in ${seeds//,/ }; do
            for order in "${orders[@]}"; do
                flags=(); if [ "$order" = random ]; then flags=(--no-group-by-length); fi
                # Peak RSS (KiB) of the whole run, from GNU time.
                /usr/bin/time -f %M -o "$out/bedside-$order-$seed.rss" \
                    $bin train classify "${common[@]}" --epochs "$EPOCHS" --lr "$LR" --batch-size "$BATCH" \
                    --warmup-ratio "$WARMUP" --class-weights "$CLASS_WEIGHTS" --seed "$seed" --no-baseline-probe \
                    "${flags[@]}" --out "$out/bedside-$order-$seed" >/dev/null
            done
        done
    fi

    skip=(); if [ "${SKIP_FINETUNE:-0}" = 1 ]; then skip=(--skip-finetune); fi
    $PYTHON scripts/compare/reference.py --data "$data" --model "$model" --out "$out" --seeds "$seeds" \
        --epochs "$EPOCHS" --lr "$LR" --batch-size "$BATCH" --max-seq-len "$MAX_LEN" --warmup-ratio "$WARMUP" \
        --class-weights "$CLASS_WEIGHTS" --features "$FEATURES" --c "$PROBE_C" --threads "$THREADS" "${skip[@]}"

    # Bedside's side of the table: report.json of each run, agreement of each probe bundle
    # with scikit-learn's predictions on the same test rows.
    python3 - "$out" "$FEATURES" <<'PY'
import csv, glob, json, os, sys
out, features = sys.argv[1], sys.argv[2].split(",")
lines = []
for f in features:
    report = json.load(open(f"{out}/bedside-probe-{f}/report.json"))
    bundle = {r["id"]: r["label"] for r in map(json.loads, open(f"{out}/probe-{f}-predictions.jsonl"))}
    agreement = None
    sk = f"{out}/sklearn_probe_{f}_predictions.csv"
    if os.path.exists(sk):
        rows = list(csv.DictReader(open(sk, encoding="utf-8")))
        agreement = sum(bundle.get(r["id"]) == r["label"] for r in rows) / len(rows)
    lines.append({"kind": "probe", "features": f, "c": report["probe"]["c"], "macro_f1": report["macro_f1"],
                  "roc_auc_macro": report["roc_auc_macro"], "accuracy": report["accuracy"],
                  "agreement_bundle_vs_sklearn": agreement})
runs = sorted(glob.glob(f"{out}/bedside-finetune-*")) + sorted(glob.glob(f"{out}/bedside-random-*"))
for run in [r for r in runs if os.path.isdir(r)]:
    report = json.load(open(f"{run}/report.json"))
    log = [json.loads(l) for l in open(f"{run}/log.jsonl")]
    # Each step line carries its epoch's samples/s so far (training only); the run's rate is
    # the harmonic mean of each epoch's last line (epochs hold the same notes): all samples
    # over all training time, as PyTorch's side counts it.
    last_of_epoch = {}
    for e in log:
        if e.get("type") == "step":
            last_of_epoch[e["epoch"]] = e.get("samples_per_second")
    rates = [r for r in last_of_epoch.values() if r is not None]
    batches = [e for e in log if e.get("type") == "batches"]
    rss = f"{run}.rss"
    lines.append({"kind": "finetune" if "/bedside-finetune-" in run else "finetune_random_order",
                  "seed": int(run.rsplit("-", 1)[1]), "macro_f1": report["macro_f1"],
                  "roc_auc_macro": report["roc_auc_macro"], "accuracy": report["accuracy"],
                  "best_epoch": report.get("best_epoch"),
                  "samples_per_s": len(rates) / sum(1 / r for r in rates) if rates and all(rates) else None,
                  "padded_tokens": sum(b["padded_tokens"] for b in batches) if batches else None,
                  "padded_tokens_random_order": sum(b["padded_tokens_random_order"] for b in batches) if batches else None,
                  "peak_rss_mb": int(open(rss).read().split()[-1]) / 1024 if os.path.exists(rss) else None})
with open(f"{out}/bedside.jsonl", "w") as f:
    f.writelines(json.dumps(l) + "\n" for l in lines)
PY
done
python3 scripts/compare/summarize.py "$root" --markdown "$root/table.md" --json "$root/table.json"
