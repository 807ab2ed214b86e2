//! One function per command; all work happens in `bedside_runtime`.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use bedside_runtime::bundle::{self, Manifest, Pin, Quantization, Task};
use bedside_runtime::checkpoint::{Checkpoint, LoadOptions};
use bedside_runtime::model::{HeadFeatures, Weights};
use bedside_runtime::pipeline::aggregate::{Aggregation, CLINICALBERT_DEFAULT_C};
use bedside_runtime::{Backend, Model};

use bedside::data::table::{self, ColumnSpec, TableSpec};
use bedside::data::{Dataset, LoadOptions as DataOptions};
use bedside::durable::{committed_dir, write_file_atomic, write_file_atomic_with};
use bedside::eval::report::{build_report, write_report, ReportOptions};
use bedside::eval::score::score;
use bedside::train::config::{ClassWeights, LongNotes, ProbeC, TaskKind, TrainConfig};

use super::{
    ClassifyArgs, Cli, Command, EmbedArgs, EvalArgs, ExportArgs, InspectArgs, SimilarityArgs, TrainArgs, TrainCommand,
};

/// Sentences the export parity check embeds with the source and the bundle.
const PARITY_PROBES: &[&str] = &[
    "Patient denies chest pain or shortness of breath.",
    "Metformin 500 mg PO BID; HbA1c 7.9% (↑ from 7.1%).",
    "Type 2 diabetes mellitus with diabetic chronic kidney disease",
    "Fièvre à 39,2 °C depuis 3 jours, toux sèche.",
];

/// `--expect-checksum`, parsed once per process: every bundle this command loads must match.
static PIN: OnceLock<Option<Pin>> = OnceLock::new();

fn pin() -> Option<&'static Pin> {
    PIN.get().and_then(Option::as_ref)
}

/// A bundle file's parts, verified, and pinned when `--expect-checksum` says so.
fn read_bundle(path: &Path, bytes: &[u8]) -> Result<bundle::Bundle> {
    bundle::read_pinned(bytes, pin()).with_context(|| format!("loading bundle {}", path.display()))
}

pub fn run(cli: Cli) -> Result<()> {
    let pin = cli.expect_checksum.as_deref().map(Pin::parse).transpose().context("--expect-checksum")?;
    // A second `run` in one process (tests) keeps the first pin; only the CLI calls this.
    let _ = PIN.set(pin);
    if let Some(n) = cli.threads {
        // candle sizes each matmul's parallelism from this variable when it runs; rayon's
        // global pool (the fused training ops, AdamW, the int8 matmuls) is built once, here,
        // before any work (a second `run` in one process keeps the first pool).
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n.into()).build_global();
    }
    match cli.command {
        Command::Train(TrainCommand::Classify(args)) => train(TaskKind::Classify, args),
        Command::Train(TrainCommand::Binary(args)) => train(TaskKind::Binary, args),
        Command::Train(TrainCommand::Multilabel(args)) => train(TaskKind::Multilabel, args),
        Command::Train(TrainCommand::Probe(args)) => train(TaskKind::Probe, args),
        Command::Train(TrainCommand::Embed(args)) => train_embed(args),
        Command::Train(TrainCommand::Ner(args)) => train_ner(args),
        Command::Eval(super::EvalCommand { command: Some(super::EvalSubcommand::Embed(args)), .. }) => {
            super::eval_embed::run(args)
        }
        Command::Eval(super::EvalCommand { args: Some(args), .. }) => eval(args),
        Command::Eval(_) => bail!("bedside eval needs --model and --data, or a subcommand (embed)"),
        Command::Export(args) => export(args),
        Command::Embed(args) => embed(args),
        Command::Classify(args) => classify(args),
        Command::Tag(args) => super::tag::tag(args),
        Command::Deid(args) => super::tag::deid(args),
        Command::Similarity(args) => similarity(args),
        Command::Inspect(args) => inspect(args),
        Command::Search(args) => super::search::run(args),
        Command::Serve(args) => bedside::serve::run(args),
    }
}

/// A model's parts, from a checkpoint directory or a bundle file.
struct Source {
    manifest: Manifest,
    tokenizer_json: String,
    weights: Weights,
}

