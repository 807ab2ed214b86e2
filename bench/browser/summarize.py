"""Merges the browser and native results into target/bench/browser.json (the rows) and
target/bench/browser-details.json (passes, loads, sizes, native references), and prints Markdown tables:
Chromium on 1 thread (with the native references), Chromium on 2 threads, Firefox on 1 and 2 threads.

    python summarize.py RAW_BROWSER_JSON NATIVE_DIR OUT_DIR MODEL_DIR

Per case and dtype: each pass's median (ms per call) is taken, then the median over the passes, divided
by the batch size (ms per sentence). ratio = transformersjs_ms / bedside_ms (above 1: Bedside is faster).
bedside_min_cosine: the lowest cosine between Bedside's embeddings of the case's texts (last pass) and
sentence-transformers'. 2-thread rows: Bedside through the widget (its worker), on 2 threads and, in the
same page, on 1 (bedside_1thread_ms); bedside_2t_over_1t = bedside_ms / bedside_1thread_ms (below 1:
the second thread helps); transformers.js with numThreads = 2.
"""
import datetime
import gzip
import json
import os
import statistics
import subprocess
import sys

import numpy as np

CASES = ["a_b1_22tok", "b_b1_128tok", "c_b8_128tok", "d_b1_512tok"]
LABEL = {"a_b1_22tok": "1 × 22 tokens", "b_b1_128tok": "1 × 128 tokens", "c_b8_128tok": "8 × 128 tokens",
         "d_b1_512tok": "1 × 512 tokens"}
TJS = {"f32": "fp32", "q8_0": "q8"}


