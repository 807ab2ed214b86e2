#!/usr/bin/env bash
# The one command to run on a GPU machine (README, "On a GPU"): trains the tiny fixture model
# and MiniLM for a few steps on CUDA and on the CPU from the same seed with dropout off (CPU and
# CUDA draw dropout masks from different generators), in f32 and in bf16 (the CPU's bf16 is the
# same rounding, emulated), compares the loss trajectories per precision, then runs
# the training-throughput bench on CUDA (f32 and bf16, PyTorch beside it) and the WebGPU bench,
# and writes one JSON.
#
#   bash .gpu/scripts/gpu/check.sh [OUT]     # in the folder scripts/gpu/build.sh made; OUT: check.json there
#   bash scripts/gpu/check.sh [OUT]          # in the repository: target/release/bedside, OUT .gpu/check.json
#
# Environment (defaults in brackets):
#   BEDSIDE     the CLI                                     [./bedside in .gpu/, else target/release/bedside]
#   BENCH       the training bench                          [./train_bench in .gpu/, else target/release/examples/train_bench]
#   WEBGPU_BENCH  the WebGPU bench (cargo bench --bench webgpu)  [./webgpu_bench in .gpu/, else none]
#   DEVICES     devices compared                            [cpu,cuda]
#   MODELS      tiny (models/fixtures/tiny-safetensors), minilm ($MINILM_DIR)  [tiny,minilm]
#   MINILM_DIR  MiniLM's directory                          [models/minilm, else models/minilm.sh's answer]
#   PRECISIONS  matmul precisions, each compared on its own [f32,bf16]
#   EPOCHS      epochs over 96 toy notes, 8 per batch       [2]
#   TOLERANCE   largest relative loss difference allowed    [0.01: CUDA f32 matmuls may use TF32]
#   TOLERANCE_BF16  the same for bf16                       [0.03: products summed in another order, then rounded to 8 bits]
#   PYTHON      torch + transformers for the bench's PyTorch side  [python3]
#   SKIP_BENCH=1  trajectories only (what the CPU-only test runs)
# Exit: 0 when every device's trajectory matches the first device's, 1 when one differs.
# check.json: models.<model>.<precision>.<device> = {losses, largest_relative_difference, matches}.
set -uo pipefail
cd "$(dirname "$0")/../.."

if [ -x ./bedside ]; then   # the .gpu/ folder
    OUT=${1:-check.json}; BEDSIDE=${BEDSIDE:-./bedside}; BENCH=${BENCH:-./train_bench}; WEBGPU_BENCH=${WEBGPU_BENCH:-./webgpu_bench}
else
    OUT=${1:-.gpu/check.json}; BEDSIDE=${BEDSIDE:-target/release/bedside}; BENCH=${BENCH:-target/release/examples/train_bench}
    WEBGPU_BENCH=${WEBGPU_BENCH:-}
fi
DEVICES=${DEVICES:-cpu,cuda}
MODELS=${MODELS:-tiny,minilm}
EPOCHS=${EPOCHS:-2}
PRECISIONS=${PRECISIONS:-f32,bf16}
TOLERANCE=${TOLERANCE:-0.01}
TOLERANCE_BF16=${TOLERANCE_BF16:-0.03}
PYTHON=${PYTHON:-python3}
if [ -d /usr/local/cuda/lib64 ]; then
    export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$OUT")"

# 96 toy notes, 3 labels, no note text from anywhere.
python3 - "$work/notes.csv" <<'PY'
import csv, sys
words = {"cardiology": ["chest", "pain", "heart", "murmur"], "endocrinology": ["diabetes", "glucose", "insulin", "thyroid"],
         "respiratory": ["cough", "fever", "asthma", "wheeze"]}
filler = ["patient", "denies", "history", "daily", "blood", "pressure", "reports", "since"]
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "text", "label"])
    for c, (label, ws) in enumerate(words.items()):
        for i in range(32):
            n = 3 + (i * 7 + c) % 9
            w.writerow([f"{label}{i}", " ".join(ws[(i + j) % 4] if j % 2 == 0 else filler[(i + j) % 8] for j in range(n)), label])
PY

minilm() { echo "${MINILM_DIR:-$([ -d models/minilm ] && echo models/minilm || bash models/minilm.sh)}"; }

