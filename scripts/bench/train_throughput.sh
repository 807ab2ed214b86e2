#!/usr/bin/env bash
# Training throughput, Bedside vs PyTorch + transformers, in the same call: same model (random
# init), same shapes (batch 32 × seq 128 by default), same step (forward + cross-entropy →
# backward → clip_grad_norm 1.0 → AdamW lr 2e-5 wd 0.01), dropout 0.1, same warm-up and
# timed steps. Prints each side's JSON line, a table with the coarse profile, and the ratio
# bedside/pytorch of samples/s.
#
#   bash scripts/bench/train_throughput.sh [preset] [device] [precision] [steps] [bench binary]
#
#   preset     base | mini          (default: mini on cpu, base on cuda)
#   device     cpu | cuda           (default: cpu)
#   precision  f32 | bf16 | f32,bf16 (a list runs each in turn; default: f32)
#   steps      timed steps          (default: 10)
#   binary     the Bedside bench    (default: target/release/examples/train_bench)
#
# Environment: PYTHON (default python3; needs torch + transformers), BATCH (32), SEQ (128),
# WARMUP (untimed steps; default 2 on cpu, 5 on cuda), ATTN (transformers attention:
# sdpa | eager, default sdpa), RESULTS (a file the JSON lines are appended to).
#
# Threads: the PyTorch side gets torch.set_num_threads(N) with N the thread count candle
# reports (RAYON_NUM_THREADS if set, else the cores in the process's CPU mask / physical cores).
#
# CPU, here:
#   cargo build --release -p bedside --example train_bench
#   PYTHON=/tmp/refvenv/bin/python bash scripts/bench/train_throughput.sh mini cpu f32 10
# GPU machine (see ../shared/gpu/README.md):
#   source ../shared/gpu/cuda-build-env.sh && cargo build --release --features cuda -p bedside --example train_bench
#   mkdir -p .gpu && cp target/release/examples/train_bench .gpu/
#   # there:
#   bash scripts/bench/train_throughput.sh base cuda f32,bf16 50 .gpu/train_bench
#
# bf16 is autocast on both sides (bf16 matmuls, f32 master weights). On the CPU Bedside emulates
# it (candle has no CPU bf16 matmul; slower than its f32) and PyTorch runs oneDNN's bf16 kernels:
# the CPU bf16 row measures numerics' cost, not a speed Bedside claims. A side that fails shows
# its error in the table, with no ratio for that precision.
set -uo pipefail

DEVICE=${2:-cpu}
PRESET=${1:-$([ "$DEVICE" = cuda ] && echo base || echo mini)}
PRECISIONS=${3:-f32}
STEPS=${4:-10}
BIN=${5:-target/release/examples/train_bench}
PYTHON=${PYTHON:-python3}
BATCH=${BATCH:-32}
SEQ=${SEQ:-128}
WARMUP=${WARMUP:-$([ "$DEVICE" = cuda ] && echo 5 || echo 2)}
ATTN=${ATTN:-sdpa}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ ! -x "$BIN" ]; then
    echo "no Bedside bench at $BIN: cargo build --release -p bedside --example train_bench" \
        "(add --features cuda for the GPU)" >&2
    exit 1
fi
if [ "$DEVICE" = cuda ] && [ -d /usr/local/cuda/lib64 ]; then
    export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi

LINES=$(mktemp)
ERRS=$(mktemp)
trap 'rm -f "$LINES" "$ERRS"' EXIT
common=(--preset "$PRESET" --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" --warmup-steps "$WARMUP" --device "$DEVICE")

echo "# training throughput: preset=$PRESET device=$DEVICE batch=$BATCH seq=$SEQ warmup=$WARMUP steps=$STEPS ($(date -u +%FT%TZ), $(uname -n))"
IFS=',' read -r -a precisions <<<"$PRECISIONS"
for precision in "${precisions[@]}"; do
    threads=${RAYON_NUM_THREADS:-$(nproc)}
    if out=$("$BIN" "${common[@]}" --precision "$precision" 2>"$ERRS"); then
        echo "$out"
        echo "$out" >>"$LINES"
        threads=$("$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["threads"])' "$out")
    else
        msg=$(tail -n 1 "$ERRS")
        echo "bedside $precision: FAILED: $msg" >&2
        "$PYTHON" -c 'import json,sys; print(json.dumps({"impl":"bedside","precision":sys.argv[1],"error":sys.argv[2]}))' \
            "$precision" "$msg" >>"$LINES"
    fi
    if out=$("$PYTHON" "$HERE/train_pytorch.py" "${common[@]}" --precision "$precision" --threads "$threads" \
        --attn "$ATTN" 2>"$ERRS"); then
        echo "$out"
        echo "$out" >>"$LINES"
    else
        msg=$(tail -n 1 "$ERRS")
        echo "pytorch $precision: FAILED: $msg" >&2
        "$PYTHON" -c 'import json,sys; print(json.dumps({"impl":"pytorch","precision":sys.argv[1],"error":sys.argv[2]}))' \
            "$precision" "$msg" >>"$LINES"
    fi
done
if [ -n "${RESULTS:-}" ]; then
    cat "$LINES" >>"$RESULTS"
fi

"$PYTHON" - "$LINES" <<'EOF'
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cols = ["impl", "precision", "threads", "samples/s", "ms/step", "fwd", "bwd", "clip", "optim", "other", "loss"]
table = []
for r in rows:
    if "error" in r:
        table.append([r["impl"], r["precision"], "-", "n/a", "n/a", "-", "-", "-", "-", "-", "unsupported"])
        continue
    table.append([r["impl"], r["precision"], str(r["threads"]), f'{r["samples_per_s"]:.2f}', f'{r["ms_per_step"]:.1f}',
                  f'{r["forward_ms"]:.1f}', f'{r["backward_ms"]:.1f}', f'{r["clip_ms"]:.1f}',
                  f'{r["optimizer_ms"]:.1f}', f'{r["other_ms"]:.1f}', f'{r["loss_first"]:.3f}->{r["loss_last"]:.3f}'])
widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
fmt = lambda cells: "| " + " | ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"
print()
print("times in ms per step (fwd = forward + loss, bwd = backward, clip = clip_grad_norm, optim = AdamW step,")
print("other = the rest of the step: host batch, freeing the graph)")
print(fmt(cols))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for t in table:
    print(fmt(t))
print()
for precision in dict.fromkeys(r["precision"] for r in rows):
    b = next((r for r in rows if r["impl"] == "bedside" and r["precision"] == precision), None)
    p = next((r for r in rows if r["impl"] == "pytorch" and r["precision"] == precision), None)
    if b and p and "error" not in b and "error" not in p:
        ratio = b["samples_per_s"] / p["samples_per_s"]
        split = ", ".join(f"{k} {b[k + '_ms'] / max(p[k + '_ms'], 1e-9):.1f}x"
                          for k in ["forward", "backward", "clip", "optimizer"])
        print(f"{precision}: bedside/pytorch samples/s = {ratio:.3f}  (bedside time / pytorch time: {split})")
    else:
        why = (b or {}).get("error") or (p or {}).get("error") or "missing result"
        print(f"{precision}: no ratio ({why})")
EOF