/// A training run directory stands for its best checkpoint.
fn resolve_model_path(path: &Path) -> std::path::PathBuf {
    if path.is_dir() && !path.join("config.json").is_file() {
        // A run killed while replacing best/ leaves its previous version as best.old.
        if let Some(best) = committed_dir(&path.join("best")).filter(|b| b.join("config.json").is_file()) {
            return best;
        }
    }
    path.to_path_buf()
}

fn load_source(path: &Path, options: &LoadOptions) -> Result<Source> {
    let path = &resolve_model_path(path);
    if path.is_dir() && pin().is_some() {
        bail!("--expect-checksum pins a bundle, but {} is a checkpoint directory", path.display());
    }
    if path.is_dir() {
        let checkpoint = Checkpoint::from_dir_with(path, options)?;
        let manifest = checkpoint.default_manifest(Quantization::F32)?;
        Ok(Source { manifest, tokenizer_json: checkpoint.tokenizer_json, weights: checkpoint.weights })
    } else {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let b = read_bundle(path, &bytes)?;
        Ok(Source { manifest: b.manifest, tokenizer_json: b.tokenizer_json, weights: b.weights })
    }
}

/// [`load_model`] with the encoder on `--backend`. Says on stderr when WebGPU was asked
/// for by name and is not what runs, and which adapter runs when it is.
pub(super) fn load_model_on(path: &Path, backend: &super::BackendArgs) -> Result<Model> {
    let choice: Backend = backend.backend.parse()?;
    let path = &resolve_model_path(path);
    let mut source = load_source(path, &LoadOptions::default())?;
    source.weights.set_quantized_matmul(backend.quantized_matmul.parse()?);
    // `auto` probes the GPU drivers, and some write to stderr while they look (Mesa without a
    // display server: "error: XDG_RUNTIME_DIR is invalid or not set", twice). A probe nobody
    // asked for must not read like a failure; `--backend webgpu` keeps the drivers' words.
    let quiet = if choice == Backend::Auto { gag::Gag::stderr().ok() } else { None };
    let model = bedside_runtime::runtime::block_on(Model::from_parts_on(
        source.manifest,
        &source.tokenizer_json,
        &source.weights,
        choice,
    ));
    drop(quiet);
    let model = model.with_context(|| format!("loading model {} on backend {}", path.display(), backend.backend))?;
    if let Some(adapter) = model.adapter() {
        eprintln!("bedside: WebGPU on {} ({}, {})", adapter.name, adapter.backend, adapter.device_type);
    }
    Ok(model)
}

/// Prints why the model left WebGPU mid-run, if it did.
pub(super) fn report_fallback(model: &Model) {
    if model.switched_to_cpu() {
        let (note, detail) = (model.backend_note().unwrap_or_default(), model.backend_detail().unwrap_or_default());
        eprintln!("bedside: {note} ({detail})");
    }
}

/// A bundle file, a checkpoint directory, or a run directory (its best/ checkpoint).
pub(super) fn load_model(path: &Path) -> Result<Model> {
    let path = &resolve_model_path(path);
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
    if a.hf_out.is_some() && manifest.task != Task::Embedding && manifest.head_features != HeadFeatures::Pooler {
        bail!(
            "--hf-out: this head reads {} features, but transformers' BertForSequenceClassification always \
             applies the pooler to [CLS], so it would score differently; export the bundle without --hf-out",
            manifest.head_features.as_str()
        );
    }
    // Building the model validates the manifest against the weights and records which
    // tensors it reads: exactly those are written.
    let reference = Model::from_parts(manifest.clone(), &source.tokenizer_json, &source.weights)
        .context("checking the export settings against the model")?;
    let names = source.weights.used_names();
    let bytes = bundle::write(&manifest, &source.tokenizer_json, &source.weights, &names)?;
    write_file_atomic(&a.out, &bytes)?;

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
    if let Some(p) = exported.provenance() {
        // Both spellings of one digest: --expect-checksum takes the first, a page's
        // load(url, { integrity }) either.
        let pin = Pin::parse(&p.checksum)?;
        eprintln!("checksum {} (integrity \"{}\")", p.checksum, pin.to_integrity());
    }
    if let Some(hf_out) = &a.hf_out {
        write_hf_dir(&resolve_model_path(&a.model), hf_out)?;
    }
    if manifest.task != Task::Embedding {
        let run_split = a.model.join("splits").join("test.jsonl");
        let data = a.data.clone().or_else(|| run_split.is_file().then_some(run_split));
        match data {
            Some(path) => parity_report(&reference, &exported, &path, manifest.quantization.as_str(), a.json)?,
            None => eprintln!("no labelled data for a parity report: pass --data FILE (text, label columns)"),
        }
    } else if let Some(path) = &a.data {
        embedding_parity(&reference, &exported, path, manifest.quantization.as_str(), a.json)?;
    }
    Ok(())
}

