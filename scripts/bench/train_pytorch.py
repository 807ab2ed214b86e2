#!/usr/bin/env python3
"""Training throughput of PyTorch + transformers, the peer of `trainer/examples/train_bench.rs`.

Same model, same shapes, same step as the Bedside bench:
  * `transformers.BertForSequenceClassification(BertConfig(...))`, random init (N(0, 0.02)),
    pooler included, dropout 0.1 (hidden, attention and classifier), `num_labels` outputs;
  * fresh random token ids of exactly `--seq` tokens each step, attention mask all ones;
  * forward (+ cross-entropy) -> backward -> `clip_grad_norm_(1.0)` -> `AdamW.step()`, with
    `torch.optim.AdamW(lr=2e-5, weight_decay=0.01)`, weight decay on matrices only (biases and
    LayerNorm excluded, as HF Trainer and Bedside's optimiser do);
  * `--precision bf16`: forward and loss under `torch.autocast(dtype=torch.bfloat16)`, fp32 master
    weights and optimizer (standard bf16 AMP, no grad scaler);
  * `--warmup-steps` untimed steps, then `--steps` timed ones: samples/s from the wall time of
    all timed steps; each phase closed by a device synchronize (CUDA) so the coarse profile
    (forward / backward / clip / optimizer, other = the rest) matches the Bedside one.

Threads: `torch.set_num_threads(--threads)`; train_throughput.sh passes the thread count the
Bedside bench reports (candle's: RAYON_NUM_THREADS, else the process's CPU mask/physical cores).
Without --threads: RAYON_NUM_THREADS if set, else os.cpu_count().

Prints one JSON line on stdout with "impl": "pytorch".
"""

import argparse
import json
import os
import time

import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification

PRESETS = {
    "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072, vocab_size=30522),
    "mini": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024, vocab_size=30522),
}
FIRST_TOKEN_ID = 5  # above [PAD] [UNK] [CLS] [SEP] [MASK], as the Bedside bench
LEARNING_RATE = 2e-5
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
DROPOUT = 0.1


def default_threads():
    env = os.environ.get("RAYON_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mini", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup-steps", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--num-labels", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"],
                    help="transformers attention implementation (eager = composed matmul+softmax, like Bedside)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("pytorch: --device cuda but torch.cuda.is_available() is False")
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

    setup = time.perf_counter()
    p = PRESETS[args.preset]
    config = BertConfig(
        **p,
        hidden_act="gelu",
        hidden_dropout_prob=DROPOUT,
        attention_probs_dropout_prob=DROPOUT,
        max_position_embeddings=512,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        initializer_range=0.02,
        num_labels=args.num_labels,
    )
    config._attn_implementation = args.attn
    model = BertForSequenceClassification(config).to(device)
    model.train()
    params = sum(t.numel() for t in model.parameters())

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if name.endswith(".bias") or "LayerNorm" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LEARNING_RATE,
    )
    # foreach=None: torch picks the multi-tensor (foreach) path when all params are on CUDA,
    # the per-tensor for-loop on CPU.
    optimizer_impl = "foreach" if args.device == "cuda" else "for-loop"
    gen = torch.Generator().manual_seed(args.seed ^ 0xB47C4BE7)
    autocast = args.precision == "bf16"
    setup_s = time.perf_counter() - setup

    times = dict(forward=0.0, backward=0.0, clip=0.0, optimizer=0.0)
    first_loss = last_loss = float("nan")
    timed_start = None
    for step in range(args.warmup_steps + args.steps):
        if step == args.warmup_steps:
            sync()
            timed_start = time.perf_counter()
        # Host-side ids, uploaded inside the forward phase (as Bedside uploads its ids).
        ids_cpu = torch.randint(FIRST_TOKEN_ID, p["vocab_size"], (args.batch, args.seq), generator=gen)
        labels_cpu = torch.randint(0, args.num_labels, (args.batch,), generator=gen)

        sync()
        t0 = time.perf_counter()
        ids = ids_cpu.to(device)
        labels = labels_cpu.to(device)
        mask = torch.ones_like(ids)
        with torch.autocast(device_type=args.device, dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        sync()
        t3 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        t4 = time.perf_counter()

        if step >= args.warmup_steps:
            times["forward"] += t1 - t0
            times["backward"] += t2 - t1
            times["clip"] += t3 - t2
            times["optimizer"] += t4 - t3
            value = float(loss.detach().float().item())
            if step == args.warmup_steps:
                first_loss = value
            last_loss = value

    sync()
    # Wall time of the timed steps, everything included (host-side batch, phases, frees).
    timed_wall = time.perf_counter() - timed_start
    if last_loss != last_loss:
        raise SystemExit(f"pytorch: the loss is not finite ({last_loss})")
    n = args.steps
    ms = lambda s: round(s / n * 1e3, 3)  # noqa: E731
    print(json.dumps({
        "impl": "pytorch",
        "preset": args.preset,
        "device": args.device,
        "precision": args.precision,
        "batch": args.batch,
        "seq": args.seq,
        "steps": n,
        "warmup_steps": args.warmup_steps,
        "threads": torch.get_num_threads(),
        "layers": p["num_hidden_layers"],
        "hidden": p["hidden_size"],
        "heads": p["num_attention_heads"],
        "intermediate": p["intermediate_size"],
        "vocab": p["vocab_size"],
        "num_labels": args.num_labels,
        "params": params,
        "samples_per_s": round(args.batch * n / timed_wall, 2),
        "ms_per_step": ms(timed_wall),
        "forward_ms": ms(times["forward"]),
        "backward_ms": ms(times["backward"]),
        "clip_ms": ms(times["clip"]),
        "optimizer_ms": ms(times["optimizer"]),
        "other_ms": ms(timed_wall - sum(times.values())),
        "loss_first": first_loss,
        "loss_last": last_loss,
        "setup_s": round(setup_s, 2),
        "lib": f"torch {torch.__version__}, transformers {transformers.__version__}",
        "attention": model.config._attn_implementation,
        # f32 matmuls in full f32 on both sides (candle's CUDA default is no TF32 too).
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32 if args.device == "cuda" else None,
        "optimizer_impl": f"torch.optim.AdamW ({optimizer_impl})",
    }))


if __name__ == "__main__":
    main()
