//! Training throughput of Bedside's own fine-tuning step, for side-by-side comparison with
//! PyTorch + transformers (`scripts/bench/train_pytorch.py`; both run by
//! `scripts/bench/train_throughput.sh`).
//!
//! A random-init BERT (N(0, 0.02) weights, as transformers' `_init_weights`) is written as a
//! Hugging Face checkpoint to a temporary directory and loaded through the same `Checkpoint`
//! → `TrainableClassifier` path a real run takes. Each step is what `train/run.rs` does per
//! optimiser step with no gradient accumulation: logits in `Mode::Train` (dropout live) →
//! cross-entropy → backward → `clip_grad_norm(1.0)` → `AdamW::step`, on fresh random token
//! ids of exactly `--seq` tokens (no padding). After `--warmup-steps` untimed steps, `--steps`
//! steps are timed: samples/s and ms/step come from the wall time of all timed steps; every
//! phase ends with a device synchronize so the coarse profile (forward / backward / clip /
//! optimizer ms, `other_ms` = the rest: host-side batch, freeing the graph) is honest on CUDA
//! too (on CPU candle is eager and the synchronize is a no-op).
//!
//! Prints one JSON line on stdout. `--precision bf16` runs the encoder's matmuls in bf16 (real
//! bf16 kernels on CUDA; emulated, slower than f32, on the CPU: see `train_ops::bf16_matmul`).
//!
//!     cargo build --release -p bedside --example train_bench
//!     target/release/examples/train_bench --preset mini --device cpu --steps 10

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use bedside::train::classifier::{seeded_normal, ModelOptions, TrainableClassifier};
use bedside::train::optim::{clip_grad_norm, AdamW};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::model::{DropoutRng, Mode, Precision, SplitMix64};
use candle_core::{Device, Tensor};
use clap::Parser;

/// Any BERT WordPiece tokenizer will do: the bench feeds token ids directly, the classifier
/// only needs the tokenizer for its special tokens. Embedded so the binary runs anywhere.
const TOKENIZER_JSON: &str = include_str!("../../models/fixtures/tiny-safetensors/tokenizer.json");
/// First id the random tokens use: above [PAD] [UNK] [CLS] [SEP] [MASK] in BERT vocabularies.
const FIRST_TOKEN_ID: u32 = 5;
const LEARNING_RATE: f64 = 2e-5;
const WEIGHT_DECAY: f64 = 0.01;
const MAX_GRAD_NORM: f64 = 1.0;
const DROPOUT: f64 = 0.1;
const INIT_STD: f64 = 0.02;

