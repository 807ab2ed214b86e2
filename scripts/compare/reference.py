#!/usr/bin/env python3
"""The Python peer of a Bedside run (issue P11): the same data, model and recipe in PyTorch +
transformers + scikit-learn, so Bedside's numbers can be checked against the usual tools.

On one data directory (train.csv, val.csv, test.csv with columns id,text,label) and one
Hugging Face BERT directory (config.json, model.safetensors, tokenizer.json) it runs:

(a) The frozen-encoder probe (`bedside train probe`'s peer), unless --skip-probe.
    transformers `AutoModel` (BertModel) in eval mode under torch.no_grad (no dropout), the
    directory's tokenizer (`AutoTokenizer`), notes cut to --max-seq-len tokens ([CLS] and
    [SEP] included), padded to the longest in each batch. Features per note:
      cls    = last_hidden_state[:, 0]
      mean   = the mean of last_hidden_state under the attention mask
      pooler = pooler_output (tanh(W·[CLS] + b); skipped if the checkpoint has no pooler)
    For each kind: scikit-learn `LogisticRegression(C=c, max_iter=1000)` (lbfgs, multinomial,
    no scaling, defaults otherwise) fit on the training features; scored on test: macro-F1,
    accuracy, ROC-AUC macro one-vs-rest from predict_proba (labels in sorted order).
    `--c auto`: C from [0.001, 0.01, 0.1, 1, 10, 100, 1000] (Bedside's grid; --c-grid to change) by validation
    macro-F1 (ties: the smaller C), the fit on train at that C scored on test; the grid's
    validation scores are reported.
    Writes OUT/sklearn_probe.jsonl (a line per kind: features, c, n_test, macro_f1, accuracy,
    roc_auc_macro, seconds, …) and OUT/sklearn_probe_<features>_predictions.csv (id,label:
    the predicted test label per row, in test-file order).

(b) Fine-tuning (`bedside train classify`'s peer), unless --skip-finetune. Per seed:
      torch.manual_seed(seed); torch.set_num_threads(threads)
      BertForSequenceClassification.from_pretrained(model, num_labels=K), labels sorted
        alphabetically → index; dropout as in the checkpoint's config (pooler → dropout →
        classifier, the new head N(0, initializer_range), bias 0)
      every epoch a new order of the training notes from a torch.Generator seeded with seed;
        batches of --batch-size (the last one smaller), padded to the longest in the batch,
        each note its first window (truncated to --max-seq-len tokens)
      loss = CrossEntropyLoss(weight=class weights): balanced = scikit-learn's rule
        n_samples / (n_classes · count(class)) on the training labels, i.e. Σ w[y]·CE / Σ w[y]
      torch.optim.AdamW(lr, betas (0.9, 0.999), eps 1e-8), weight decay --weight-decay on
        every parameter except biases and LayerNorm weights (name contains "bias" or
        "LayerNorm"); get_linear_schedule_with_warmup: warm-up over
        ceil(warmup_ratio · total_steps) steps (HF Trainer's rule, and Bedside's; --warmup-rounding
        round for round half away from zero), then linear decay to 0,
        total_steps = epochs · ceil(n_train / batch_size); the first step runs at lr 0 when
        there is a warm-up, as in transformers and Bedside
      clip_grad_norm_(parameters, 1.0) before every optimizer step
      after each epoch: validation in eval mode; the weights (a state_dict copy) with the best
        validation macro-F1 are kept (the first best wins a tie); at the end the best weights
        are scored on test: macro-F1, accuracy, ROC-AUC macro (one-vs-rest, softmax).
    Writes OUT/pytorch_finetune.jsonl, one line per seed: seed, epochs, lr, batch_size,
    max_seq_len, best_epoch (1-based), val_macro_f1, macro_f1, accuracy, roc_auc_macro,
    seconds, train_samples_per_s (training steps only, evaluation excluded), …

Scoring notes longer than --max-seq-len (validation and test, both parts): Bedside scores a
long note as the mean of its windows' probabilities (windows of max_seq_len − 2 text tokens,
consecutive windows sharing --stride tokens, default max_seq_len / 8); training and the
probe's training features always use the first window. --long-notes windows (the default)
does the same; --long-notes truncate scores the first window only. The JSON lines say which
and how many test notes had more than one window.

Metrics follow Bedside's (and scikit-learn's): macro-F1 over all K training labels
(f1_score(labels=range(K), zero_division=0)); ROC-AUC is roc_auc_score(multi_class="ovr",
average="macro") when every label occurs in the split, else the mean of the per-label
one-vs-rest AUCs that are defined. Validation and test rows whose label training never saw
are dropped (and counted), as Bedside does.

Usage:
  python3 scripts/compare/reference.py --data DIR --model MODEL_DIR --out OUT_DIR
      [--seeds 1,2,3] [--epochs 3] [--lr 1e-4] [--batch-size 16] [--max-seq-len 64]
      [--warmup-ratio 0.1] [--weight-decay 0.01] [--class-weights balanced|none]
      [--features cls,mean,pooler] [--c 1.0|auto] [--threads 2] [--skip-finetune] [--skip-probe]
      [--long-notes windows|truncate] [--stride N] [--warmup-rounding ceil|round] [--c-grid 0.001,…,1000]
"""
import argparse
import csv
import json
import math
import os
import resource
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertForSequenceClassification, get_linear_schedule_with_warmup

