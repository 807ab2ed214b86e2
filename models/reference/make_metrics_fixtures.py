#!/usr/bin/env python3
"""scikit-learn reference numbers for the metric code in trainer/src/eval/metrics.rs.

    /tmp/refvenv/bin/python models/reference/make_metrics_fixtures.py

Writes trainer/tests/fixtures/metrics/{multiclass_4,multiclass_3_ties,binary_ties,multilabel}.json
(relative to the repo root): the hand-written inputs below and scikit-learn's outputs for them.
The Rust tests read these files with include_str!, so they run without Python.

Conventions (the same as metrics.rs):
* multi-class precision/recall/F1/support: precision_recall_fscore_support with labels=range(k),
  zero_division=0; macro averages run over all k classes.
* specificity of a class = recall of "not that class" (TN / (TN + FP)), zero_division=0.
* ROC-AUC / average precision per class are binary one-vs-rest scores on column c. ROC-AUC is null
  when y_true has only one of positives/negatives (sklearn warns and returns nan); average precision
  is null when there are no positives (sklearn warns and returns 0.0 there). Macro = mean over the
  classes where the score is defined.
* binary/multi-label predictions: positive iff p >= threshold.
* calibration (numpy, no sklearn function for it): confidence = max probability of the row, the
  prediction = its argmax (first index on ties); for the binary case confidence = max(p, 1 - p) and
  the prediction = p >= 0.5. bin = ceil(conf * B) - 1 clamped to [0, B - 1], i.e. bins
  [0, 1/B], (1/B, 2/B], ..., ((B-1)/B, 1]. ECE = sum_b n_b / n * |acc_b - conf_b|, MCE = max over
  non-empty bins.
* abstention: a note is "uncertain" when its confidence < min_confidence (strict).
* threshold for a target sensitivity: the highest distinct score t with TPR(p >= t) >= target.
"""

import json
import math
import os
import warnings

import numpy as np
import sklearn
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    hamming_loss,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

warnings.filterwarnings("ignore")  # zero-division / undefined-metric warnings are expected here

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(REPO_ROOT, "trainer", "tests", "fixtures", "metrics")

N_BINS = [4, 10]
MIN_CONFIDENCES = [0.5, 0.6, 0.8]
SENSITIVITY_TARGETS = [0.5, 0.75, 0.9, 1.0]


def nn(x):
    """float, or None for nan/inf (JSON has neither)."""
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def defined_mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def roc_auc_or_none(y, s):
    y = np.asarray(y, dtype=int)
    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, s))


def ap_or_none(y, s):
    y = np.asarray(y, dtype=int)
    if y.sum() == 0:
        return None
    return float(average_precision_score(y, s))


def calibration(conf, correct, n_bins):
    conf = np.asarray(conf, dtype=float)
    correct = np.asarray(correct, dtype=float)
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    bins = []
    ece = 0.0
    mce = 0.0
    for b in range(n_bins):
        m = idx == b
        cnt = int(m.sum())
        if cnt:
            mc = float(conf[m].mean())
            acc = float(correct[m].mean())
            gap = abs(acc - mc)
            ece += cnt / len(conf) * gap
            mce = max(mce, gap)
            bins.append({"count": cnt, "mean_confidence": mc, "accuracy": acc})
        else:
            bins.append({"count": 0, "mean_confidence": None, "accuracy": None})
    return {"n_bins": n_bins, "ece": ece, "mce": mce, "bins": bins}