for model in ${MODELS//,/ }; do
    case $model in
        tiny) base=models/fixtures/tiny-safetensors; lr=1e-3 ;;
        minilm) base=$(minilm); lr=5e-5 ;;
        *) echo "unknown model $model: use tiny or minilm" >&2; exit 2 ;;
    esac
    for precision in ${PRECISIONS//,/ }; do
        i=0
        for device in ${DEVICES//,/ }; do
            i=$((i + 1))
            run=$work/$model-$precision-$i-$device
            if ! "$BEDSIDE" train classify --base "$base" --train "$work/notes.csv" --out "$run" --device "$device" \
                --precision "$precision" --epochs "$EPOCHS" --batch-size 8 --lr "$lr" --dropout 0 --max-seq-len 32 \
                --seed 7 --val-ratio 0.125 --test-ratio 0.125 --no-baseline-probe >"$run.stdout" 2>"$run.stderr"; then
                tail -n 1 "$run.stderr" >"$run.failed"
            fi
        done
    done
done

RESULTS=$work/bench.jsonl
if [ "${SKIP_BENCH:-0}" != 1 ]; then
    RESULTS=$RESULTS PYTHON=$PYTHON bash scripts/bench/train_throughput.sh base cuda f32,bf16 10 "$BENCH" >"$work/bench.txt" 2>&1
    # The browser runtime's GPU path through Vulkan: MiniLM and BERT-base's shape, WebGPU beside the CPU.
    if [ -x "$WEBGPU_BENCH" ]; then
        BEDSIDE_MINILM_DIR=$(minilm) BENCH_BASE=1 BENCH_ALL=1 BENCH_JSON=$work/webgpu.json "$WEBGPU_BENCH" \
            >"$work/webgpu.txt" 2>&1 || tail -n 3 "$work/webgpu.txt" >"$work/webgpu.failed"
    fi
fi

python3 - "$work" "$MODELS" "$DEVICES" "$PRECISIONS" "$TOLERANCE" "$TOLERANCE_BF16" "$OUT" <<'PY'
import json, os, sys
work, models, devices, precisions = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(","), sys.argv[4].split(",")
tolerances, out = {"f32": float(sys.argv[5]), "bf16": float(sys.argv[6])}, sys.argv[7]
result, ok = {"models": {}, "tolerance": tolerances}, True
for model, precision in ((m, p) for m in models for p in precisions):
    tolerance = tolerances[precision]
    runs = {}
    for i, device in enumerate(devices, 1):
        run = os.path.join(work, f"{model}-{precision}-{i}-{device}")
        key = device if device not in runs else f"{device}#{i}"
        if os.path.exists(run + ".failed"):
            runs[key] = {"device": device, "error": open(run + ".failed").read().strip()}
            continue
        log = [json.loads(l) for l in open(os.path.join(run, "log.jsonl"))]
        runs[key] = {"device": device, "losses": [e["loss"] for e in log if e.get("type") == "step"]}
    keys = list(runs)
    first = runs[keys[0]].get("losses")
    for key in keys[1:]:
        losses = runs[key].get("losses")
        if first and losses and len(losses) == len(first):
            worst = max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(first, losses))
            runs[key]["largest_relative_difference"] = worst
            runs[key]["matches"] = worst <= tolerance
        else:
            runs[key]["matches"] = False
        ok &= runs[key]["matches"]
    if not first:
        ok = False
    result["models"].setdefault(model, {})[precision] = runs
bench = os.path.join(work, "bench.jsonl")
result["bench"] = [json.loads(l) for l in open(bench)] if os.path.exists(bench) else None
webgpu = os.path.join(work, "webgpu")
result["webgpu"] = (json.load(open(webgpu + ".json")) if os.path.exists(webgpu + ".json")
                    else {"error": open(webgpu + ".failed").read().strip()} if os.path.exists(webgpu + ".failed") else None)
result["ok"] = ok
with open(out, "w") as f:
    json.dump(result, f, indent=1)
print(json.dumps({m: {p: {d: {k: v for k, v in r.items() if k != "losses"} for d, r in runs.items()}
                      for p, runs in by_precision.items()} for m, by_precision in result["models"].items()}))
sys.exit(0 if ok else 1)
PY