/// A Hugging Face directory that `AutoModelForSequenceClassification` and `AutoTokenizer`
/// load: the checkpoint's own files (a run's best/ already is one).
fn write_hf_dir(source: &Path, out: &Path) -> Result<()> {
    if !source.is_dir() {
        bail!("--hf-out needs a run or checkpoint directory as --model, not the bundle {}", source.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut copied = Vec::new();
    for name in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ] {
        let from = source.join(name);
        if from.is_file() {
            // Streamed (the weights can be hundreds of MB); each file is replaced whole.
            let mut reader = std::fs::File::open(&from).with_context(|| format!("reading {}", from.display()))?;
            write_file_atomic_with(&out.join(name), |file| std::io::copy(&mut reader, file).map(drop))?;
            copied.push(name);
        }
    }
    if !copied.contains(&"model.safetensors") {
        bail!("{} has no model.safetensors to copy", source.display());
    }
    eprintln!("wrote a Hugging Face directory {} ({})", out.display(), copied.join(", "));
    Ok(())
}

/// An embedding bundle against the f32 source on a pairs file (text1,text2,label): the
/// largest cosine difference per pair and each one's Spearman against the labels.
fn embedding_parity(reference: &Model, exported: &Model, path: &Path, quant: &str, json: bool) -> Result<()> {
    use bedside::eval::embedding::{cosine, load_pairs, spearman, PairsOptions};
    let pairs = load_pairs(path, &PairsOptions::default())?;
    let cosines = |model: &Model| -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(64) {
            let a: Vec<&str> = chunk.iter().map(|p| p.text1.as_str()).collect();
            let b: Vec<&str> = chunk.iter().map(|p| p.text2.as_str()).collect();
            let (ea, eb) = (model.embed(&a)?, model.embed(&b)?);
            out.extend(ea.iter().zip(&eb).map(|(x, y)| cosine(x, y)));
        }
        Ok(out)
    };
    let (want, got) = (cosines(reference)?, cosines(exported)?);
    let labels: Vec<f64> = pairs.iter().map(|p| p.label).collect();
    let max_diff = want.iter().zip(&got).map(|(w, g)| (w - g).abs()).fold(0.0, f64::max);
    let (s_want, s_got) = (spearman(&want, &labels)?, spearman(&got, &labels)?);
    let summary = serde_json::json!({"data": path.display().to_string(), "pairs": pairs.len(), "quantization": quant,
        "max_cosine_difference": max_diff, "spearman_f32": s_want, "spearman_bundle": s_got});
    if json {
        println!("{summary}");
    }
    let show = |s: Option<f64>| s.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    eprintln!(
        "parity on {} ({} pairs): max cosine difference {max_diff:.2e}, Spearman f32 {} vs {quant} {}",
        path.display(),
        pairs.len(),
        show(s_want),
        show(s_got)
    );
    Ok(())
}

