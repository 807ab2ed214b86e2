#!/usr/bin/env python3
"""Bedside vs PyTorch / scikit-learn: one Markdown table per data set, and a verdict.

RESULTS_DIR holds a folder per data set (icd10/, hpo/, …), each with what ran there:
  pytorch_finetune.jsonl   scripts/compare/reference.py: a line per seed
                           {seed, macro_f1, roc_auc_macro, accuracy, train_samples_per_s, …}
  sklearn_probe.jsonl      scripts/compare/reference.py: a line per feature kind
                           {features, c, macro_f1, roc_auc_macro, accuracy, …}
  bedside.jsonl            from Bedside's reports, one line per run:
                           {"kind": "finetune", "seed", "macro_f1", "roc_auc_macro", "accuracy", "samples_per_s"}
                           {"kind": "probe", "features", "c", "macro_f1", "roc_auc_macro", "accuracy",
                            "agreement_bundle_vs_sklearn"}
A missing file or field reads "not run" / "–"; nothing here fails on it.

Per set: fine-tuning rows (Bedside, PyTorch: mean ± sample standard deviation and min–max of
macro-F1 and ROC-AUC over seeds, the number of seeds), probe rows per feature kind (Bedside vs
scikit-learn macro-F1 and ROC-AUC, their differences Bedside − scikit-learn, the agreement),
and a verdict:
  probe       |macro-F1 difference| ≤ 0.01 for cls and mean (pooler is shown, not judged)
  fine-tune   Bedside's mean macro-F1 ≥ PyTorch's mean − PyTorch's seed spread (max − min)
  agreement   agreement_bundle_vs_sklearn ≥ 0.995 for cls and mean

Usage: python3 scripts/compare/summarize.py RESULTS_DIR [--markdown OUT.md] [--json OUT.json]
"""
import argparse
import json
import math
import os
import sys

PROBE_TOL = 0.01
# The features issue P11's bar names; others (pooler) are reported beside them, not judged.
JUDGED_FEATURES = ("cls", "mean")
AGREEMENT_MIN = 0.995


