#!/usr/bin/env python3
"""Reference frozen-encoder probe, until `bedside train probe` exists (issue P2).

Embeds train and test notes with a Bedside bundle (export it with `--pooling cls
--normalize false` for [CLS] embeddings), fits scikit-learn's LogisticRegression on the train
embeddings and prints test accuracy and macro-F1.
Usage: probe_reference.py BEDSIDE_BIN BUNDLE TRAIN_CSV TEST_CSV   (needs scikit-learn)
"""
import csv, json, subprocess, sys

from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

bin_, bundle, train_csv, test_csv = sys.argv[1:5]


def load(path):
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def embed(texts):
    vectors = []
    for i in range(0, len(texts), 256):
        out = subprocess.run([bin_, "embed", "--model", bundle, "--json", *texts[i:i + 256]],
                             check=True, capture_output=True, text=True).stdout
        vectors.extend(json.loads(out))
    return vectors


xtr, ytr = load(train_csv)
xte, yte = load(test_csv)
clf = LogisticRegression(max_iter=2000, C=1.0).fit(embed(xtr), ytr)
pred = clf.predict(embed(xte))
print(json.dumps({"probe": "LogisticRegression on frozen embeddings", "n_test": len(yte),
                  "accuracy": accuracy_score(yte, pred), "macro_f1": f1_score(yte, pred, average="macro")}))