/// The exported bundle against the f32 source on labelled notes: agreement of decisions,
/// the largest probability difference, and each one's macro-F1.
fn parity_report(reference: &Model, exported: &Model, path: &Path, quant: &str, json: bool) -> Result<()> {
    let options = DataOptions { label_separator: Some("|".into()), ..Default::default() };
    let mut data = Dataset::load(path, &options).with_context(|| format!("loading {}", path.display()))?;
    let want = score(reference, &mut data.clone(), path)?;
    let got = score(exported, &mut data, path)?;
    let manifest = exported.manifest();
    let threshold = f64::from(manifest.decision_threshold);
    let decision = |row: &[f64]| -> Vec<bool> {
        match manifest.task {
            Task::Classification => {
                let top = row.iter().enumerate().fold(0, |b, (i, &p)| if p > row[b] { i } else { b });
                (0..row.len()).map(|i| i == top).collect()
            }
            Task::Binary => vec![row[1] >= threshold],
            _ => row.iter().map(|&p| p >= threshold).collect(),
        }
    };
    let n = want.probs.len();
    let agree = want.probs.iter().zip(&got.probs).filter(|(w, g)| decision(w) == decision(g)).count();
    let max_diff = want
        .probs
        .iter()
        .zip(&got.probs)
        .flat_map(|(w, g)| w.iter().zip(g).map(|(a, b)| (a - b).abs()))
        .fold(0.0, f64::max);
    let report_options = ReportOptions {
        decision_threshold: threshold,
        target_sensitivity: None,
        min_confidence: None,
        calibration_bins: 10,
    };
    let f1_want = build_report("parity", &want, None, &report_options)?.macro_f1;
    let f1_got = build_report("parity", &got, None, &report_options)?.macro_f1;
    let summary = serde_json::json!({
        "data": path.display().to_string(), "notes": n, "quantization": quant,
        "decision_agreement": if n == 0 { 1.0 } else { agree as f64 / n as f64 },
        "max_probability_difference": max_diff,
        "macro_f1_f32": f1_want, "macro_f1_bundle": f1_got,
    });
    if json {
        println!("{summary}");
    }
    eprintln!(
        "parity on {} ({n} notes): decisions agree on {agree}/{n}, max probability difference {max_diff:.2e}, macro-F1 f32 {f1_want:.4} vs {quant} {f1_got:.4}",
        path.display()
    );
    Ok(())
}

fn embed(a: EmbedArgs) -> Result<()> {
    let model = load_model_on(&a.model, &a.backend)?;
    let texts: Vec<&str> = a.texts.iter().map(String::as_str).collect();
    let vectors = model.embed(&texts)?;
    report_fallback(&model);
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

/// Notes to classify or tag from `--input` (CSV, TSV or JSONL by extension, read by
/// `data::table`): (id, text). Without an id column (or key) the id is the line number; an
/// empty id in a file that has one, and an empty text, are errors naming file and line.
pub(super) fn read_notes(path: &Path, text_col: &str, id_col: &str) -> Result<Vec<(String, String)>> {
    let spec = TableSpec::new(vec![ColumnSpec::text(text_col), ColumnSpec::scalar(id_col).optional()]);
    let format = table::format_of(path, None)?;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut notes = Vec::new();
    for row in table::read_all(file, format, path, &spec)? {
        let line = row.line;
        let text = row.cells[0].as_str().unwrap_or_default();
        if text.trim().is_empty() {
            bail!("{}:{line}: column `{text_col}` is empty", path.display());
        }
        notes.push((note_id(path, line, row.cells[1].as_str(), id_col)?, text.to_string()));
    }
    Ok(notes)
}

/// A note's id: its trimmed id cell, or its line number when the table has no id column.
pub(super) fn note_id(path: &Path, line: usize, cell: Option<&str>, id_col: &str) -> Result<String> {
    match cell {
        None => Ok(line.to_string()),
        Some(id) if id.trim().is_empty() => bail!("{}:{line}: column `{id_col}` is empty", path.display()),
        Some(id) => Ok(id.trim().to_string()),
    }
}

fn classify(a: ClassifyArgs) -> Result<()> {
    let model = load_model_on(&a.model, &a.backend)?;
    let notes: Vec<(String, String)> = match &a.input {
        Some(path) => read_notes(path, &a.text_col, &a.id_col)?,
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
                .map(|c| {
                    format!("; strongest passage bytes {}..{} of {} windows", c.start, c.end, prediction.chunks.len())
                })
                .unwrap_or_default();
            writeln!(out, "{id}\t{}\t{:.3}{flag}{top}", prediction.label, prediction.score)?;
        }
    }
    report_fallback(&model);
    Ok(())
}