def min_cosine(vectors, ref):
    a, b = np.array(vectors, dtype=np.float64), np.array(ref, dtype=np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return round(float((a * b).sum(1).min()), 6)


# The x86 SIMD flags the wasm engine can lower wasm SIMD (and relaxed SIMD's dot products) to.
SIMD_FLAGS = ["avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni"]


def cpu_info(cpuinfo="/proc/cpuinfo"):
    """{"model": the first "model name", "simd_flags": those of SIMD_FLAGS the first "flags" line has}."""
    model, flags = None, []
    try:
        for line in open(cpuinfo):
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                have = set(value.split())
                flags = [f for f in SIMD_FLAGS if f in have]
    except OSError:
        pass
    return {"model": model, "simd_flags": flags}


def cpu_line(cpu):
    return f"CPU: {cpu['model']}; SIMD flags: {' '.join(cpu['simd_flags']) or 'none of ' + ', '.join(SIMD_FLAGS)}"


def size(path):
    return os.path.getsize(path) if os.path.exists(path) else None


def gz(path):
    return len(gzip.compress(open(path, "rb").read(), 9)) if os.path.exists(path) else None


def main(raw_path, native_dir, out_dir, model_dir):
    raw = json.load(open(raw_path))
    native = json.load(open(os.path.join(native_dir, "native.json")))
    ref = json.load(open(os.path.join(native_dir, "st_ref.json")))
    root = os.path.dirname(os.path.dirname(os.path.abspath(out_dir)))
    firefox = raw.get("firefox", {})
    rows, details = [], {"cases": {}, "passes": len(raw["passes"]), "firefox_passes": len(firefox.get("passes", [])),
                         "threads": {}}
    # keys of the raw passes: the dtype on the build the page picks, and "q8_0-simd128" (the plain build)
    for key in ("f32", "q8_0", "q8_0-simd128"):
        quant = key.split("-")[0]
        for case in CASES:
            runs = [p[key]["cases"][case] for p in raw["passes"] if case in p.get(key, {}).get("cases", {})]
            if not runs:
                continue
            build = [p[key].get("bedside_wasm_build") for p in raw["passes"] if key in p][-1]
            n = runs[-1]["batch"]
            b = statistics.median(r["bedside_ms"] for r in runs) / n
            t = statistics.median(r["tjs_ms"] for r in runs) / n
            rows.append({"case": case, "dtype": quant, "wasm_build": build, "threads": 1, "browser": "chromium",
                         "api": "direct", "bedside_ms": round(b, 2),
                         "transformersjs_ms": round(t, 2), "ratio": round(t / b, 2),
                         "bedside_min_cosine": min_cosine(runs[-1]["bedside_embeddings"], ref[case])})
            ort = native["configs"][f"onnxruntime-{TJS[quant]}"][case]
            cli = native["configs"][f"bedside-cli-{quant}"][case]
            details["cases"][f"{key}/{case}"] = {
                "batch": n, "bedside_tokens": runs[-1]["bedside_tokens"], "tjs_input_dims": runs[-1]["tjs_input_dims"],
                "bedside_pass_medians_ms": [r["bedside_ms"] for r in runs], "tjs_pass_medians_ms": [r["tjs_ms"] for r in runs],
                "bedside_tokenize_ms": runs[-1]["bedside_tokenize_ms"], "tjs_tokenize_ms": runs[-1]["tjs_tokenize_ms"],
                "tjs_min_cosine": min_cosine(runs[-1]["tjs_embeddings"], ref[case]),
                "onnxruntime_native_ms": ort["ms_per_sentence"], "onnxruntime_native_min_cosine": ort["min_cosine"],
                "bedside_cli_native_ms": cli["ms_per_sentence"], "bedside_cli_min_cosine": cli["min_cosine"],
                "sentence_transformers_ms": native["configs"]["sentence-transformers"][case]["ms_per_sentence"],
                "bedside_wasm_over_onnxruntime_native": round(b / ort["ms_per_sentence"], 2),
                "transformersjs_over_onnxruntime_native": round(t / ort["ms_per_sentence"], 2),
            }
    # 2 threads (Chromium and Firefox) and Firefox on 1 thread
    for browser, passes in (("chromium", raw["passes"]), ("firefox", firefox.get("passes", []))):
        keys = ("f32-2t", "q8_0-2t") if browser == "chromium" else ("f32", "q8_0", "f32-2t", "q8_0-2t")
        for key in keys:
            quant = key.split("-")[0]
            threaded = key.endswith("-2t")
            for case in CASES:
                runs = [p[key]["cases"][case] for p in passes if case in p.get(key, {}).get("cases", {})]
                if not runs:
                    continue
                last = [p[key] for p in passes if "cases" in p.get(key, {})][-1]
                n = runs[-1]["batch"]
                b = statistics.median(r["bedside_ms"] for r in runs) / n
                t = statistics.median(r["tjs_ms"] for r in runs) / n
                row = {"case": case, "dtype": quant, "wasm_build": last.get("bedside_wasm_build"),
                       "threads": last.get("bedside_threads", 1) if threaded else 1, "browser": browser,
                       "api": "widget" if threaded else "direct", "bedside_ms": round(b, 2),
                       "transformersjs_ms": round(t, 2), "ratio": round(t / b, 2),
                       "bedside_min_cosine": min_cosine(runs[-1]["bedside_embeddings"], ref[case])}
                d = {"batch": n, "tjs_input_dims": runs[-1]["tjs_input_dims"],
                     "bedside_pass_medians_ms": [r["bedside_ms"] for r in runs],
                     "tjs_pass_medians_ms": [r["tjs_ms"] for r in runs],
                     "tjs_min_cosine": min_cosine(runs[-1]["tjs_embeddings"], ref[case])}
                if threaded:
                    b1 = statistics.median(r["bedside_1t_ms"] for r in runs) / n
                    row["bedside_1thread_ms"] = round(b1, 2)
                    row["bedside_2t_over_1t"] = round(b / b1, 2)
                    row["tjs_threads"] = last.get("tjs_numThreads")
                    d["bedside_1t_pass_medians_ms"] = [r["bedside_1t_ms"] for r in runs]
                    d["bedside_1t_min_cosine"] = min_cosine(runs[-1]["bedside_1t_embeddings"], ref[case])
                    d["tjs_pthread_workers"] = last.get("tjs_pthread_workers")
                    d["cross_origin_isolated"] = last.get("crossOriginIsolated")
                else:
                    d["bedside_tokens"] = runs[-1]["bedside_tokens"]
                rows.append(row)
                details["threads" if threaded or browser != "chromium" else "cases"][f"{browser}/{key}/{case}"] = d
    wasm = os.path.join(root, "www", "pkg", "bedside_runtime_bg.wasm")
    wasm_relaxed = os.path.join(root, "www", "pkg", "bedside_runtime_relaxed_bg.wasm")
    ort_wasm = os.path.join("/tmp", "bedside-bench", "node", "node_modules", "onnxruntime-web", "dist",
                            "ort-wasm-simd-threaded.asyncify.wasm")
    details["sizes_bytes"] = {
        "bedside_wasm": size(wasm), "bedside_wasm_gzip": gz(wasm),
        "bedside_wasm_relaxed": size(wasm_relaxed), "bedside_wasm_relaxed_gzip": gz(wasm_relaxed),
        "onnxruntime_web_wasm": size(ort_wasm), "onnxruntime_web_wasm_gzip": gz(ort_wasm),
        "bundle_f32": size(os.path.join(out_dir, "browser", "minilm-f32.gguf")),
        "bundle_q8_0": size(os.path.join(out_dir, "browser", "minilm-q8_0.gguf")),
        "onnx_fp32": size(os.path.join(model_dir, "onnx", "model.onnx")),
        "onnx_q8": size(os.path.join(model_dir, "onnx", "model_quantized.onnx")),
        "tokenizer_json": size(os.path.join(model_dir, "tokenizer.json")),
    }
    details["loads"] = [{k: v for k, v in l.items() if k != "console"} for l in raw.get("loads", [])]
    details["native"] = native
    last = (raw["passes"] or [{}])[-1].get("f32", {})
    cpu = cpu_info()
    details["machine"] = {"cpu": cpu["model"], "cpu_simd_flags": cpu["simd_flags"], "cores": os.cpu_count(), "date": datetime.date.today().isoformat(),
                          "chromium": raw.get("chromium_version"), "user_agent": last.get("userAgent"),
                          "transformers.js": last.get("transformers_version"), "onnxruntime-web": last.get("ort_versions"),
                          "cross_origin_isolated": last.get("crossOriginIsolated"),
                          "tjs_numThreads": last.get("tjs_numThreads"),
                          "firefox": (firefox.get("version") or "").replace("firefox/", "") or None, "firefox_user_agent": next(
                              (p[k].get("userAgent") for p in firefox.get("passes", []) for k in p if "userAgent" in p[k]), None)}
    details["errors"] = {f"pass{i + 1}/{q}": p[q]["error"] for i, p in enumerate(raw["passes"]) for q in p if "error" in p[q]}
    details["errors"].update({f"firefox/pass{i + 1}/{q}": p[q]["error"] for i, p in enumerate(firefox.get("passes", []))
                              for q in p if "error" in p[q]})
    if "error" in firefox:
        details["errors"]["firefox"] = firefox["error"]
    try:
        details["git"] = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                                        text=True).stdout.strip() + " (+ working tree)"
    except OSError:
        pass
    for r in rows:
        r["cpu"], r["cpu_simd_flags"] = cpu["model"], cpu["simd_flags"]
    json.dump(rows, open(os.path.join(out_dir, "browser.json"), "w"), indent=1)
    json.dump(details, open(os.path.join(out_dir, "browser-details.json"), "w"), indent=1)

    m = details["machine"]
    print(f"\n{m['date']}, {m['cpu']} ({m['cores']} cores), Chromium {m['chromium']}, 1 thread, "
          f"median of {details['passes']} passes; ms per sentence")
    print(cpu_line(cpu) + "\n")
    print("| case | Bedside | Bedside wasm ms | transformers.js | transformers.js ms | ratio | Bedside min cos "
          "| onnxruntime native ms | Bedside wasm / ort native | `bedside embed` native ms |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in [r for r in rows if r["browser"] == "chromium" and r["api"] == "direct"]:
        key = r["dtype"] + ("-simd128" if r["dtype"] == "q8_0" and r["wasm_build"] == "simd128" else "")
        d = details["cases"][f"{key}/{r['case']}"]
        print(f"| {LABEL[r['case']]} | {r['dtype']} ({r['wasm_build']}) | {r['bedside_ms']} | {TJS[r['dtype']]} | {r['transformersjs_ms']} "
              f"| **{r['ratio']}** | {r['bedside_min_cosine']} | {d['onnxruntime_native_ms']} "
              f"| {d['bedside_wasm_over_onnxruntime_native']} | {d['bedside_cli_native_ms']} |")
    two = [r for r in rows if r["browser"] == "chromium" and r["api"] == "widget"]
    if two:
        print(f"\nChromium {m['chromium']}, 2 threads, cross-origin isolated page: Bedside through the widget (its worker) on 2 "
              f"threads and on 1 in the same page, transformers.js numThreads = 2; median of {details['passes']} passes; "
              "ms per sentence. 2t / 1t: Bedside's 2-thread time over its 1-thread time (goal ≤ 0.6 on 8 × 128 and 512 tokens)")
        print(cpu_line(cpu) + "\n")
        threads_table(two)
    fx1 = [r for r in rows if r["browser"] == "firefox" and r["api"] == "direct"]
    fx2 = [r for r in rows if r["browser"] == "firefox" and r["api"] == "widget"]
    if fx1:
        print(f"\nFirefox {m['firefox']}, 1 thread, median of {details['firefox_passes']} passes; ms per sentence "
              "(goal: ratio ≥ 1.5)")
        print(cpu_line(cpu) + "\n")
        print("| case | Bedside | Bedside wasm ms | transformers.js | transformers.js ms | ratio | Bedside min cos |")
        print("|---|---|---:|---|---:|---:|---:|")
        for r in fx1:
            print(f"| {LABEL[r['case']]} | {r['dtype']} ({r['wasm_build']}) | {r['bedside_ms']} | {TJS[r['dtype']]} "
                  f"| {r['transformersjs_ms']} | **{r['ratio']}** | {r['bedside_min_cosine']} |")
    if fx2:
        print(f"\nFirefox {m['firefox']}, 2 threads, cross-origin isolated page (as the Chromium table above); "
              f"median of {details['firefox_passes']} passes; ms per sentence")
        print(cpu_line(cpu) + "\n")
        threads_table(fx2)
    elif details["firefox_passes"]:
        print("\nFirefox, 2 threads: no result (see errors)")
    s = details["sizes_bytes"]
    print(f"\nsizes: {json.dumps(s)}")
    for l in details["loads"]:
        print(f"load {l['side']} {l.get('quant') or l.get('dtype')}: cold {l.get('cold', {}).get('load_ms')} ms, "
              f"cached {l.get('cached', {}).get('load_ms')} ms")
    if details["errors"]:
        print("errors:", json.dumps(details["errors"])[:2000])


def threads_table(rows):
    print("| case | Bedside | Bedside 1 thread ms | Bedside 2 threads ms | 2t / 1t | transformers.js | "
          "transformers.js 2 threads ms | ratio | Bedside min cos |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {LABEL[r['case']]} | {r['dtype']} ({r['wasm_build']}) | {r['bedside_1thread_ms']} | {r['bedside_ms']} "
              f"| **{r['bedside_2t_over_1t']}** | {TJS[r['dtype']]} | {r['transformersjs_ms']} | **{r['ratio']}** "
              f"| {r['bedside_min_cosine']} |")


if __name__ == "__main__":
    main(*sys.argv[1:5])
