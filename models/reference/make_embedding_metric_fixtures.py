#!/usr/bin/env python3
"""Reference numbers for the embedding metrics in trainer/src/eval/embedding.rs.

    /tmp/refvenv/bin/python models/reference/make_embedding_metric_fixtures.py

Writes trainer/tests/fixtures/embedding/{correlation,retrieval_binary,retrieval_graded,
distribution}.json (relative to the repo root): seeded inputs and the reference outputs for them.
The Rust tests read these files with include_str!, so they run without Python.

Sources of truth:
* correlation: scipy.stats.pearsonr and scipy.stats.spearmanr (average ranks for ties). Constant
  input gives nan in scipy (with a warning); the fixture stores null, and so does Rust.
* retrieval_binary: sentence-transformers' own InformationRetrievalEvaluator.compute_metrics
  (no model: the evaluator is built from ids and given every query's scores over the whole
  corpus). Its conventions: queries without a relevant document are dropped; hits are ranked by
  (-score, corpus_id), so ties go to the smaller id; MRR@10; nDCG@10 with binary gains;
  Recall@k = relevant hits in the top k / relevant documents; MAP@100 = sum of precision at each
  relevant hit in the top 100 / min(100, relevant documents).
* retrieval_graded: qrels with scores 0..3. nDCG@10 with graded (linear) gains comes from
  sklearn.metrics.ndcg_score (its gain is the relevance itself and its discount log2(rank + 1),
  as trec_eval's ndcg_cut; the scores have no ties, so sklearn's tie averaging does not enter).
  The other metrics come from sentence-transformers with relevant = score > 0. Checked here: with
  0/1 scores sklearn's nDCG equals sentence-transformers'.
* distribution: numpy mean, median, percentile (linear interpolation, numpy's default) and
  numpy.histogram over [-1, 1] (half-open bins, the last one closed).
"""

import json
import math
import os
import warnings

import numpy as np
import scipy
import sentence_transformers
import sklearn
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import ndcg_score

try:
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
except ImportError:  # sentence-transformers < 6
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

warnings.filterwarnings("ignore")  # constant-input warnings are expected here

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(REPO_ROOT, "trainer", "tests", "fixtures", "embedding")
VERSIONS = {
    "scipy": scipy.__version__,
    "scikit-learn": sklearn.__version__,
    "sentence-transformers": sentence_transformers.__version__,
    "numpy": np.__version__,
}
K = {"mrr": 10, "ndcg": 10, "recall": [1, 5, 10], "map": 100}


def nn(x):
    """float, or None for nan/inf (JSON has neither)."""
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def write(name, payload):
    payload = {"generated_by": "models/reference/make_embedding_metric_fixtures.py", "versions": VERSIONS, **payload}
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, name), "w") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")
    print("wrote", os.path.join(OUT_DIR, name))


# ------------------------------------------------------------------------------------------------
# Pearson / Spearman

rng = np.random.default_rng(20261123)
cases = []


def corr_case(name, x, y, exact=False):
    """exact: x is written as decimal strings. serde_json's default float parsing may be 1 ulp off,
    and around 1e6 one ulp is 1e-10, a visible share of deviations of 1e-3; Rust's str::parse is
    correctly rounded."""
    x, y = [float(v) for v in x], [float(v) for v in y]
    cases.append({
        "name": name,
        "x": [repr(v) for v in x] if exact else x,
        "y": y,
        "pearson": nn(pearsonr(x, y)[0]) if len(set(x)) > 1 and len(set(y)) > 1 else None,
        "spearman": nn(spearmanr(x, y)[0]) if len(set(x)) > 1 and len(set(y)) > 1 else None,
    })


cos = rng.uniform(-0.2, 0.95, 60)
labels = (cos + rng.normal(0, 0.3, 60) > 0.4).astype(float)
corr_case("binary_labels", cos, labels)
# Cosines with ties (rounded) against graded scores with ties.
corr_case("ties_both", np.round(rng.uniform(0, 1, 40), 1), np.round(rng.uniform(0, 1, 40) * 4) / 4)
score = rng.uniform(0, 1, 50)
corr_case("continuous", score + rng.normal(0, 0.2, 50), score)
corr_case("negative", [0.9, 0.8, 0.7, 0.1, 0.3], [0.0, 0.25, 0.5, 1.0, 1.0])
corr_case("three", [0.1, 0.5, 0.2], [0.0, 1.0, 1.0])
corr_case("large_offset", 1e6 + rng.normal(0, 1e-3, 30), rng.uniform(0, 1, 30), exact=True)
corr_case("constant_labels", [0.1, 0.4, 0.3, 0.9], [1.0, 1.0, 1.0, 1.0])
write("correlation.json", {"cases": cases})


# ------------------------------------------------------------------------------------------------
# Retrieval


def st_metrics(query_ids, corpus_ids, scores, relevant):
    """sentence-transformers' numbers for a full score matrix (queries x corpus)."""
    queries = {q: f"query {q}" for q in query_ids}
    corpus = {c: f"doc {c}" for c in corpus_ids}
    ev = InformationRetrievalEvaluator(
        queries, corpus, relevant, mrr_at_k=[K["mrr"]], ndcg_at_k=[K["ndcg"]], accuracy_at_k=K["recall"],
        precision_recall_at_k=K["recall"], map_at_k=[K["map"]], write_csv=False,
    )
    results = []
    for qid in ev.queries_ids:  # the evaluator keeps only queries with a relevant document
        row = scores[query_ids.index(qid)]
        results.append([{"corpus_id": c, "score": float(s)} for c, s in zip(corpus_ids, row)])
    m = ev.compute_metrics(results)
    return {
        "n_queries": len(ev.queries_ids),
        "mrr@10": float(m["mrr@k"][10]),
        "ndcg@10": float(m["ndcg@k"][10]),
        "recall@1": float(m["recall@k"][1]),
        "recall@5": float(m["recall@k"][5]),
        "recall@10": float(m["recall@k"][10]),
        "map@100": float(m["map@k"][100]),
    }