fn similarity(a: SimilarityArgs) -> Result<()> {
    let model = load_model_on(&a.model, &a.backend)?;
    let vectors = model.embed(&[a.text_a.as_str(), a.text_b.as_str()])?;
    report_fallback(&model);
    let cos = cosine(&vectors[0], &vectors[1]);
    if a.json {
        println!("{}", serde_json::json!({ "cosine": cos }));
    } else {
        println!("{cos:.4}");
    }
    Ok(())
}

/// The config file (if any), then the flags over it.
fn train_config(a: &TrainArgs) -> Result<TrainConfig> {
    let mut c = match &a.config {
        Some(path) => TrainConfig::from_toml_file(path)?,
        None => TrainConfig::default(),
    };
    macro_rules! set {
        ($($flag:ident => $field:ident),* $(,)?) => { $( if let Some(v) = &a.$flag { c.$field = v.clone().into(); } )* };
    }
    set!(base => base, train => train, text_col => text_col, label_col => label_col, label_sep => label_separator,
         out => out, epochs => epochs, batch_size => batch_size, grad_accum => grad_accum, lr => learning_rate,
         weight_decay => weight_decay, warmup_ratio => warmup_ratio, max_grad_norm => max_grad_norm, seed => seed,
         device => device, precision => precision, threshold => decision_threshold,
         val_ratio => val_ratio, test_ratio => test_ratio, loss => loss, scale => scale, margin => margin,
         pooling => pooling, text1_col => text1_col, text2_col => text2_col, tag_scheme => tag_scheme,
         label_subtokens => label_subtokens);
    macro_rules! set_some {
        ($($flag:ident),* $(,)?) => { $( if let Some(v) = &a.$flag { c.$flag = Some(v.clone()); } )* };
    }
    set_some!(
        hub_endpoint,
        revision,
        val,
        test,
        id_col,
        group_col,
        positive_label,
        scrub_names,
        warmup_steps,
        max_seq_len,
        stride,
        dropout,
        eval_steps,
        metric,
        patience,
        save_steps,
        target_sensitivity,
        min_confidence,
        pairs_from,
        hard_negatives,
        tag_format
    );
    if let Some(w) = &a.class_weights {
        c.class_weights = ClassWeights::parse(w)?;
    }
    if let Some(l) = &a.long_notes {
        c.long_notes = Some(match l.as_str() {
            "truncate" => LongNotes::Truncate,
            "windows" => LongNotes::Windows,
            other => bail!("--long-notes {other:?}: use truncate or windows"),
        });
    }
    if let Some(f) = &a.features {
        c.features = Some(f.parse::<HeadFeatures>().map_err(|e| anyhow::anyhow!("--features: {e}"))?);
    }
    if let Some(p) = &a.probe_c {
        c.probe_c = ProbeC::parse(p)?;
    }
    c.probe_standardize |= a.probe_standardize;
    c.baseline_probe &= !a.no_baseline_probe;
    c.group_by_length &= !a.no_group_by_length;
    c.strict |= a.strict;
    c.scrub |= a.scrub || a.scrub_names.is_some();
    c.validate()?;
    Ok(c)
}

fn train_ner(a: TrainArgs) -> Result<()> {
    use bedside::hub::{resolve_base, HubOptions};
    use bedside::train::fit::RunControl;
    use bedside::train::ner::{prepare_ner, train_ner};

    let config = train_config(&a)?;
    let hub =
        HubOptions { endpoint: config.hub_endpoint.clone(), revision: config.revision.clone(), ..Default::default() };
    let base_dir = resolve_base(&config.base, &hub)?;
    let base = Checkpoint::from_dir(&base_dir).with_context(|| format!("loading {}", base_dir.display()))?;
    let data = prepare_ner(&config)?;
    eprintln!(
        "ner: {} training sentences, {} validation{}",
        data.train.len(),
        data.val.len(),
        data.test.as_ref().map(|t| format!(", {} test", t.len())).unwrap_or_default()
    );
    let control = RunControl { resume: a.resume, stop_after_steps: None };
    let result = train_ner(&base, &data, &config, &control, &mut |e| {
        eprintln!(
            "epoch {} step {}: train loss {:.4}, val entity F1 {:.4}, {:.1} windows/s{}",
            e.epoch,
            e.step,
            e.train_loss,
            e.val_f1,
            e.samples_per_second,
            if e.best { "  (best)" } else { "" }
        )
    })?;
    let r = result.report.as_ref().context("the run ended without a report")?;
    let line = |name: &str, s: &bedside::train::ner::NerScores| {
        eprintln!(
            "{name} ({} sentences): entity micro-F1 {:.4} (strict {:.4}), macro-F1 {:.4}",
            s.sentences, s.default.micro.f1, s.strict.micro.f1, s.default.macro_avg.f1
        )
    };
    line("validation", &r.validation);
    if let Some(t) = &r.test {
        line("test", t);
    }
    if let Some(b) = &r.frozen_encoder_baseline {
        line("frozen-encoder baseline", b);
    }
    if let Some(b) = &r.rules_baseline {
        line("regex scrubber baseline", b);
    }
    eprintln!("checkpoint {}; report {}", result.best_dir.display(), config.out.join("report.md").display());
    Ok(())
}

