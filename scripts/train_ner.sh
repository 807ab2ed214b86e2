#!/usr/bin/env bash
# The README's token-classification numbers, reproduced: the real all-MiniLM-L6-v2 checkpoint
# fine-tuned with `bedside train ner` on
#   phi: synthetic clinical notes with PHI spans (scripts/data/synthetic_phi.py; made-up
#        names, no real patient; its test split holds out names, places and templates), and
#   hpo: silver phenotype mentions in Human Phenotype Ontology disease documents
#        (scripts/data/hpo_mentions.py; string-matched labels, not redistributable),
# each against the frozen-encoder baseline (logistic regression on the base model's token
# states) and the regex scrubber, on the same test split. Then the PHI model is exported as a
# q8_0 bundle, `bedside deid` redacts the test notes with it, and the bundle's entities are
# compared with the checkpoint's. CPU, about 52 minutes on 2 cores.
# Usage: bash scripts/train_ner.sh [EPOCHS] [LR]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-3}
lr=${2:-1e-4}
cargo build --release -p bedside
bin=target/release/bedside
model=$(bash models/minilm.sh)
phi=target/data/phi
hpo=target/data/hpo_mentions
[ -f "$phi/test.jsonl" ] || python3 scripts/data/synthetic_phi.py --out "$phi"
# 800 of the 12,615 disease documents (640 to train): enough to compare, an epoch in 4 minutes.
[ -f "$hpo/test.jsonl" ] || python3 scripts/data/hpo_mentions.py --out "$hpo" --max-docs 800
runs=target/runs/ner
mkdir -p "$runs"
for set in phi hpo; do
  data=$phi
  [ "$set" = hpo ] && data=$hpo
  [ -f "$runs/$set/report.json" ] || $bin train ner --base "$model" --train "$data/train.jsonl" --val "$data/val.jsonl" \
    --test "$data/test.jsonl" --out "$runs/$set" --epochs "$epochs" --lr "$lr" --max-seq-len 128
  $bin export --model "$runs/$set" --out "$runs/$set/model.gguf" --quant q8_0
done

# The PHI test notes as a CSV, redacted by the bundle; entities of bundle and checkpoint.
python3 - "$phi/test.jsonl" "$runs/phi/test_notes.csv" <<'PY'
import csv, json, sys
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
with open(sys.argv[2], "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["id", "text"])
    for r in rows:
        w.writerow([r["id"], r["text"]])
PY
$bin deid --model "$runs/phi/model.gguf" --input "$runs/phi/test_notes.csv" --out "$runs/phi/test_redacted.csv" \
  --audit "$runs/phi/deid_audit.json"
$bin tag --model "$runs/phi/model.gguf" --json --input "$runs/phi/test_notes.csv" > "$runs/phi/tags_q8_0.jsonl"
$bin tag --model "$runs/phi/best" --json --input "$runs/phi/test_notes.csv" > "$runs/phi/tags_f32.jsonl"

python3 - "$runs" <<'PY'
import json, sys
runs = sys.argv[1]
print(f"{'set':<5} {'model':<34} {'micro-F1':>9} {'strict':>7} {'macro-F1':>9}")
for name in ["phi", "hpo"]:
    r = json.load(open(f"{runs}/{name}/report.json"))
    for label, s in [("fine-tuned (test)", r["test"]), ("frozen encoder + LR (test)", r["frozen_encoder_baseline"]),
                     ("regex scrubber (test)", r["rules_baseline"])]:
        if s is None:
            print(f"{name:<5} {label:<34} {'n/a':>9}")
            continue
        print(f"{name:<5} {label:<34} {s['default']['micro']['f1']:>9.3f} {s['strict']['micro']['f1']:>7.3f} "
              f"{s['default']['macro_avg']['f1']:>9.3f}")
    print(f"{name:<5} per type (fine-tuned, test): " + ", ".join(
        f"{t['kind']} {t['f1']:.3f}" for t in r["test"]["default"]["per_type"]))
f32 = [json.loads(l) for l in open(f"{runs}/phi/tags_f32.jsonl")]
q8 = [json.loads(l) for l in open(f"{runs}/phi/tags_q8_0.jsonl")]
key = lambda note: {(e["label"], e["start"], e["end"]) for e in note["entities"]}
same = sum(len(key(a) & key(b)) for a, b in zip(f32, q8))
total = sum(len(key(a) | key(b)) for a, b in zip(f32, q8))
print(f"phi: q8_0 bundle vs f32 checkpoint entities: {same} of {total} identical ({same / max(total, 1):.4f}); "
      f"notes with identical entities: {sum(key(a) == key(b) for a, b in zip(f32, q8))} of {len(f32)}")
# The served entities (runtime `tag`, byte spans) against the gold spans of the test notes.
gold = [json.loads(l) for l in open("target/data/phi/test.jsonl", encoding="utf-8")]
def gold_spans(r):
    t = r["text"]
    return {(e["label"], len(t[:e["start"]].encode()), len(t[:e["end"]].encode())) for e in r["entities"]}
for name, notes in [("f32 checkpoint", f32), ("q8_0 bundle", q8)]:
    tp = fp = fn = 0
    for g, p in zip(gold, notes):
        G, P = gold_spans(g), key(p)
        tp, fp, fn = tp + len(G & P), fp + len(P - G), fn + len(G - P)
    p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    print(f"phi: {name} served by `bedside tag`, exact spans vs gold: P {p:.4f} R {r:.4f} F1 {2 * p * r / max(p + r, 1e-12):.4f}")
audit = json.load(open(f"{runs}/phi/deid_audit.json"))
print("phi: deid audit:", json.dumps(audit.get("counts", audit))[:300])
PY