def retrieval_set(n_queries, n_docs, tie_decimals):
    query_ids = [f"q{i:02d}" for i in range(n_queries)]
    # Ids not in numeric order, so that the id tie-break is visible.
    corpus_ids = [f"d{(i * 37) % n_docs:03d}" for i in range(n_docs)]
    scores = rng.uniform(-0.3, 0.9, (n_queries, n_docs))
    if tie_decimals is not None:
        scores = np.round(scores, tie_decimals)
    return query_ids, corpus_ids, scores


# Binary: 150 documents (MAP@100 truncates), 1 to 12 relevant documents per query, a query with
# none (dropped), relevant documents pushed up so the metrics are not all near zero, and
# scores rounded to 2 decimals so ties are common.
query_ids, corpus_ids, scores = retrieval_set(12, 150, 2)
qrels = []
relevant = {}
for qi, q in enumerate(query_ids):
    if q == "q05":
        continue  # no relevant document: sentence-transformers skips the query
    n_rel = [1, 1, 2, 3, 5, 12][qi % 6]
    docs = rng.choice(len(corpus_ids), n_rel, replace=False)
    for d in docs:
        scores[qi, d] = np.round(min(1.0, scores[qi, d] + rng.uniform(0, 0.6)), 2)
        qrels.append([q, corpus_ids[d], 1.0])
        relevant.setdefault(q, set()).add(corpus_ids[d])
# A query whose relevant document ties with a non-relevant one of smaller id at rank 1.
q = query_ids[0]
rel_doc = sorted(relevant[q])[0]
smaller = min(c for c in corpus_ids if c not in relevant[q])
scores[0, corpus_ids.index(rel_doc)] = 0.99
scores[0, corpus_ids.index(smaller)] = 0.99
write("retrieval_binary.json", {
    "query_ids": query_ids,
    "corpus_ids": corpus_ids,
    "scores": scores.tolist(),
    "qrels": qrels,
    "expected": st_metrics(query_ids, corpus_ids, scores, relevant),
})

# Graded: scores 0..3 (0 = judged not relevant), continuous similarity scores (no ties).
query_ids, corpus_ids, scores = retrieval_set(10, 40, None)
qrels, relevant, gains = [], {}, np.zeros(scores.shape)
for qi, q in enumerate(query_ids):
    docs = rng.choice(len(corpus_ids), 1 + qi % 5, replace=False)
    for j, d in enumerate(docs):
        grade = [3, 1, 2, 0, 1][j]
        if q == "q07":
            grade = 0  # judged, none relevant: dropped like a query without qrels
        scores[qi, d] = scores[qi, d] + 0.15 * grade  # unclipped: a clip at 1 would make ties
        qrels.append([q, corpus_ids[d], float(grade)])
        gains[qi, d] = grade
        if grade > 0:
            relevant.setdefault(q, set()).add(corpus_ids[d])
assert len({round(s, 12) for s in scores.flatten()}) == scores.size, "graded scores must not tie"
expected = st_metrics(query_ids, corpus_ids, scores, relevant)
kept = [i for i, q in enumerate(query_ids) if q in relevant]
expected["ndcg@10"] = float(np.mean([ndcg_score(gains[i : i + 1], scores[i : i + 1], k=10) for i in kept]))
# sklearn's nDCG with 0/1 gains is sentence-transformers' nDCG (checks the claim above).
binary = (gains > 0).astype(float)
sk_binary = float(np.mean([ndcg_score(binary[i : i + 1], scores[i : i + 1], k=10) for i in kept]))
assert abs(sk_binary - st_metrics(query_ids, corpus_ids, scores, relevant)["ndcg@10"]) < 1e-12
expected["ndcg@10_binary"] = sk_binary
write("retrieval_graded.json", {
    "query_ids": query_ids,
    "corpus_ids": corpus_ids,
    "scores": scores.tolist(),
    "qrels": qrels,
    "expected": expected,
})

# ------------------------------------------------------------------------------------------------
# Distributions

BINS = 20
dist_cases = []
for name, values in [
    ("related", rng.uniform(0.2, 0.95, 37)),
    ("unrelated", rng.normal(0.1, 0.2, 64).clip(-1, 1)),
    ("edges", np.array([-1.0, -0.9, 0.0, 0.1, 0.5, 0.95, 1.0, 1.0])),
    ("two", np.array([0.25, 0.75])),
    ("one", np.array([0.3])),
]:
    counts, edges = np.histogram(values, bins=BINS, range=(-1.0, 1.0))
    dist_cases.append({
        "name": name,
        "values": values.tolist(),
        "mean": float(np.mean(values)),
        "median": float(np.median(values)),
        "p10": float(np.percentile(values, 10)),
        "p90": float(np.percentile(values, 90)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "histogram": counts.tolist(),
        "edges": edges.tolist(),
    })
write("distribution.json", {"bins": BINS, "range": [-1.0, 1.0], "cases": dist_cases})
