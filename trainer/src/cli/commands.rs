//! One function per command; all work happens in `bedside_runtime`.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use bedside_runtime::bundle::{self, Manifest, Quantization, Task};
use bedside_runtime::checkpoint::{Checkpoint, LoadOptions};
use bedside_runtime::model::Weights;
use bedside_runtime::pipeline::aggregate::{Aggregation, CLINICALBERT_DEFAULT_C};
use bedside_runtime::Model;

use super::{
    ClassifyArgs, Cli, Command, EmbedArgs, ExportArgs, InspectArgs, SimilarityArgs, TrainClassifyArgs, TrainCommand,
};

/// Sentences the export parity check embeds with the source and the bundle.
const PARITY_PROBES: &[&str] = &[
    "Patient denies chest pain or shortness of breath.",
    "Metformin 500 mg PO BID; HbA1c 7.9% (↑ from 7.1%).",
    "Type 2 diabetes mellitus with diabetic chronic kidney disease",
    "Fièvre à 39,2 °C depuis 3 jours, toux sèche.",
];

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(TrainCommand::Classify(args)) => train_classify(args),
        Command::Export(args) => export(args),
        Command::Embed(args) => embed(args),
        Command::Classify(args) => classify(args),
        Command::Similarity(args) => similarity(args),
        Command::Inspect(args) => inspect(args),
    }
}

/// A model's parts, from a checkpoint directory or a bundle file.
struct Source {
    manifest: Manifest,
    tokenizer_json: String,
    weights: Weights,
}

fn load_source(path: &Path, options: &LoadOptions) -> Result<Source> {
    if path.is_dir() {
        let checkpoint = Checkpoint::from_dir_with(path, options)?;
        let manifest = checkpoint.default_manifest(Quantization::F32)?;
        Ok(Source { manifest, tokenizer_json: checkpoint.tokenizer_json, weights: checkpoint.weights })
    } else {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let b = bundle::read(&bytes).with_context(|| format!("loading bundle {}", path.display()))?;
        Ok(Source { manifest: b.manifest, tokenizer_json: b.tokenizer_json, weights: b.weights })
    }
}

fn load_model(path: &Path) -> Result<Model> {
    let source = load_source(path, &LoadOptions::default())?;
    Model::from_parts(source.manifest, &source.tokenizer_json, &source.weights)
        .with_context(|| format!("loading model {}", path.display()))
}

fn apply_overrides(m: &mut Manifest, a: &ExportArgs) -> Result<()> {
    m.quantization = a.quant.parse()?;
    if let Some(task) = &a.task {
        m.task = task.parse::<Task>().map_err(anyhow::Error::msg)?;
        if m.task == Task::Embedding {
            m.head_outputs = 0;
            m.labels.clear();
        }
    }
    if let Some(labels) = &a.labels {
        m.labels = labels.clone();
    }
    if let Some(n) = a.max_seq_len {
        m.max_seq_len = n;
        if a.stride.is_none() {
            m.stride = n / 8;
        }
    }
    if let Some(n) = a.stride {
        m.stride = n;
    }
    if let Some(p) = &a.pooling {
        m.pooling = p.parse().map_err(anyhow::Error::msg)?;
    }
    if let Some(n) = a.normalize {
        m.normalize = n;
    }
    let c = a.aggregation_c.unwrap_or(match m.aggregation {
        Aggregation::Clinicalbert { c } => c,
        _ => CLINICALBERT_DEFAULT_C,
    });
    m.aggregation = match a.aggregation.as_deref() {
        Some("clinicalbert") => Aggregation::Clinicalbert { c },
        Some("mean") => Aggregation::Mean,
        Some("max") => Aggregation::Max,
        Some(other) => bail!("unknown aggregation {other:?}: use clinicalbert, mean or max"),
        None if a.task.is_some() => match m.task {
            Task::Binary | Task::Multilabel => Aggregation::Clinicalbert { c },
            _ => Aggregation::Mean,
        },
        None => match m.aggregation {
            Aggregation::Clinicalbert { .. } => Aggregation::Clinicalbert { c },
            other => other,
        },
    };
    if let Some(t) = a.threshold {
        m.decision_threshold = t;
    }
    if let Some(t) = a.min_confidence {
        m.min_confidence = t;
    }
    if let Some(name) = &a.base_model {
        m.base_model = name.clone();
    }
    m.created_by = format!("bedside {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}

fn export(a: ExportArgs) -> Result<()> {
    let options = LoadOptions { lowercase: a.lowercase };
    let source = load_source(&a.model, &options)?;
    let mut manifest = source.manifest.clone();
    apply_overrides(&mut manifest, &a)?;
    // Building the model validates the manifest against the weights and records which
    // tensors it reads: exactly those are written.
    let reference = Model::from_parts(manifest.clone(), &source.tokenizer_json, &source.weights)
        .context("checking the export settings against the model")?;
    let names = source.weights.used_names();
    let bytes = bundle::write(&manifest, &source.tokenizer_json, &source.weights, &names)?;
    let tmp = a.out.with_extension("gguf.partial");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &a.out).with_context(|| format!("writing {}", a.out.display()))?;

    // Parity: the bundle, reloaded as the browser will, against the source.
    let exported = Model::load(&bytes).context("reloading the written bundle")?;
    let probes: Vec<&str> = PARITY_PROBES.to_vec();
    let want = reference.embed(&probes)?;
    let got = exported.embed(&probes)?;
    let min_cos = want.iter().zip(&got).map(|(w, g)| cosine(w, g)).fold(f32::INFINITY, f32::min);
    eprintln!(
        "wrote {} ({:.1} MB, {} tensors, {}, task {}); embedding cosine vs source on {} probes: min {:.5}",
        a.out.display(),
        bytes.len() as f64 / 1e6,
        names.len(),
        manifest.quantization.as_str(),
        manifest.task.as_str(),
        probes.len(),
        min_cos
    );
    Ok(())
}

fn embed(a: EmbedArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let texts: Vec<&str> = a.texts.iter().map(String::as_str).collect();
    let vectors = model.embed(&texts)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer(&mut out, &vectors)?;
        writeln!(out)?;
    } else {
        for (i, v) in vectors.iter().enumerate() {
            let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:.4}")).collect();
            writeln!(out, "text {i}: dim {} [{}, …]", v.len(), head.join(", "))?;
        }
    }
    Ok(())
}