#[derive(Parser, Debug)]
#[command(about = "Bedside training throughput: random-init BERT classifier, AdamW steps per second")]
struct Args {
    /// Model size: base (BERT-base, 12×768, 12 heads, FFN 3072) or mini (4×256, 4 heads, FFN 1024).
    #[arg(long, default_value = "mini")]
    preset: String,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Timed optimiser steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first (allocator, kernel caches, CUDA context).
    #[arg(long, default_value_t = 2)]
    warmup_steps: usize,
    /// cpu or cuda (cuda needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32 (what the trainer runs) or bf16 (refused: not supported by the trainer yet).
    #[arg(long, default_value = "f32")]
    precision: String,
    #[arg(long, default_value_t = 2)]
    num_labels: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

struct Preset {
    layers: usize,
    hidden: usize,
    heads: usize,
    intermediate: usize,
    vocab: usize,
}

fn preset(name: &str) -> Result<Preset> {
    Ok(match name {
        "base" => Preset { layers: 12, hidden: 768, heads: 12, intermediate: 3072, vocab: 30522 },
        "mini" => Preset { layers: 4, hidden: 256, heads: 4, intermediate: 1024, vocab: 30522 },
        other => bail!("unknown preset {other:?}: use base or mini"),
    })
}

/// Writes config.json, model.safetensors (BertModel names, pooler included, as
/// `BertForSequenceClassification` has one) and tokenizer.json into `dir`.
fn write_random_checkpoint(dir: &Path, p: &Preset, seed: u64) -> Result<usize> {
    let config = serde_json::json!({
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": p.vocab,
        "hidden_size": p.hidden,
        "num_hidden_layers": p.layers,
        "num_attention_heads": p.heads,
        "intermediate_size": p.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": DROPOUT,
        "attention_probs_dropout_prob": DROPOUT,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "initializer_range": INIT_STD,
    });
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    std::fs::write(dir.join("tokenizer.json"), TOKENIZER_JSON)?;

    let (h, i) = (p.hidden, p.intermediate);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut next_seed = seed;
    let mut normal = |name: &str, shape: &[usize]| -> Result<()> {
        next_seed = next_seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let count = shape.iter().product();
        let t = Tensor::from_vec(seeded_normal(count, INIT_STD, next_seed), shape, &Device::Cpu)?;
        tensors.insert(name.to_string(), t);
        Ok(())
    };
    normal("embeddings.word_embeddings.weight", &[p.vocab, h])?;
    normal("embeddings.position_embeddings.weight", &[512, h])?;
    normal("embeddings.token_type_embeddings.weight", &[2, h])?;
    let mut linears = Vec::new();
    let mut norms = vec!["embeddings.LayerNorm".to_string()];
    for l in 0..p.layers {
        let pre = format!("encoder.layer.{l}");
        for name in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
            linears.push((format!("{pre}.{name}"), h, h));
        }
        linears.push((format!("{pre}.intermediate.dense"), i, h));
        linears.push((format!("{pre}.output.dense"), h, i));
        norms.push(format!("{pre}.attention.output.LayerNorm"));
        norms.push(format!("{pre}.output.LayerNorm"));
    }
    linears.push(("pooler.dense".to_string(), h, h));
    for (name, out_dim, in_dim) in &linears {
        normal(&format!("{name}.weight"), &[*out_dim, *in_dim])?;
    }
    for (name, out_dim, _) in &linears {
        tensors.insert(format!("{name}.bias"), Tensor::zeros(*out_dim, candle_core::DType::F32, &Device::Cpu)?);
    }
    for name in &norms {
        tensors.insert(format!("{name}.weight"), Tensor::ones(h, candle_core::DType::F32, &Device::Cpu)?);
        tensors.insert(format!("{name}.bias"), Tensor::zeros(h, candle_core::DType::F32, &Device::Cpu)?);
    }
    let params = tensors.values().map(|t| t.elem_count()).sum();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    Ok(params)
}

#[derive(Default)]
struct PhaseTimes {
    forward: f64,
    backward: f64,
    clip: f64,
    optimizer: f64,
}