def read_jsonl(path):
    """The JSON lines of `path`, or None when the file is missing (bad lines are reported)."""
    if not os.path.isfile(path):
        return None
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"{path}:{n}: not JSON ({e.msg}): skipped", file=sys.stderr)
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def num(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def stats(values):
    xs = [x for x in (num(v) for v in values) if x is not None]
    if not xs:
        return None
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return {"n": len(xs), "mean": mean, "std": std, "min": min(xs), "max": max(xs)}


def f(v, digits=4):
    return "–" if v is None else f"{v:.{digits}f}"


def signed(v):
    return "–" if v is None else f"{v:+.4f}"


def mean_std(s):
    if s is None:
        return "–"
    return f"{s['mean']:.4f} ± {s['std']:.4f}" if s["std"] is not None else f"{s['mean']:.4f}"


def min_max(s):
    return "–" if s is None else f"{s['min']:.4f}–{s['max']:.4f}"


def finetune_side(lines, speed_key):
    if lines is None:
        return None
    return {
        "n_seeds": len(lines),
        "seeds": [l.get("seed") for l in lines],
        "macro_f1": stats(l.get("macro_f1") for l in lines),
        "roc_auc_macro": stats(l.get("roc_auc_macro") for l in lines),
        "accuracy": stats(l.get("accuracy") for l in lines),
        "samples_per_s": stats(l.get(speed_key) for l in lines),
        "peak_rss_mb": stats(l.get("peak_rss_mb") for l in lines),
    }


def pick_probe(lines, kind, c=None):
    """Bedside's line for `kind`: the one with scikit-learn's C if there is one, else the last."""
    same = [l for l in lines if l.get("features") == kind]
    if not same:
        return None
    if c is not None:
        for l in reversed(same):
            if num(l.get("c")) is not None and math.isclose(num(l["c"]), c, rel_tol=1e-9):
                return l
    return same[-1]


def summarize_set(name, folder):
    bedside = read_jsonl(os.path.join(folder, "bedside.jsonl"))
    pytorch = read_jsonl(os.path.join(folder, "pytorch_finetune.jsonl"))
    sklearn = read_jsonl(os.path.join(folder, "sklearn_probe.jsonl"))
    b_ft = None if bedside is None else [l for l in bedside if l.get("kind") == "finetune"]
    b_random = None if bedside is None else [l for l in bedside if l.get("kind") == "finetune_random_order"]
    b_probe = None if bedside is None else [l for l in bedside if l.get("kind") == "probe"]
    result = {"name": name, "files": {"bedside.jsonl": bedside is not None,
                                      "pytorch_finetune.jsonl": pytorch is not None,
                                      "sklearn_probe.jsonl": sklearn is not None}}

    result["finetune"] = {"bedside": finetune_side(b_ft or None, "samples_per_s"),
                          "bedside_random_order": finetune_side(b_random or None, "samples_per_s"),
                          "pytorch": finetune_side(pytorch or None, "train_samples_per_s")}

    kinds = []
    for lines in (sklearn or [], b_probe or []):
        for l in lines:
            k = l.get("features")
            if k is not None and k not in kinds:
                kinds.append(k)
    probes = []
    for kind in kinds:
        sk = next((l for l in reversed(sklearn or []) if l.get("features") == kind), None)
        bs = pick_probe(b_probe or [], kind, num(sk.get("c")) if sk else None)
        row = {"features": kind,
               "c_bedside": bs.get("c") if bs else None, "c_sklearn": sk.get("c") if sk else None,
               "macro_f1_bedside": num(bs.get("macro_f1")) if bs else None,
               "macro_f1_sklearn": num(sk.get("macro_f1")) if sk else None,
               "roc_auc_bedside": num(bs.get("roc_auc_macro")) if bs else None,
               "roc_auc_sklearn": num(sk.get("roc_auc_macro")) if sk else None,
               "agreement": num(bs.get("agreement_bundle_vs_sklearn")) if bs else None}
        row["macro_f1_diff"] = (row["macro_f1_bedside"] - row["macro_f1_sklearn"]
                                if None not in (row["macro_f1_bedside"], row["macro_f1_sklearn"]) else None)
        row["roc_auc_diff"] = (row["roc_auc_bedside"] - row["roc_auc_sklearn"]
                               if None not in (row["roc_auc_bedside"], row["roc_auc_sklearn"]) else None)
        probes.append(row)
    result["probe"] = probes
    result["verdict"] = verdict(result)
    return result


def verdict(r):
    checks = []  # (name, True / False / None = not run, detail)
    if not r["probe"]:
        checks.append(("probe", None, "not run"))
    for p in r["probe"]:
        if p["features"] not in JUDGED_FEATURES:
            continue
        d = p["macro_f1_diff"]
        checks.append((f"probe {p['features']} |ΔF1| ≤ {PROBE_TOL}", None if d is None else abs(d) <= PROBE_TOL,
                       "not run" if d is None else f"{d:+.4f}"))
    b, t = r["finetune"]["bedside"], r["finetune"]["pytorch"]
    if b and t and b["macro_f1"] and t["macro_f1"]:
        spread = t["macro_f1"]["max"] - t["macro_f1"]["min"]
        floor = t["macro_f1"]["mean"] - spread
        checks.append(("fine-tune mean ≥ PyTorch mean − spread", b["macro_f1"]["mean"] >= floor,
                       f"{b['macro_f1']['mean']:.4f} vs {floor:.4f} ({t['macro_f1']['mean']:.4f} − {spread:.4f}"
                       f"{', 1 seed: no spread' if t['macro_f1']['n'] < 2 else ''})"))
    else:
        missing = [who for who, s in (("Bedside", b), ("PyTorch", t)) if not (s and s["macro_f1"])]
        checks.append(("fine-tune mean ≥ PyTorch mean − spread", None, "not run (" + ", ".join(missing) + ")"))
    if not r["probe"]:
        checks.append(("agreement", None, "not run"))
    for p in r["probe"]:
        if p["features"] not in JUDGED_FEATURES:
            continue
        a = p["agreement"]
        checks.append((f"agreement {p['features']} ≥ {AGREEMENT_MIN}", None if a is None else a >= AGREEMENT_MIN,
                       "not run" if a is None else f"{a:.4f}"))
    if any(c[1] is False for c in checks):
        overall = "FAIL"
    elif any(c[1] is None for c in checks):
        overall = "INCOMPLETE"
    else:
        overall = "PASS"
    return {"overall": overall,
            "checks": [{"check": n, "pass": ok, "detail": d} for n, ok, d in checks]}


def markdown(r):
    out = [f"## {r['name']}", ""]
    missing = [name for name, there in r["files"].items() if not there]
    if missing:
        out += [f"Not run (no file): {', '.join(missing)}.", ""]
    out += ["| fine-tuning | seeds | macro-F1 mean ± std | macro-F1 min–max | AUROC mean ± std | AUROC min–max "
            "| accuracy mean | samples/s | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]
    for who, key in (("Bedside (length-grouped batches)", "bedside"),
                     ("Bedside (random batches)", "bedside_random_order"), ("PyTorch", "pytorch")):
        s = r["finetune"].get(key)
        if s is None:
            out.append(f"| {who} | not run | | | | | | | |")
            continue
        acc, speed, rss = s["accuracy"], s["samples_per_s"], s.get("peak_rss_mb")
        out.append(f"| {who} | {s['n_seeds']} | {mean_std(s['macro_f1'])} | {min_max(s['macro_f1'])} | "
                   f"{mean_std(s['roc_auc_macro'])} | {min_max(s['roc_auc_macro'])} | "
                   f"{f(acc['mean']) if acc else '–'} | {f(speed['mean'], 1) if speed else '–'} | "
                   f"{f(rss['max'], 0) if rss else '–'} |")
    b, p = r["finetune"]["bedside"], r["finetune"]["pytorch"]
    if b and p and b["samples_per_s"] and p["samples_per_s"]:
        out.append(f"\nBedside / PyTorch samples/s: {b['samples_per_s']['mean'] / p['samples_per_s']['mean']:.2f}×")
    out.append("")
    out += ["| probe features | C (Bedside / sklearn) | macro-F1 Bedside | macro-F1 sklearn | Δ macro-F1 "
            "| AUROC Bedside | AUROC sklearn | Δ AUROC | agreement |", "|---|---|---|---|---|---|---|---|---|"]
    if not r["probe"]:
        out.append("| not run | | | | | | | | |")
    for p in r["probe"]:
        c = f"{p['c_bedside'] if p['c_bedside'] is not None else '–'} / " \
            f"{p['c_sklearn'] if p['c_sklearn'] is not None else '–'}"
        out.append(f"| {p['features']} | {c} | {f(p['macro_f1_bedside'])} | {f(p['macro_f1_sklearn'])} | "
                   f"{signed(p['macro_f1_diff'])} | {f(p['roc_auc_bedside'])} | {f(p['roc_auc_sklearn'])} | "
                   f"{signed(p['roc_auc_diff'])} | {f(p['agreement'])} |")
    out.append("")
    marks = {True: "✓", False: "✗", None: "–"}
    v = r["verdict"]
    out.append(f"**Verdict ({r['name']}): {v['overall']}** — " +
               "; ".join(f"{c['check']}: {marks[c['pass']]} {c['detail']}" for c in v["checks"]))
    out.append("")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description="Bedside vs PyTorch/scikit-learn comparison tables")
    p.add_argument("results_dir")
    p.add_argument("--markdown", help="write the tables here too")
    p.add_argument("--json", help="write the numbers and verdicts here")
    a = p.parse_args()
    if not os.path.isdir(a.results_dir):
        sys.exit(f"{a.results_dir}: not a directory")
    names = sorted(d for d in os.listdir(a.results_dir) if os.path.isdir(os.path.join(a.results_dir, d)))
    results = [summarize_set(n, os.path.join(a.results_dir, n)) for n in names]
    text = "# Bedside vs PyTorch / scikit-learn\n\n"
    text += "\n".join(markdown(r) for r in results) if results else "No data set folders: not run.\n"
    print(text)
    if a.markdown:
        with open(a.markdown, "w", encoding="utf-8") as fh:
            fh.write(text)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump({"sets": results, "thresholds": {"probe_macro_f1_diff": PROBE_TOL,
                                                       "agreement_min": AGREEMENT_MIN}}, fh, indent=2)
            fh.write("\n")


if __name__ == "__main__":
    main()