fn train(task: TaskKind, a: TrainArgs) -> Result<()> {
    use bedside::hub::{resolve_base, HubOptions};
    use bedside::train::{prepare::prepare, run};

    let config = train_config(&a)?;
    let hub =
        HubOptions { endpoint: config.hub_endpoint.clone(), revision: config.revision.clone(), ..Default::default() };
    let base_dir = resolve_base(&config.base, &hub)?;
    let base = Checkpoint::from_dir(&base_dir).with_context(|| format!("loading {}", base_dir.display()))?;
    let data = prepare(&config, task)?;
    for problem in &data.problems {
        eprintln!("skipped {problem}");
    }
    if let Some(counts) = &data.scrub {
        let list: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        eprintln!("scrubbed PHI: {}", if list.is_empty() { "none found".to_string() } else { list.join(", ") });
    }
    eprintln!(
        "{}: {} training notes, {} validation{}",
        task.as_str(),
        data.train.len(),
        data.val.len(),
        data.test.as_ref().map(|t| format!(", {} test", t.len())).unwrap_or_default()
    );
    let result = if task == TaskKind::Probe {
        run::train_probe(&base, data, &config)?
    } else {
        let control = run::RunControl { resume: a.resume, stop_after_steps: None };
        run::train(&base, task, data, &config, &control, &mut |e| {
            eprintln!(
                "epoch {} step {}: train loss {:.4}, val loss {:.4}, val {} {:.4}, {:.1} samples/s{}",
                e.epoch,
                e.step,
                e.train_loss,
                e.val_loss,
                e.metric,
                e.value,
                e.samples_per_second,
                if e.best { "  (best)" } else { "" }
            )
        })?
    };
    let r = result.report.as_ref().context("the run ended without a report")?;
    eprintln!(
        "{} ({} notes): accuracy {:.4}, macro-F1 {:.4}, weighted-F1 {:.4}, ROC-AUC {}; checkpoint {}; report {}",
        r.split,
        r.n,
        r.accuracy,
        r.macro_f1,
        r.weighted_f1,
        r.roc_auc_macro.map_or("n/a".to_string(), |v| format!("{v:.4}")),
        result.best_dir.display(),
        config.out.join("report.html").display()
    );
    if let Some(p) = r.probe.as_ref().filter(|p| p.c_auto) {
        let grid: Vec<String> = p
            .c_grid
            .iter()
            .map(|g| format!("{}: {}", g.c, g.validation.map_or("n/a".into(), |v| format!("{v:.4}"))))
            .collect();
        eprintln!("probe C = {} chosen on validation {} ({})", p.c, p.metric, grid.join(", "));
    }
    if let Some(b) = &r.baseline_probe {
        let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
        eprintln!(
            "frozen-encoder probe ({} features) on validation: {} {}, fine-tuned {}",
            b.features,
            b.metric,
            f(b.probe_validation),
            f(b.fine_tuned_validation)
        );
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}

fn train_embed(a: TrainArgs) -> Result<()> {
    use bedside::hub::{resolve_base, HubOptions};
    use bedside::train::embed::{prepare_embed, train_embed};
    use bedside::train::run::RunControl;

    let config = train_config(&a)?;
    let hub =
        HubOptions { endpoint: config.hub_endpoint.clone(), revision: config.revision.clone(), ..Default::default() };
    let base_dir = resolve_base(&config.base, &hub)?;
    let base = Checkpoint::from_dir(&base_dir).with_context(|| format!("loading {}", base_dir.display()))?;
    let data = prepare_embed(&config)?;
    for problem in &data.problems {
        eprintln!("skipped {problem}");
    }
    eprintln!(
        "embed: {} training examples from {}, {} validation examples",
        data.train.examples.len(),
        data.train.source.as_str(),
        data.val.as_ref().map_or(0, |v| v.examples.len())
    );
    let control = RunControl { resume: a.resume, stop_after_steps: None };
    let result = train_embed(&base, &config, data, &control, &mut |e| {
        eprintln!(
            "epoch {} step {}: train loss {:.4}, val Spearman {}, {:.1} examples/s{}",
            e.epoch,
            e.step,
            e.train_loss,
            e.val_spearman.map_or("n/a".into(), |v| format!("{v:.4}")),
            e.samples_per_second,
            if e.best { "  (best)" } else { "" }
        )
    })?;
    let r = result.report.as_ref().context("the run ended without a report")?;
    eprintln!(
        "{} training examples ({} loss); best epoch {}; checkpoint {} (score it with `bedside eval embed --model {} --base {}`)",
        r.train_examples,
        r.loss,
        r.best_epoch.map_or("n/a".into(), |e| e.to_string()),
        result.best_dir.display(),
        config.out.display(),
        config.base
    );
    Ok(())
}

fn eval(a: EvalArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let options = DataOptions {
        text_col: a.text_col.clone(),
        label_col: a.label_col.clone(),
        label_separator: (model.manifest().task == Task::Multilabel).then(|| a.label_sep.clone()),
        strict: a.strict,
        ..Default::default()
    };
    let mut data = Dataset::load(&a.data, &options).with_context(|| format!("loading {}", a.data.display()))?;
    let predictions = score(&model, &mut data, &a.data)?;
    for problem in &data.problems {
        eprintln!("skipped {problem}");
    }
    let manifest = model.manifest();
    let min_confidence =
        a.min_confidence.or((manifest.min_confidence > 0.0).then_some(f64::from(manifest.min_confidence)));
    let report_options = ReportOptions {
        decision_threshold: f64::from(manifest.decision_threshold),
        target_sensitivity: a.target_sensitivity,
        min_confidence,
        calibration_bins: 10,
    };
    let mut report = build_report("eval", &predictions, None, &report_options)?;
    report.problems = data.problems.clone();
    report.model = a.model.display().to_string();
    report.data = a.data.display().to_string();
    report.created_by = format!("bedside {}", env!("CARGO_PKG_VERSION"));
    let stem = a.data.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "data".into());
    let out = a.out.clone().unwrap_or_else(|| {
        if committed_dir(&a.model.join("best")).is_some() {
            a.model.join(format!("eval-{stem}"))
        } else {
            Path::new(".").join(format!("eval-{stem}"))
        }
    });
    write_report(&report, &out)?;
    println!(
        "{} notes: accuracy {:.4}, macro-F1 {:.4}, weighted-F1 {:.4}, ROC-AUC {}; report {}",
        report.n,
        report.accuracy,
        report.macro_f1,
        report.weighted_f1,
        report.roc_auc_macro.map_or("n/a".to_string(), |v| format!("{v:.4}")),
        out.join("report.html").display()
    );
    Ok(())
}

fn inspect(a: InspectArgs) -> Result<()> {
    let bytes = std::fs::read(&a.bundle).with_context(|| format!("reading {}", a.bundle.display()))?;
    let b = read_bundle(&a.bundle, &bytes)?;
    let mut value = serde_json::to_value(&b.manifest)?;
    value["name"] = serde_json::Value::String(b.name);
    value["checksum_covers"] = serde_json::to_value(b.coverage)?;
    value["checksum"] = serde_json::Value::String(b.checksum);
    value["size_bytes"] = serde_json::Value::from(bytes.len());
    value["tensors"] = serde_json::Value::from(b.weights.names().count());
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}