# Bedside's PROBE_C_GRID (trainer/src/train/config.rs).
C_GRID = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
EVAL_BATCH = 64


def parse_args():
    p = argparse.ArgumentParser(description="PyTorch/scikit-learn peer of a Bedside run")
    p.add_argument("--data", required=True, help="directory with train.csv, val.csv, test.csv (id,text,label)")
    p.add_argument("--model", required=True, help="Hugging Face BERT directory")
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--warmup-rounding", choices=["round", "ceil"], default="ceil")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--class-weights", choices=["balanced", "none"], default="balanced")
    p.add_argument("--features", default="cls,mean,pooler")
    p.add_argument("--c", default="1.0", help="LogisticRegression C, or 'auto' (grid by validation macro-F1)")
    p.add_argument("--c-grid", default=",".join(f"{c:g}" for c in C_GRID),
                   help="the Cs --c auto tries (default 0.001,0.01,0.1,1,10,100)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--long-notes", choices=["windows", "truncate"], default="windows",
                   help="how validation/test notes over max-seq-len are scored (Bedside: windows)")
    p.add_argument("--stride", type=int, default=None, help="tokens shared by windows (default max-seq-len/8)")
    p.add_argument("--skip-finetune", action="store_true")
    p.add_argument("--skip-probe", action="store_true")
    a = p.parse_args()
    a.seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    a.features = [f.strip() for f in a.features.split(",") if f.strip()]
    for f in a.features:
        if f not in ("cls", "mean", "pooler"):
            p.error(f"--features: unknown kind {f!r} (cls, mean, pooler)")
    a.c_grid = sorted(float(c) for c in a.c_grid.split(",") if c.strip())
    if a.c != "auto":
        try:
            a.c = float(a.c)
        except ValueError:
            p.error("--c takes a number or 'auto'")
    return a


# ---- data -------------------------------------------------------------------------------------

def read_split(path):
    """Rows (id, text, label) of a CSV; rows without text or label are reported and skipped."""
    rows, bad = [], 0
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        for col in ("text", "label"):
            if col not in (reader.fieldnames or []):
                sys.exit(f"{path}: no {col!r} column")
        for i, r in enumerate(reader):
            text, label = (r.get("text") or "").strip(), (r.get("label") or "").strip()
            if not text or not label:
                bad += 1
                continue
            rows.append((r.get("id") or str(i), r["text"], label))
    if bad:
        print(f"{path}: {bad} rows without text or label skipped")
    return rows


class Windows:
    """Bedside's cutting of a note: [CLS] up to max_len − 2 text tokens [SEP]; consecutive
    windows share `stride` tokens (wasm/src/pipeline/window.rs)."""

    def __init__(self, tokenizer, max_len, stride):
        self.tok = tokenizer
        self.content = max_len - 2
        self.step = self.content - stride
        if self.content < 1 or self.step < 1:
            sys.exit(f"max_seq_len {max_len} with stride {stride} leaves no room for text")
        self.cls, self.sep, self.pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id

    def token_ids(self, texts):
        return self.tok(list(texts), add_special_tokens=False)["input_ids"]

    def first(self, ids):
        return [self.cls] + ids[: self.content] + [self.sep]

    def all(self, ids):
        out, first = [], 0
        while True:
            last = min(first + self.content, len(ids))
            out.append([self.cls] + ids[first:last] + [self.sep])
            if last >= len(ids):
                return out
            first += self.step

    def notes(self, texts, windows):
        """(flat list of windows, note index of each window)."""
        flat, owner = [], []
        for n, ids in enumerate(self.token_ids(texts)):
            ws = self.all(ids) if windows else [self.first(ids)]
            flat.extend(ws)
            owner.extend([n] * len(ws))
        return flat, np.array(owner)