/// Notes to classify: (id, text), with the CSV line for errors.
fn read_notes_csv(path: &Path, text_col: &str, id_col: &str) -> Result<Vec<(String, String)>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let headers = reader.headers().with_context(|| format!("{}: reading the header row", path.display()))?.clone();
    let text_index = headers
        .iter()
        .position(|h| h == text_col)
        .with_context(|| format!("{}: no column {text_col:?} (columns: {})", path.display(), headers.iter().collect::<Vec<_>>().join(", ")))?;
    let id_index = headers.iter().position(|h| h == id_col);
    let mut notes = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let line = row + 2;
        let record = record.with_context(|| format!("{}: line {line}", path.display()))?;
        let text = record.get(text_index).unwrap_or("").to_string();
        let id = id_index.and_then(|i| record.get(i)).map(str::to_string).unwrap_or_else(|| format!("line {line}"));
        if text.trim().is_empty() {
            bail!("{}: line {line}: column {text_col:?} is empty", path.display());
        }
        notes.push((id, text));
    }
    Ok(notes)
}

fn classify(a: ClassifyArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let notes: Vec<(String, String)> = match &a.input {
        Some(path) => read_notes_csv(path, &a.text_col, &a.id_col)?,
        None => a.texts.iter().enumerate().map(|(i, t)| (format!("{i}"), t.clone())).collect(),
    };
    let mut out = std::io::stdout().lock();
    for (id, text) in &notes {
        let prediction = model.classify(text).with_context(|| format!("note {id}"))?;
        if a.json {
            let mut value = serde_json::to_value(&prediction)?;
            if a.input.is_some() {
                value["id"] = serde_json::Value::String(id.clone());
            }
            serde_json::to_writer(&mut out, &value)?;
            writeln!(out)?;
        } else {
            let flag = if prediction.uncertain { "  (uncertain)" } else { "" };
            let top = prediction
                .chunks
                .iter()
                .max_by(|x, y| x.score.total_cmp(&y.score))
                .map(|c| format!("; strongest passage bytes {}..{} of {} windows", c.start, c.end, prediction.chunks.len()))
                .unwrap_or_default();
            writeln!(out, "{id}\t{}\t{:.3}{flag}{top}", prediction.label, prediction.score)?;
        }
    }
    Ok(())
}

