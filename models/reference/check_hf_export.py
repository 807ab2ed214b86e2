#!/usr/bin/env python3
"""Checks that a directory written by `bedside export --hf-out DIR` (or a run's best/) loads in
transformers and gives the same predictions as Bedside.

Loads DIR with AutoTokenizer + AutoModelForSequenceClassification, scores the notes of
NOTES_CSV (column `text`), and compares the probabilities with `bedside classify --json
--model DIR` (the runtime's f32 path) note by note: softmax over the logits, or a sigmoid for
binary / multi-label heads. Notes longer than the model's window are skipped (Bedside windows
and aggregates them; transformers truncates).
Usage: check_hf_export.py BEDSIDE_BIN DIR NOTES_CSV [MAX_NOTES]   (needs torch, transformers)
Exit status 1 if the largest probability difference is above 1e-4.
"""
import csv, json, subprocess, sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

bin_, model_dir, notes_csv = sys.argv[1:4]
max_notes = int(sys.argv[4]) if len(sys.argv) > 4 else 200
with open(notes_csv, encoding="utf-8") as f:
    texts = [row["text"] for row in csv.DictReader(f)][:max_notes]

tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
config = json.load(open(f"{model_dir}/config.json"))
serving = config.get("bedside", {})
task = serving.get("task", "classification")
window = serving.get("max_seq_len", tokenizer.model_max_length)

out = subprocess.run([bin_, "classify", "--model", model_dir, "--json", *texts],
                     check=True, capture_output=True, text=True).stdout
ours = [json.loads(line) for line in out.splitlines()]

worst, compared, same_label = 0.0, 0, 0
for text, pred in zip(texts, ours):
    enc = tokenizer(text, return_tensors="pt")
    if enc["input_ids"].shape[1] > window:
        continue
    with torch.no_grad():
        logits = model(**enc).logits[0]
    if task == "binary":
        p = torch.sigmoid(logits)[0].item()
        theirs = [1 - p, p]
    elif task == "multilabel":
        theirs = torch.sigmoid(logits).tolist()
    else:
        theirs = torch.softmax(logits, -1).tolist()
    labels = [model.config.id2label[i] for i in range(len(theirs))] if task != "binary" else serving["labels"]
    mine = dict(pred["probabilities"])
    worst = max(worst, max(abs(mine[l] - t) for l, t in zip(labels, theirs)))
    same_label += labels[max(range(len(theirs)), key=theirs.__getitem__)] == pred["label"] or task == "multilabel"
    compared += 1
print(json.dumps({"model": model_dir, "task": task, "notes": compared, "same_label": same_label,
                  "max_probability_difference": worst, "transformers": __import__("transformers").__version__,
                  "torch": torch.__version__}))
sys.exit(0 if compared and worst <= 1e-4 else 1)