def abstention(conf, correct, min_conf):
    conf = np.asarray(conf, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    unc = conf < min_conf
    kept = ~unc
    return {
        "min_confidence": min_conf,
        "uncertain": int(unc.sum()),
        "uncertain_share": float(unc.mean()),
        "accuracy_on_confident": float(correct[kept].mean()) if kept.any() else None,
    }


def binary_block(y, p, threshold):
    """Binary metrics at a threshold + ranking metrics, all from sklearn."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    pred = (p >= threshold).astype(int)
    prec, rec, f1, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    spec = recall_score(1 - y, 1 - pred, zero_division=0)
    return {
        "threshold": threshold,
        "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn),
        "precision": float(prec), "recall": float(rec), "specificity": float(spec), "f1": float(f1),
        "accuracy": float(accuracy_score(y, pred)),
        "roc_auc": roc_auc_or_none(y, p),
        "average_precision": ap_or_none(y, p),
    }


def roc_block(y, p, drop):
    fpr, tpr, thr = roc_curve(np.asarray(y, dtype=int), np.asarray(p, dtype=float), drop_intermediate=drop)
    assert math.isinf(thr[0])  # sklearn >= 1.3: first threshold is +inf (written as null)
    return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr], "thresholds": [nn(v) for v in thr]}


def multiclass_case(y_true, probs):
    y = np.asarray(y_true, dtype=int)
    P = np.asarray(probs, dtype=float)
    k = P.shape[1]
    labels = list(range(k))
    pred = P.argmax(axis=1)  # first index on ties, as in metrics.rs
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=labels, average=None, zero_division=0)
    avgs = {}
    for avg in ("macro", "weighted"):
        a = precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        avgs[avg] = {"precision": float(a[0]), "recall": float(a[1]), "f1": float(a[2])}
    spec = [float(recall_score(y != c, pred != c, zero_division=0)) for c in labels]
    roc = [roc_auc_or_none(y == c, P[:, c]) for c in labels]
    ap = [ap_or_none(y == c, P[:, c]) for c in labels]
    conf = P.max(axis=1)
    correct = pred == y
    return {
        "inputs": {"y_true": y.tolist(), "y_pred": pred.tolist(), "probs": P.tolist()},
        "expected": {
            "accuracy": float(accuracy_score(y, pred)),
            "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
            "precision": prec.tolist(), "recall": rec.tolist(), "f1": f1.tolist(),
            "support": [int(s) for s in sup],
            "specificity": spec,
            "macro": avgs["macro"], "weighted": avgs["weighted"],
            "roc_auc": roc, "average_precision": ap,
            "macro_roc_auc": defined_mean(roc), "macro_average_precision": defined_mean(ap),
            "calibration": [calibration(conf, correct, b) for b in N_BINS],
            "abstention": [abstention(conf, correct, m) for m in MIN_CONFIDENCES],
        },
    }


def binary_case(y_true, p, thresholds):
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(p, dtype=float)
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    choices = []
    for target in SENSITIVITY_TARGETS:
        ok = [i for i in range(1, len(thr)) if tpr[i] >= target]  # skip the +inf point
        if not ok:
            choices.append({"target": target, "choice": None})
            continue
        i = ok[0]  # thresholds are decreasing: the first is the highest
        t = float(thr[i])
        pred = (p >= t).astype(int)
        choices.append({"target": target, "choice": {
            "threshold": t, "sensitivity": float(tpr[i]), "specificity": float(1 - fpr[i]),
            "precision": float(precision_score(y, pred, zero_division=0)),
            "flagged": int(pred.sum()),
        }})
    conf = np.maximum(p, 1 - p)
    correct = (p >= 0.5).astype(int) == y
    return {
        "inputs": {"y_true": y.astype(bool).tolist(), "p": p.tolist()},
        "expected": {
            "at_threshold": [binary_block(y, p, t) for t in thresholds],
            "roc_curve": roc_block(y, p, True),
            "roc_curve_all": roc_block(y, p, False),
            "sensitivity_thresholds": choices,
            "calibration": [calibration(conf, correct, b) for b in N_BINS],
            "abstention": [abstention(conf, correct, m) for m in MIN_CONFIDENCES],
        },
    }


def multilabel_case(Y, P, threshold):
    Y = np.asarray(Y, dtype=int)
    P = np.asarray(P, dtype=float)
    pred = (P >= threshold).astype(int)
    per = [binary_block(Y[:, j], P[:, j], threshold) for j in range(Y.shape[1])]
    avgs = {}
    for avg in ("micro", "macro", "weighted"):
        a = precision_recall_fscore_support(Y, pred, average=avg, zero_division=0)
        avgs[avg] = {"precision": float(a[0]), "recall": float(a[1]), "f1": float(a[2])}
    return {
        "inputs": {"y_true": Y.astype(bool).tolist(), "probs": P.tolist(), "threshold": threshold},
        "expected": {
            "per_label": per,
            "micro": avgs["micro"], "macro": avgs["macro"], "weighted": avgs["weighted"],
            "subset_accuracy": float(accuracy_score(Y, pred)),
            "hamming_loss": float(hamming_loss(Y, pred)),
            "macro_roc_auc": defined_mean([b["roc_auc"] for b in per]),
            "macro_average_precision": defined_mean([b["average_precision"] for b in per]),
        },
    }


# 4 classes: class 2 is never predicted, class 3 is predicted but never true (support 0).
MC4_Y = [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 0, 1, 2, 0]
MC4_P = [
    [0.7, 0.1, 0.1, 0.1],
    [0.5, 0.2, 0.1, 0.2],
    [0.3, 0.4, 0.2, 0.1],
    [0.2, 0.1, 0.3, 0.4],
    [0.1, 0.6, 0.2, 0.1],
    [0.2, 0.5, 0.2, 0.1],
    [0.4, 0.35, 0.15, 0.1],
    [0.05, 0.8, 0.1, 0.05],
    [0.1, 0.3, 0.2, 0.4],
    [0.35, 0.25, 0.3, 0.1],
    [0.1, 0.45, 0.4, 0.05],
    [0.2, 0.2, 0.25, 0.35],
    [0.9, 0.05, 0.03, 0.02],
    [0.25, 0.5, 0.15, 0.1],
    [0.4, 0.1, 0.35, 0.15],
    [0.6, 0.1, 0.1, 0.2],
]

# 3 classes on a 0.1 grid: ties within columns and, in some rows, at the row maximum.
MC3_Y = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 1, 0, 2]
MC3_P = [
    [0.6, 0.2, 0.2],
    [0.2, 0.6, 0.2],
    [0.2, 0.2, 0.6],
    [0.4, 0.4, 0.2],
    [0.4, 0.4, 0.2],
    [0.2, 0.4, 0.4],
    [0.6, 0.2, 0.2],
    [0.2, 0.6, 0.2],
    [0.6, 0.2, 0.2],
    [0.2, 0.2, 0.6],
    [0.2, 0.6, 0.2],
    [0.2, 0.2, 0.6],
    [0.3, 0.3, 0.4],
    [0.5, 0.3, 0.2],
    [0.3, 0.3, 0.4],
]

# Binary, 8 positives / 12 negatives, scores tied across the classes (incl. at 0.5); the ROC
# point at 0.7 is an equal-step intermediate that roc_curve(drop_intermediate=True) drops.
BIN_Y = [1] * 8 + [0] * 12
BIN_P = [0.95, 0.92, 0.9, 0.8, 0.5, 0.5, 0.3, 0.1,
         0.9, 0.7, 0.5, 0.5, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1, 0.0, 0.6]

# Multi-label, 4 labels: label 3 is never positive (ROC-AUC and AP undefined), ties in columns
# (label 2: a negative tied with positives at exactly the 0.5 threshold).
ML_Y = [
    [1, 0, 1, 0],
    [1, 1, 0, 0],
    [0, 1, 1, 0],
    [0, 0, 1, 0],
    [1, 0, 0, 0],
    [0, 1, 1, 0],
    [1, 1, 1, 0],
    [0, 0, 0, 0],
    [1, 0, 1, 0],
    [0, 1, 1, 0],
]
ML_P = [
    [0.8, 0.2, 0.6, 0.1],
    [0.7, 0.6, 0.4, 0.2],
    [0.3, 0.7, 0.9, 0.0],
    [0.4, 0.2, 0.5, 0.6],
    [0.6, 0.5, 0.5, 0.1],
    [0.2, 0.4, 0.7, 0.1],
    [0.9, 0.8, 0.5, 0.3],
    [0.5, 0.1, 0.2, 0.1],
    [0.6, 0.3, 0.8, 0.2],
    [0.1, 0.9, 0.6, 0.1],
]


def dumps(v, indent=0):
    """JSON with one key per line; flat objects and lists without objects on one line."""
    pad = " " * indent
    if isinstance(v, dict) and all(not isinstance(x, (dict, list)) for x in v.values()):
        return pad + json.dumps(v, allow_nan=False, separators=(",", ":"))
    if isinstance(v, dict):
        items = [f'{pad} {json.dumps(k)}: {dumps(x, indent + 1).lstrip()}' for k, x in v.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(v, list) and any(isinstance(x, dict) for x in v):
        return pad + "[\n" + ",\n".join(dumps(x, indent + 1) for x in v) + "\n" + pad + "]"
    return pad + json.dumps(v, allow_nan=False, separators=(",", ":"))


def write(name, case):
    case = {"generator": f"models/reference/make_metrics_fixtures.py, scikit-learn {sklearn.__version__}",
            "n_bins": N_BINS, "min_confidences": MIN_CONFIDENCES, **case}
    path = os.path.join(OUT_DIR, name + ".json")
    with open(path, "w") as f:
        f.write(dumps(case))
        f.write("\n")
    print(path, os.path.getsize(path), "bytes")


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    write("multiclass_4", multiclass_case(MC4_Y, MC4_P))
    write("multiclass_3_ties", multiclass_case(MC3_Y, MC3_P))
    bc = binary_case(BIN_Y, BIN_P, [0.5, 0.3])
    bc["sensitivity_targets"] = SENSITIVITY_TARGETS
    write("binary_ties", bc)
    write("multilabel", multilabel_case(ML_Y, ML_P, 0.5))


if __name__ == "__main__":
    main()
