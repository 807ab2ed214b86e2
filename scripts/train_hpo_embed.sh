#!/usr/bin/env bash
# The README's embedding numbers, reproduced: the real all-MiniLM-L6-v2 fine-tuned with
# `bedside train embed` (MNRL, in-batch negatives) on Human Phenotype Ontology term ↔ definition
# pairs, then scored against the base model on held-out terms with `bedside eval embed`
# (Spearman on pairs; MRR@10, nDCG@10, Recall@k on synonym → definition retrieval).
# CPU, about 15 minutes on 2 cores. Usage: bash scripts/train_hpo_embed.sh [TRAIN_PAIRS] [EPOCHS] [pairs|mined]
#   pairs: the given (name or synonym, definition) pairs, in-batch negatives only.
#   mined: the same terms as labelled rows (text, term id): `--pairs-from term` makes the
#          pairs itself, with one hard negative per anchor mined with the base model.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
epochs=${2:-1}
mode=${3:-pairs}
cargo build --release -p bedside
bin=target/release/bedside
model=$(bash models/minilm.sh)
data=target/data/hpo
[ -f "$data/pairs_test.csv" ] || python3 scripts/data/hpo_pairs.py "$data"
# A seeded sample keeps CPU training short: N positive training pairs, 1,000 validation pairs.
python3 - "$data" "$n" <<'PY'
import csv, random, sys
data, n = sys.argv[1], int(sys.argv[2])
def sample(src, dst, keep, k):
    rows = list(csv.DictReader(open(f"{data}/{src}", encoding="utf-8")))
    rows = [r for r in rows if keep(r)]
    random.Random(42).shuffle(rows)
    with open(f"{data}/{dst}", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=rows[0].keys())
        w.writeheader()
        w.writerows(rows[:k])
sample("pairs_train.csv", "pairs_train_sample.csv", lambda r: r["label"] == "1", n)
sample("pairs_val.csv", "pairs_val_sample.csv", lambda r: True, 1000)
# The sampled pairs' texts as labelled rows: each text under its HPO term id.
rows = list(csv.DictReader(open(f"{data}/pairs_train_sample.csv", encoding="utf-8")))
with open(f"{data}/terms_train_sample.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["text", "term"])
    seen = set()
    for r in rows:
        term = r["id"].split("#")[0]
        for text in (r["text1"], r["text2"]):
            if (text, term) not in seen:
                seen.add((text, term))
                w.writerow([text, term])
PY
case "$mode" in
  pairs)
    runs=target/runs/hpo-embed
    train=(--train "$data/pairs_train_sample.csv") ;;
  mined)
    runs=target/runs/hpo-embed-mined
    train=(--train "$data/terms_train_sample.csv" --pairs-from term --hard-negatives 1) ;;
  *) echo "mode must be pairs or mined" >&2; exit 2 ;;
esac
$bin train embed --base "$model" "${train[@]}" --val "$data/pairs_val_sample.csv" \
    --out "$runs" --loss mnrl --epochs "$epochs" --batch-size 32 --lr 2e-5 --max-seq-len 128
$bin eval embed --model "$runs" --base "$model" --pairs "$data/pairs_test.csv" \
    --queries "$data/queries_test.jsonl" --corpus "$data/corpus_test.jsonl" --qrels "$data/qrels_test.tsv" \
    --out "$runs/eval-test"
