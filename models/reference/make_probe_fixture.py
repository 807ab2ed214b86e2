#!/usr/bin/env python3
"""scikit-learn reference numbers for the frozen-encoder probe in trainer/src/train/probe.rs.

    /tmp/refvenv/bin/python models/reference/make_probe_fixture.py

Writes trainer/tests/fixtures/probe/{multiclass,binary,multilabel}.json (relative to the repo
root): small deterministic data sets, and what sklearn.linear_model.LogisticRegression(C=1.0,
max_iter=1000) learns from them. The Rust tests read these files with include_str!, so they run
without Python.

Data sets (numpy RandomState, fixed seeds; features rounded to 3 decimals so the JSON is exact
enough: the Rust side parses them to f32, a relative change below 3e-8):
* multiclass: 3 Gaussian blobs in 8 dimensions, 40 rows each (120 rows), unit noise, the
  dimensions rescaled by different factors so that `standardize` changes the fit.
* binary: 100 rows in 5 dimensions, y = [x.w + noise > 0.6]: about a third positive, so the
  positive class is the minority (linfa labels the majority class +1: this catches a sign flip).
* multilabel: the binary rows with two labels fitted independently (one-vs-rest, as
  probe::fit_multilabel does): label 0 = the binary y, label 1 = [x1 + noise > 0.3].

Each case holds, per output:
* proba: predict_proba of LogisticRegression(C=1.0, max_iter=1000) at sklearn's default tol=1e-4
  (for the multilabel case: P(label) per label, i.e. predict_proba[:, 1] of each fit);
* proba_tight: the same model refitted with tol=1e-10, i.e. the optimum of the objective to
  within floating point; max_abs_default_vs_tight records how far the default-tol fit stops
  from it (the part of any Rust-vs-sklearn difference that is sklearn's own stopping slack);
* proba_standardized: make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000,
  tol=1e-10)), which is what ProbeOptions { standardize: true, .. } fits (StandardScaler uses the
  population standard deviation, ddof=0);
* proba_c_small: LogisticRegression(C=C_SMALL=0.1, max_iter=1000, tol=1e-10): with C = 1 the
  mapping l2 = 1/C cannot be told from l2 = C, with C = 0.1 it can;
* accuracy of the default fit on its training rows, n_iter, coef and intercept.
For the multiclass case sklearn >= 1.5 fits the multinomial (softmax) model with lbfgs.
"""

import json
import os

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "trainer", "tests",
                       "fixtures", "probe")
C = 1.0
MAX_ITER = 1000
TIGHT_TOL = 1e-10
C_SMALL = 0.1


def multiclass_data():
    rng = np.random.RandomState(20240611)
    k, per, dim = 3, 40, 8
    centers = rng.normal(0.0, 1.2, size=(k, dim))
    x = np.concatenate([centers[c] + rng.normal(0.0, 1.0, size=(per, dim)) for c in range(k)])
    y = np.repeat(np.arange(k), per)
    scale = np.array([1.0, 3.0, 0.5, 2.0, 1.0, 0.25, 4.0, 1.5])
    x = x * scale + np.array([0.0, 1.0, -2.0, 0.5, 0.0, 3.0, -1.0, 0.0])
    order = rng.permutation(len(y))
    return np.round(x[order], 3), y[order]


def binary_data():
    rng = np.random.RandomState(7)
    n, dim = 100, 5
    x = rng.normal(0.0, 1.0, size=(n, dim)) * np.array([1.0, 2.0, 0.5, 1.0, 3.0])
    w = np.array([1.5, -0.4, 2.0, 0.0, 0.3])
    y = (x @ w + rng.normal(0.0, 1.0, size=n)) > 0.6
    y1 = (x[:, 1] + rng.normal(0.0, 1.0, size=n)) > 0.3
    return np.round(x, 3), y, y1


def lr(tol=1e-4, c=C):
    return LogisticRegression(C=c, max_iter=MAX_ITER, tol=tol)


def fit_block(x, y):
    """Fits the three models on (x, y); returns their probabilities (n x k, or n for binary)."""
    binary = len(np.unique(y)) == 2
    default = lr().fit(x, y)
    tight = lr(TIGHT_TOL).fit(x, y)
    std = make_pipeline(StandardScaler(), lr(TIGHT_TOL)).fit(x, y)
    small = lr(TIGHT_TOL, C_SMALL).fit(x, y)

    def proba(m):
        p = m.predict_proba(x)
        return p[:, 1] if binary else p

    p, pt, ps, pc = proba(default), proba(tight), proba(std), proba(small)
    return {
        "accuracy": float(default.score(x, y)),
        "n_iter": int(default.n_iter_.max()),
        "max_abs_default_vs_tight": float(np.abs(p - pt).max()),
        "coef": np.round(default.coef_, 6).tolist(),
        "intercept": np.round(default.intercept_, 6).tolist(),
        "proba": np.round(p, 6).tolist(),
        "proba_tight": np.round(pt, 6).tolist(),
        "proba_standardized": np.round(ps, 6).tolist(),
        "c_small": C_SMALL,
        "proba_c_small": np.round(pc, 6).tolist(),
    }


def dumps(v, indent=0):
    """JSON with one key per line and one matrix row per line."""
    pad = " " * indent
    if isinstance(v, dict):
        items = [f'{pad} {json.dumps(k)}: {dumps(x, indent + 1).lstrip()}' for k, x in v.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(v, list) and v and any(isinstance(x, (list, dict)) for x in v):
        return pad + "[\n" + ",\n".join(dumps(x, indent + 1) for x in v) + "\n" + pad + "]"
    return pad + json.dumps(v, allow_nan=False, separators=(",", ":"))


def write(name, case):
    case = {"generator": f"models/reference/make_probe_fixture.py, scikit-learn {sklearn.__version__}",
            "C": C, "max_iter": MAX_ITER, **case}
    path = os.path.normpath(os.path.join(OUT_DIR, name + ".json"))
    with open(path, "w") as f:
        f.write(dumps(case))
        f.write("\n")
    print(path, os.path.getsize(path), "bytes")


def main():
    os.makedirs(OUT_DIR, exist_ok=True)

    x, y = multiclass_data()
    write("multiclass", {"n_classes": 3, "x": x.tolist(), "y": y.tolist(), **fit_block(x, y)})

    xb, yb, yb1 = binary_data()
    write("binary", {"x": xb.tolist(), "y": yb.tolist(), **fit_block(xb, yb)})

    labels = [fit_block(xb, yl) for yl in (yb, yb1)]
    write("multilabel", {
        "x": xb.tolist(),
        "y": np.stack([yb, yb1], axis=1).tolist(),
        "labels": labels,
    })


if __name__ == "__main__":
    main()
