//! WebGPU against the CPU path in the same run: ms per note and notes/s at 128 and 512
//! tokens, one note at a time and in batches of 8 (long notes' windows run that way).
//!
//!     cargo bench -p bedside-runtime --bench webgpu
//!
//! Models: the real all-MiniLM-L6-v2 (f32 and q8_0 bundles); with `BENCH_BASE=1` also a
//! random model of BERT-base's shape (12 layers, 768 wide; q8_0), the issue's ≥ 10× case
//! on a real GPU. Each case times the encoder and pooling on the same token ids (the
//! tokenizer is the same code on both backends): median of `BENCH_RUNS` runs after one
//! warm-up (default 3; 1 on a software adapter, which also skips 512 × 8 unless
//! `BENCH_ALL=1`: lavapipe needs minutes for it). Prints a Markdown table, the adapter, and writes
//! target/bench/webgpu.json (or `BENCH_JSON`). On a machine without a GPU wgpu picks Mesa's
//! lavapipe, a CPU implementation of Vulkan: those numbers say the path works, not that it is fast.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use bedside_runtime::bundle::{self, Quantization};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::gpu::{GpuBert, GpuContext, GpuOutput};
use bedside_runtime::model::{random_weights, Bert, BertConfig, SplitMix64, Weights};
use bedside_runtime::pipeline::encode::encode;
use bedside_runtime::pipeline::pool::{normalize, pool, Pooling};
use bedside_runtime::runtime::block_on;
use candle_core::quantized::GgmlDType;

const CASES: [(usize, usize); 4] = [(128, 1), (128, 8), (512, 1), (512, 8)];

struct Row {
    model: String,
    tokens: usize,
    batch: usize,
    cpu_ms: f64,
    gpu_ms: f64,
    cosine: f32,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let mut out = f()?; // warm-up: pipelines, buffers, caches
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        out = f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok((median(times), out))
}

fn batch_ids(seed: u64, tokens: usize, batch: usize, vocab: usize) -> Vec<Vec<u32>> {
    let mut rng = SplitMix64::new(seed);
    // [CLS]-like first id, then random ids below the vocabulary size.
    (0..batch).map(|_| (0..tokens).map(|_| 1 + (rng.next_u64() % (vocab as u64 - 1)) as u32).collect()).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
}

fn bench_model(
    ctx: &GpuContext,
    name: &str,
    config: &BertConfig,
    weights: &Weights,
    runs: usize,
    cases: &[(usize, usize)],
) -> Result<Vec<Row>> {
    let cpu = Bert::load(weights, config)?;
    let gpu =
        block_on(GpuBert::load(ctx.clone(), weights, config, None)).with_context(|| format!("{name} on WebGPU"))?;
    let output = GpuOutput::Pooled { pooling: Pooling::Mean, normalize: true };
    let mut rows = Vec::new();
    for &(tokens, batch) in cases {
        if tokens > config.max_position_embeddings {
            continue;
        }
        let ids = batch_ids(tokens as u64, tokens, batch, config.vocab_size);
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let (cpu_ms, want) = time(runs, || {
            let encoded = encode(&cpu, &refs, 0)?;
            Ok(normalize(&pool(&encoded.hidden, &encoded.mask, Pooling::Mean)?)?.to_vec2::<f32>()?)
        })?;
        let (gpu_ms, got) = time(runs, || Ok(block_on(gpu.run(&refs, 0, output))?))?;
        let h = config.hidden_size;
        let cosine = want.iter().zip(got.chunks(h)).map(|(w, g)| cosine(w, g)).fold(1.0, f32::min);
        let row = Row {
            model: name.to_string(),
            tokens,
            batch,
            cpu_ms: cpu_ms / batch as f64,
            gpu_ms: gpu_ms / batch as f64,
            cosine,
        };
        eprintln!(
            "{name} {tokens}×{batch}: CPU {:.1} ms/note, WebGPU {:.1} ms/note, min cosine {cosine:.6}",
            row.cpu_ms, row.gpu_ms
        );
        rows.push(row);
    }
    Ok(rows)
}