fn similarity(a: SimilarityArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let vectors = model.embed(&[a.text_a.as_str(), a.text_b.as_str()])?;
    let cos = cosine(&vectors[0], &vectors[1]);
    if a.json {
        println!("{}", serde_json::json!({ "cosine": cos }));
    } else {
        println!("{cos:.4}");
    }
    Ok(())
}

fn device(name: &str) -> Result<candle_core::Device> {
    match name {
        "cpu" => Ok(candle_core::Device::Cpu),
        "cuda" if cfg!(feature = "cuda") => Ok(candle_core::Device::new_cuda(0)?),
        "cuda" => bail!("this bedside was built without CUDA: rebuild with `cargo build --release --features cuda`"),
        other => bail!("unknown device {other:?}: use cpu or cuda"),
    }
}

fn train_classify(a: TrainClassifyArgs) -> Result<()> {
    use bedside::data::{split, Dataset, LoadOptions as DataOptions, SplitOptions};
    use bedside::train::run::{train_classifier, ClassWeights, RunOptions};

    let data_options = DataOptions {
        text_col: a.text_col.clone(),
        label_col: a.label_col.clone(),
        id_col: a.id_col.clone(),
        strict: a.strict,
        ..Default::default()
    };
    let load = |path: &Path| Dataset::load(path, &data_options).with_context(|| format!("loading {}", path.display()));
    let train = load(&a.train)?;
    let (train, val, test) = match &a.val {
        Some(val) => (train, load(val)?, a.test.as_deref().map(load).transpose()?),
        None => {
            let parts = split(train, &SplitOptions { seed: a.seed, ..Default::default() })?;
            let mut train = parts.train;
            train.problems.extend(parts.problems);
            (train, parts.val, Some(parts.test))
        }
    };
    for problem in &train.problems {
        eprintln!("skipped {problem}");
    }
    let class_weights = match a.class_weights.as_str() {
        "none" => ClassWeights::None,
        "balanced" => ClassWeights::Balanced,
        list => ClassWeights::Given(
            list.split(',')
                .map(|w| w.trim().parse::<f32>().with_context(|| format!("class weight {w:?} is not a number")))
                .collect::<Result<_>>()?,
        ),
    };
    let options = RunOptions {
        epochs: a.epochs,
        batch_size: a.batch_size,
        grad_accum: a.grad_accum,
        learning_rate: a.lr,
        weight_decay: a.weight_decay,
        warmup_ratio: a.warmup_ratio,
        max_grad_norm: a.max_grad_norm,
        max_seq_len: a.max_seq_len,
        seed: a.seed,
        class_weights,
        patience: a.patience,
        device: device(&a.device)?,
    };
    let base = Checkpoint::from_dir(&a.base).with_context(|| format!("loading {}", a.base.display()))?;
    eprintln!(
        "training on {} notes, validating on {}{}",
        train.len(),
        val.len(),
        test.as_ref().map(|t| format!(", testing on {}", t.len())).unwrap_or_default()
    );
    let result = train_classifier(&base, &train, val, test, &options, &a.out, &mut |e| {
        eprintln!(
            "epoch {}: train loss {:.4}, val loss {:.4}, val macro-F1 {:.4}, {:.1} notes/s{}",
            e.epoch,
            e.train_loss,
            e.val_loss,
            e.val_macro_f1,
            e.samples_per_second,
            if e.best { "  (best)" } else { "" }
        )
    })?;
    let r = &result.report;
    eprintln!(
        "{} ({} notes): accuracy {:.4}, macro-F1 {:.4}, weighted-F1 {:.4}, ROC-AUC {}; best epoch {}; checkpoint {}; report {}",
        r.split,
        r.n,
        r.accuracy,
        r.macro_f1,
        r.weighted_f1,
        r.roc_auc_macro.map_or("n/a".to_string(), |v| format!("{v:.4}")),
        r.best_epoch,
        result.best_dir.display(),
        a.out.join("report.json").display()
    );
    Ok(())
}

fn inspect(a: InspectArgs) -> Result<()> {
    let bytes = std::fs::read(&a.bundle).with_context(|| format!("reading {}", a.bundle.display()))?;
    let b = bundle::read(&bytes).with_context(|| format!("loading bundle {}", a.bundle.display()))?;
    let mut value = serde_json::to_value(&b.manifest)?;
    value["checksum"] = serde_json::Value::String(b.checksum);
    value["size_bytes"] = serde_json::Value::from(bytes.len());
    value["tensors"] = serde_json::Value::from(b.weights.names().count());
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}