def padded(batch, pad_id):
    longest = max(len(ids) for ids in batch)
    ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), longest), dtype=torch.long)
    for i, row in enumerate(batch):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def per_note(window_probs, owner, n_notes):
    """Mean of the windows' probability rows per note (Bedside's Aggregation::Mean)."""
    sums = np.zeros((n_notes, window_probs.shape[1]))
    np.add.at(sums, owner, window_probs)
    counts = np.bincount(owner, minlength=n_notes)[:, None]
    return sums / counts


# ---- metrics ----------------------------------------------------------------------------------

def roc_auc_macro(y, proba, k):
    proba = proba / proba.sum(axis=1, keepdims=True)
    present = set(int(c) for c in np.unique(y))
    if len(present) == k and k > 2:
        return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=list(range(k))))
    aucs = [roc_auc_score(y == c, proba[:, c]) for c in range(k) if 0 < np.sum(y == c) < len(y)]
    return float(np.mean(aucs)) if aucs else None


def scores(y, proba, k):
    pred = proba.argmax(axis=1)
    return {
        "macro_f1": float(f1_score(y, pred, labels=list(range(k)), average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "roc_auc_macro": roc_auc_macro(y, proba, k),
    }


# ---- (a) probe --------------------------------------------------------------------------------

@torch.no_grad()
def encode(model, windows, pad_id, kinds):
    out = {k: [] for k in kinds}
    for i in range(0, len(windows), EVAL_BATCH):
        ids, mask = padded(windows[i: i + EVAL_BATCH], pad_id)
        o = model(input_ids=ids, attention_mask=mask)
        h = o.last_hidden_state
        if "cls" in out:
            out["cls"].append(h[:, 0].numpy())
        if "mean" in out:
            m = mask.unsqueeze(-1).to(h.dtype)
            out["mean"].append(((h * m).sum(1) / m.sum(1).clamp(min=1e-9)).numpy())
        if "pooler" in out:
            out["pooler"].append(o.pooler_output.numpy())
    return {k: np.concatenate(v).astype(np.float64) for k, v in out.items()}


def fit_lr(x, y, c):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf = LogisticRegression(C=c, max_iter=1000).fit(x, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return clf, converged


def probe(a, data, labels, cutter, out_dir):
    k = len(labels)
    t0 = time.perf_counter()
    model, info = AutoModel.from_pretrained(a.model, output_loading_info=True)
    model.eval()
    kinds = list(a.features)
    if "pooler" in kinds and any("pooler" in m for m in info.get("missing_keys", [])):
        print("probe: the checkpoint has no pooler weights: 'pooler' features skipped")
        kinds.remove("pooler")
    windows = a.long_notes == "windows"
    train_w, _ = cutter.notes([r[1] for r in data["train"]], False)
    val_w, val_owner = cutter.notes([r[1] for r in data["val"]], windows)
    test_w, test_owner = cutter.notes([r[1] for r in data["test"]], windows)
    feats = {s: encode(model, w, cutter.pad, kinds) for s, w in (("train", train_w), ("val", val_w), ("test", test_w))}
    encode_seconds = time.perf_counter() - t0
    print(f"probe: encoded {len(train_w)} + {len(val_w)} + {len(test_w)} windows in {encode_seconds:.1f}s")
    y = {s: np.array([labels.index(r[2]) for r in data[s]]) for s in data}
    multi = int(np.sum(np.bincount(test_owner, minlength=len(data["test"])) > 1))

    lines = []
    with open(os.path.join(out_dir, "sklearn_probe.jsonl"), "w", encoding="utf-8") as out:
        for kind in kinds:
            t1 = time.perf_counter()
            xtr = feats["train"][kind]

            def proba_of(clf, split, owner):
                return per_note(clf.predict_proba(feats[split][kind]), owner, len(data[split]))

            grid = None
            if a.c == "auto":
                grid, best = [], None
                for c in a.c_grid:  # ascending: a tie keeps the smaller C
                    clf, conv = fit_lr(xtr, y["train"], c)
                    v = scores(y["val"], proba_of(clf, "val", val_owner), k)["macro_f1"]
                    grid.append({"c": c, "val_macro_f1": v, "converged": conv})
                    if best is None or v > best[0] + 1e-12:  # float noise is a tie too
                        best = (v, c, clf, conv)
                _, c, clf, converged = best
            else:
                c = a.c
                clf, converged = fit_lr(xtr, y["train"], c)
            val = scores(y["val"], proba_of(clf, "val", val_owner), k)
            proba = proba_of(clf, "test", test_owner)
            test = scores(y["test"], proba, k)
            fit_seconds = time.perf_counter() - t1
            line = {"features": kind, "c": c, "n_test": len(data["test"]), **test,
                    "seconds": round(encode_seconds + fit_seconds, 3),
                    "encode_seconds": round(encode_seconds, 3), "fit_seconds": round(fit_seconds, 3),
                    "val_macro_f1": val["macro_f1"], "converged": converged, "n_iter": int(np.max(clf.n_iter_)),
                    "max_seq_len": a.max_seq_len, "long_notes": a.long_notes, "test_notes_multi_window": multi}
            if grid is not None:
                line["c_grid"] = grid
            out.write(json.dumps(line) + "\n")
            out.flush()
            lines.append(line)
            pred = proba.argmax(axis=1)
            with open(os.path.join(out_dir, f"sklearn_probe_{kind}_predictions.csv"), "w", newline="",
                      encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["id", "label"])
                w.writerows((r[0], labels[p]) for r, p in zip(data["test"], pred))
            chosen = f"C={c:g}" + (" (auto: " + ", ".join(f"{g['c']:g}:{g['val_macro_f1']:.3f}" for g in grid) + ")"
                                   if grid else "")
            print(f"probe {kind:<6} {chosen}: test macro-F1 {test['macro_f1']:.4f} acc {test['accuracy']:.4f} "
                  f"AUROC {fmt(test['roc_auc_macro'])} (val macro-F1 {val['macro_f1']:.4f}, "
                  f"{'converged' if converged else 'NOT converged'}, {fit_seconds:.1f}s)")
    return lines


# ---- (b) fine-tuning --------------------------------------------------------------------------

@torch.no_grad()
def predict(model, windows, owner, n_notes, pad_id):
    model.eval()
    rows = []
    for i in range(0, len(windows), EVAL_BATCH):
        ids, mask = padded(windows[i: i + EVAL_BATCH], pad_id)
        rows.append(torch.softmax(model(input_ids=ids, attention_mask=mask).logits, dim=-1).double().numpy())
    return per_note(np.concatenate(rows), owner, n_notes)


def finetune(a, data, labels, cutter, out_dir):
    k = len(labels)
    windows = a.long_notes == "windows"
    train_ids = [cutter.first(ids) for ids in cutter.token_ids([r[1] for r in data["train"]])]
    val_w, val_owner = cutter.notes([r[1] for r in data["val"]], windows)
    test_w, test_owner = cutter.notes([r[1] for r in data["test"]], windows)
    multi = int(np.sum(np.bincount(test_owner, minlength=len(data["test"])) > 1))
    y = {s: np.array([labels.index(r[2]) for r in data[s]]) for s in data}
    y_train = torch.tensor(y["train"], dtype=torch.long)
    n = len(train_ids)
    counts = np.bincount(y["train"], minlength=k)
    weights = None
    if a.class_weights == "balanced":
        weights = torch.tensor([n / (k * c) if c else 0.0 for c in counts], dtype=torch.float32)
    steps_per_epoch = math.ceil(n / a.batch_size)
    total_steps = a.epochs * steps_per_epoch
    raw = a.warmup_ratio * total_steps
    warmup = math.ceil(raw) if a.warmup_rounding == "ceil" else int(math.floor(raw + 0.5))
    print(f"fine-tune: {n} training notes, {k} labels, {steps_per_epoch} steps/epoch, {total_steps} steps, "
          f"warm-up {warmup}, class weights {a.class_weights}")

    lines = []
    with open(os.path.join(out_dir, "pytorch_finetune.jsonl"), "w", encoding="utf-8") as out:
        for seed in a.seeds:
            started = time.perf_counter()
            torch.manual_seed(seed)
            model = BertForSequenceClassification.from_pretrained(a.model, num_labels=k)
            decay = [p for name, p in model.named_parameters() if not ("bias" in name or "LayerNorm" in name)]
            no_decay = [p for name, p in model.named_parameters() if "bias" in name or "LayerNorm" in name]
            optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                                           {"params": no_decay, "weight_decay": 0.0}],
                                          lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
            scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
            loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
            order_rng = torch.Generator().manual_seed(seed)
            best, best_state, best_epoch, history = None, None, None, []
            train_seconds, seen = 0.0, 0
            for epoch in range(1, a.epochs + 1):
                model.train()
                order = torch.randperm(n, generator=order_rng).tolist()
                t0 = time.perf_counter()
                loss_sum = 0.0
                for start in range(0, n, a.batch_size):
                    idx = order[start: start + a.batch_size]
                    ids, mask = padded([train_ids[i] for i in idx], cutter.pad)
                    logits = model(input_ids=ids, attention_mask=mask).logits
                    loss = loss_fn(logits, y_train[idx])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    scheduler.step()
                    loss_sum += loss.item() * len(idx)
                    seen += len(idx)
                train_seconds += time.perf_counter() - t0
                val = scores(y["val"], predict(model, val_w, val_owner, len(data["val"]), cutter.pad), k)
                history.append({"epoch": epoch, "train_loss": loss_sum / n, **{f"val_{m}": v for m, v in val.items()}})
                improved = best is None or val["macro_f1"] > best
                if improved:
                    best, best_epoch = val["macro_f1"], epoch
                    best_state = {name: t.detach().clone() for name, t in model.state_dict().items()}
                print(f"seed {seed} epoch {epoch}: train loss {loss_sum / n:.4f}, val macro-F1 {val['macro_f1']:.4f}"
                      f"{' (best)' if improved else ''}")
            model.load_state_dict(best_state)
            test = scores(y["test"], predict(model, test_w, test_owner, len(data["test"]), cutter.pad), k)
            line = {"seed": seed, "epochs": a.epochs, "lr": a.lr, "batch_size": a.batch_size,
                    "max_seq_len": a.max_seq_len, "best_epoch": best_epoch, "val_macro_f1": best, **test,
                    "seconds": round(time.perf_counter() - started, 3),
                    "train_samples_per_s": round(seen / max(train_seconds, 1e-9), 3),
                    "n_test": len(data["test"]), "warmup_steps": warmup, "total_steps": total_steps,
                    "weight_decay": a.weight_decay, "class_weights": a.class_weights, "threads": a.threads,
                    "long_notes": a.long_notes, "test_notes_multi_window": multi, "history": history,
                    # The process's peak so far (probes and earlier seeds included).
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
            out.write(json.dumps(line) + "\n")
            out.flush()
            lines.append(line)
            print(f"seed {seed}: best epoch {best_epoch}, test macro-F1 {test['macro_f1']:.4f} "
                  f"acc {test['accuracy']:.4f} AUROC {fmt(test['roc_auc_macro'])}, "
                  f"{line['train_samples_per_s']:.1f} samples/s, {line['seconds']:.0f}s")
    return lines


def fmt(v):
    return "n/a" if v is None else f"{v:.4f}"


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    data = {s: read_split(os.path.join(a.data, f"{s}.csv")) for s in ("train", "val", "test")}
    labels = sorted({r[2] for r in data["train"]})
    if len(labels) < 2:
        sys.exit("training data has fewer than two labels")
    for s in ("val", "test"):
        kept = [r for r in data[s] if r[2] in labels]
        if len(kept) < len(data[s]):
            print(f"{s}: {len(data[s]) - len(kept)} rows with labels training never saw dropped")
        data[s] = kept
        if not kept:
            sys.exit(f"{s}: no rows left")
    tokenizer = AutoTokenizer.from_pretrained(a.model)
    tokenizer.model_max_length = 10 ** 9  # we cut windows ourselves; silences the length warning
    max_pos = AutoConfig.from_pretrained(a.model).max_position_embeddings
    if a.max_seq_len > max_pos:
        print(f"max_seq_len {a.max_seq_len} capped at the model's {max_pos} positions")
        a.max_seq_len = max_pos
    stride = a.stride if a.stride is not None else a.max_seq_len // 8
    cutter = Windows(tokenizer, a.max_seq_len, stride)
    print(f"data {a.data}: {', '.join(f'{s} {len(data[s])}' for s in data)}; {len(labels)} labels; "
          f"model {a.model}; max_seq_len {a.max_seq_len}, long notes: {a.long_notes} (stride {stride}); "
          f"{a.threads} threads; torch {torch.__version__}")
    if not a.skip_probe:
        probe(a, data, labels, cutter, a.out)
    if not a.skip_finetune:
        finetune(a, data, labels, cutter, a.out)


if __name__ == "__main__":
    main()