fn main() -> Result<()> {
    let ctx = block_on(GpuContext::new()).context("no WebGPU adapter (install mesa-vulkan-drivers for lavapipe)")?;
    eprintln!("adapter: {:?}", ctx.adapter);
    let software = ctx.adapter.software;
    let runs = match std::env::var("BENCH_RUNS") {
        Ok(s) => s.trim().parse::<usize>().with_context(|| format!("BENCH_RUNS={s:?}"))?,
        Err(_) if software => 1,
        Err(_) => 3,
    };
    if runs == 0 {
        bail!("BENCH_RUNS must be at least 1");
    }
    let cases: Vec<(usize, usize)> = CASES
        .into_iter()
        .filter(|&case| !software || case != (512, 8) || std::env::var_os("BENCH_ALL").is_some())
        .collect();
    let mut rows = Vec::new();

    let dir = std::env::var_os("BEDSIDE_MINILM_DIR").map(std::path::PathBuf::from).or_else(|| {
        let out = std::process::Command::new("bash").arg("models/minilm.sh").current_dir("..").output().ok()?;
        out.status.success().then(|| std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    });
    let dir = dir.context("the MiniLM checkpoint: set BEDSIDE_MINILM_DIR or run bash models/minilm.sh")?;
    let ckpt = Checkpoint::from_dir(&dir)?;
    for quant in [Quantization::F32, Quantization::Q8_0] {
        let manifest = ckpt.default_manifest(quant)?;
        bedside_runtime::Model::from_parts(manifest.clone(), &ckpt.tokenizer_json, &ckpt.weights)?;
        let bytes = bundle::write(&manifest, &ckpt.tokenizer_json, &ckpt.weights, &ckpt.weights.used_names())?;
        let read = bundle::read(&bytes)?;
        let name = format!("MiniLM-L6 {}", quant.as_str());
        rows.extend(bench_model(&ctx, &name, &read.manifest.config, &read.weights, runs, &cases)?);
    }
    if std::env::var_os("BENCH_BASE").is_some() {
        let config = BertConfig::default();
        let weights = random_weights(&config, None, Some(GgmlDType::Q8_0), 11)?;
        rows.extend(bench_model(&ctx, "BERT-base shape q8_0", &config, &weights, runs, &cases)?);
    }

    println!();
    println!("Adapter: {} ({}, {})", ctx.adapter.name, ctx.adapter.backend, ctx.adapter.device_type);
    println!();
    println!("| model | tokens | batch | CPU ms/note | WebGPU ms/note | CPU notes/s | WebGPU notes/s | WebGPU / CPU speed | min cosine |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}× | {:.6} |",
            r.model,
            r.tokens,
            r.batch,
            r.cpu_ms,
            r.gpu_ms,
            1e3 / r.cpu_ms,
            1e3 / r.gpu_ms,
            r.cpu_ms / r.gpu_ms,
            r.cosine
        );
    }
    // BENCH_JSON: where the JSON goes when the binary runs away from this checkout (scripts/gpu/check.sh).
    let out = match std::env::var_os("BENCH_JSON") {
        Some(path) => std::path::PathBuf::from(path),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/webgpu.json"),
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::json!({
        "adapter": ctx.adapter,
        "runs": runs,
        "rows": rows.iter().map(|r| serde_json::json!({
            "model": r.model, "tokens": r.tokens, "batch": r.batch,
            "cpu_ms_per_note": r.cpu_ms, "webgpu_ms_per_note": r.gpu_ms,
            "speedup": r.cpu_ms / r.gpu_ms, "min_cosine": r.cosine,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(&out, serde_json::to_string_pretty(&json)? + "\n")?;
    for r in &rows {
        if r.cosine < 0.999 {
            bail!("{} {}×{}: WebGPU and CPU embeddings disagree (cosine {})", r.model, r.tokens, r.batch, r.cosine);
        }
    }
    Ok(())
}