// The same allocator as the `bedside` CLI, so the bench measures what users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    bedside::alloc::keep_freed_memory();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("train_bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<()> {
    let p = preset(&args.preset)?;
    ensure!(args.seq >= 2 && args.seq <= 512, "--seq must be in 2..=512 (max_position_embeddings)");
    ensure!(args.batch >= 1 && args.steps >= 1, "--batch and --steps must be at least 1");
    let device = bedside::train::run::device(&args.device)?;
    let precision = Precision::from_name(&args.precision).context("--precision: use f32 or bf16")?;

    let setup = Instant::now();
    let dir = tempfile::tempdir().context("creating a temporary checkpoint directory")?;
    let written = write_random_checkpoint(dir.path(), &p, args.seed)?;
    let ckpt = Checkpoint::from_dir(dir.path()).context("loading the random-init checkpoint")?;
    let options = ModelOptions { dropout: Some(DROPOUT), ..ModelOptions::new(args.seq) };
    let model = TrainableClassifier::new(&ckpt, args.num_labels, options, args.seed, &device)?;
    drop(ckpt);
    drop(dir);
    // Every parameter trains (encoder, pooler, new head), as in the PyTorch peer.
    let trainable: usize = model.vars().iter().map(|(_, v)| v.elem_count()).sum();
    ensure!(trainable >= written, "the classifier has fewer parameters ({trainable}) than the checkpoint ({written})");
    let mut optimizer = AdamW::new(model.vars(), LEARNING_RATE, WEIGHT_DECAY)?;
    let vars: Vec<_> = model.vars().iter().map(|(_, v)| v.clone()).collect();
    let rng = DropoutRng::new(args.seed).with_precision(precision);
    let mut data_rng = SplitMix64::new(args.seed ^ 0xB47C_4BE7);
    let vocab_span = p.vocab - FIRST_TOKEN_ID as usize;
    let setup_s = setup.elapsed().as_secs_f64();

    let mut times = PhaseTimes::default();
    let (mut first_loss, mut last_loss) = (f32::NAN, f32::NAN);
    let mut timed_start = None;
    for step in 0..args.warmup_steps + args.steps {
        if step == args.warmup_steps {
            device.synchronize()?;
            timed_start = Some(Instant::now());
        }
        // Host-side ids, as the real loop has them; uploaded inside `logits` (timed as forward).
        let rows: Vec<Vec<u32>> = (0..args.batch)
            .map(|_| (0..args.seq).map(|_| FIRST_TOKEN_ID + data_rng.below(vocab_span) as u32).collect())
            .collect();
        let labels: Vec<u32> = (0..args.batch).map(|_| data_rng.below(args.num_labels) as u32).collect();
        let ids: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();

        device.synchronize()?;
        let t0 = Instant::now();
        let logits = model.logits(&ids, Mode::Train(&rng))?;
        let loss = model.loss(&logits, &labels, None)?;
        device.synchronize()?;
        let t1 = Instant::now();
        let mut grads = loss.backward()?;
        device.synchronize()?;
        let t2 = Instant::now();
        clip_grad_norm(&mut grads, &vars, MAX_GRAD_NORM)?;
        device.synchronize()?;
        let t3 = Instant::now();
        optimizer.step(&grads)?;
        device.synchronize()?;
        let t4 = Instant::now();
        drop(grads);

        if step >= args.warmup_steps {
            times.forward += (t1 - t0).as_secs_f64();
            times.backward += (t2 - t1).as_secs_f64();
            times.clip += (t3 - t2).as_secs_f64();
            times.optimizer += (t4 - t3).as_secs_f64();
            let value = loss.to_scalar::<f32>()?;
            if step == args.warmup_steps {
                first_loss = value;
            }
            last_loss = value;
        }
    }
    device.synchronize()?;
    // Wall time of the timed steps, everything included: the host-side batch, the phases, and
    // freeing the step's graph and gradients (PyTorch frees its graph inside backward).
    let timed_wall = timed_start.map_or(f64::NAN, |t| t.elapsed().as_secs_f64());
    ensure!(last_loss.is_finite(), "the loss is not finite ({last_loss}): the bench did not train");

    let n = args.steps as f64;
    let ms = |s: f64| (s / n * 1e3 * 1000.0).round() / 1000.0;
    let line = serde_json::json!({
        "impl": "bedside",
        "preset": args.preset,
        "device": args.device,
        "precision": args.precision,
        "batch": args.batch,
        "seq": args.seq,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "threads": candle_core::utils::get_num_threads(),
        "layers": p.layers,
        "hidden": p.hidden,
        "heads": p.heads,
        "intermediate": p.intermediate,
        "vocab": p.vocab,
        "num_labels": args.num_labels,
        "params": trainable,
        "samples_per_s": ((args.batch as f64 * n / timed_wall) * 100.0).round() / 100.0,
        "ms_per_step": ms(timed_wall),
        "forward_ms": ms(times.forward),
        "backward_ms": ms(times.backward),
        "clip_ms": ms(times.clip),
        "optimizer_ms": ms(times.optimizer),
        "other_ms": ms(timed_wall - times.forward - times.backward - times.clip - times.optimizer),
        "loss_first": first_loss,
        "loss_last": last_loss,
        "setup_s": (setup_s * 100.0).round() / 100.0,
        "lib": "candle 0.11",
        "attention": if device.is_cpu() && precision == Precision::F32 {
            "fused: one QKV matmul, per-head softmax(QK^T)V with its own backward (train_ops)"
        } else {
            "composed matmul + softmax"
        },
        "optimizer_impl": "bedside AdamW, fused in-place pass per tensor (CPU f32; composed ops elsewhere)",
    });
    println!("{line}");
    Ok(())
}
