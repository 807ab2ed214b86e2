//! One fine-tuning run of a multi-class note classifier: encode → shuffle → batches (with
//! gradient accumulation) → AdamW step → evaluate on validation each epoch → keep the best
//! checkpoint by macro-F1 → early stopping → final report on the test split.
//!
//! The best checkpoint is written as a Hugging Face `BertForSequenceClassification`
//! directory (config.json with id2label/label2id, model.safetensors, tokenizer.json), so
//! `bedside export`, `bedside eval` and transformers all read it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::model::{DropoutRng, Mode, SplitMix64};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};
use serde::Serialize;

use super::classifier::{balanced_class_weights, TrainableClassifier};
use super::optim::{clip_grad_norm, GroupedAdamW, LinearSchedule};
use crate::data::{Dataset, RowProblem};
use crate::eval::metrics::{multiclass_metrics, top_class, MulticlassMetrics};

/// Batch size used for evaluation (no gradients, so larger is fine).
const EVAL_BATCH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum ClassWeights {
    None,
    /// scikit-learn's "balanced": n / (k · count).
    Balanced,
    Given(Vec<f32>),
}

/// The seed recipe's options; `Default` is the defaults.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub warmup_ratio: f64,
    pub max_grad_norm: f64,
    pub max_seq_len: usize,
    pub seed: u64,
    pub class_weights: ClassWeights,
    /// Stop after this many epochs without a better validation macro-F1.
    pub patience: Option<usize>,
    pub device: Device,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            epochs: 4,
            batch_size: 16,
            grad_accum: 1,
            learning_rate: 2e-5,
            weight_decay: 0.01,
            warmup_ratio: 0.1,
            max_grad_norm: 1.0,
            max_seq_len: 128,
            seed: 42,
            class_weights: ClassWeights::None,
            patience: None,
            device: Device::Cpu,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub steps: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_macro_f1: f64,
    pub val_accuracy: f64,
    pub learning_rate: f64,
    pub samples_per_second: f64,
    pub best: bool,
}

/// What `report.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Which split the numbers are from: "test", or "validation" without a test set.
    pub split: String,
    pub n: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    pub roc_auc_macro: Option<f64>,
    pub labels: Vec<String>,
    pub confusion_matrix: Vec<Vec<usize>>,
    pub per_class: serde_json::Map<String, serde_json::Value>,
    pub best_epoch: usize,
    pub history: Vec<EpochLog>,
    pub problems: Vec<RowProblem>,
    pub metrics: MulticlassMetrics,
}

pub struct RunResult {
    pub best_dir: PathBuf,
    pub report: Report,
}

/// The epoch's batch order: a seeded shuffle, the same on every machine.
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed).shuffle(&mut order);
    order
}

struct Encoded {
    ids: Vec<Vec<u32>>,
    targets: Vec<u32>,
}

fn encode(model: &TrainableClassifier, data: &Dataset, labels: &[String]) -> Result<Encoded> {
    let mut encoded = Encoded { ids: Vec::with_capacity(data.len()), targets: Vec::with_capacity(data.len()) };
    for (i, ex) in data.examples.iter().enumerate() {
        let label = ex.labels.first().context("example without a label")?;
        let target = labels.iter().position(|l| l == label).context("label not in the label set")?;
        encoded.ids.push(model.encode(&ex.text, i).with_context(|| format!("line {}", ex.line))?);
        encoded.targets.push(target as u32);
    }
    Ok(encoded)
}

/// Adds `grads` into `acc` (gradient accumulation over micro-batches).
fn accumulate(acc: &mut Option<GradStore>, grads: GradStore, model: &TrainableClassifier) -> Result<()> {
    let Some(total) = acc else {
        *acc = Some(grads);
        return Ok(());
    };
    for (_, var) in model.vars() {
        if let Some(g) = grads.get(var.as_tensor()) {
            let sum = match total.get(var.as_tensor()) {
                Some(prev) => (prev + g)?,
                None => g.clone(),
            };
            total.insert(var.as_tensor(), sum);
        }
    }
    Ok(())
}

/// Loss and per-class probabilities on a data set, dropout off.
fn evaluate(model: &TrainableClassifier, data: &Encoded) -> Result<(f64, Vec<Vec<f64>>)> {
    let mut probs = Vec::with_capacity(data.ids.len());
    let mut loss_sum = 0f64;
    for (ids, targets) in data.ids.chunks(EVAL_BATCH).zip(data.targets.chunks(EVAL_BATCH)) {
        let batch: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let logits = model.logits(&batch, Mode::Eval)?;
        loss_sum += model.loss(&logits, targets, None)?.to_scalar::<f32>()? as f64 * targets.len() as f64;
        let p = candle_nn::ops::softmax(&logits, 1)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
        probs.extend(p.into_iter().map(|row| row.into_iter().map(f64::from).collect::<Vec<f64>>()));
    }
    Ok((loss_sum / data.ids.len().max(1) as f64, probs))
}

fn metrics_of(data: &Encoded, probs: &[Vec<f64>]) -> Result<MulticlassMetrics> {
    let y_true: Vec<usize> = data.targets.iter().map(|&t| t as usize).collect();
    let y_pred: Vec<usize> = probs.iter().map(|p| top_class(p).0).collect();
    multiclass_metrics(&y_true, &y_pred, probs).map_err(|e| anyhow::anyhow!("metrics: {e}"))
}

/// Writes the model as a transformers `BertForSequenceClassification` directory, atomically:
/// into `<dir>.partial`, then renamed over `dir`.
pub fn save_checkpoint(model: &TrainableClassifier, ckpt: &Checkpoint, labels: &[String], dir: &Path) -> Result<()> {
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let weights = model.snapshot()?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, w) in weights.iter() {
        let hf_name = if name.starts_with("classifier.") { name.clone() } else { format!("bert.{name}") };
        tensors.insert(hf_name, w.to_f32()?.contiguous()?);
    }
    candle_core::safetensors::save(&tensors, partial.join("model.safetensors"))?;
    let mut config = serde_json::to_value(model.config())?;
    config["architectures"] = serde_json::json!(["BertForSequenceClassification"]);
    config["model_type"] = serde_json::json!("bert");
    config["id2label"] = labels.iter().enumerate().map(|(i, l)| (i.to_string(), serde_json::json!(l))).collect();
    config["label2id"] = labels.iter().enumerate().map(|(i, l)| (l.clone(), serde_json::json!(i))).collect();
    std::fs::write(partial.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    std::fs::write(partial.join("tokenizer.json"), &ckpt.tokenizer_json)?;
    let special = &ckpt.special_tokens;
    let tokenizer_config = serde_json::json!({
        "cls_token": special.cls, "sep_token": special.sep, "pad_token": special.pad,
        "tokenizer_class": "BertTokenizer", "model_max_length": model.config().max_position_embeddings,
    });
    std::fs::write(partial.join("tokenizer_config.json"), serde_json::to_string_pretty(&tokenizer_config)?)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&partial, dir).with_context(|| format!("moving the checkpoint to {}", dir.display()))?;
    Ok(())
}

fn report(split: &str, metrics: MulticlassMetrics, labels: &[String], best_epoch: usize, history: Vec<EpochLog>, problems: Vec<RowProblem>) -> Report {
    let per_class = metrics
        .per_class
        .iter()
        .map(|c| {
            let value = serde_json::json!({
                "precision": c.precision, "recall": c.recall, "f1": c.f1, "support": c.support,
                "sensitivity": c.sensitivity, "specificity": c.specificity,
                "roc_auc": c.roc_auc, "average_precision": c.average_precision,
            });
            (labels[c.class].clone(), value)
        })
        .collect();
    Report {
        split: split.to_string(),
        n: metrics.n_samples,
        accuracy: metrics.accuracy,
        macro_f1: metrics.macro_avg.f1,
        weighted_f1: metrics.weighted_avg.f1,
        roc_auc_macro: metrics.macro_roc_auc,
        labels: labels.to_vec(),
        confusion_matrix: metrics.confusion.clone(),
        per_class,
        best_epoch,
        history,
        problems,
        metrics,
    }
}

/// Fine-tunes `ckpt` on `train`, selecting on `val`, reporting on `test` (or `val`).
/// Writes `out/best/`, `out/log.jsonl` and `out/report.json`; `on_epoch` sees each epoch.
pub fn train_classifier(
    ckpt: &Checkpoint,
    train: &Dataset,
    mut val: Dataset,
    mut test: Option<Dataset>,
    options: &RunOptions,
    out: &Path,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<RunResult> {
    ensure!(options.epochs > 0 && options.batch_size > 0 && options.grad_accum > 0, "epochs, batch size and accumulation must be positive");
    let label_counts = train.label_counts();
    let labels: Vec<String> = label_counts.keys().cloned().collect();
    ensure!(labels.len() >= 2, "training data has {} label(s); a classifier needs at least 2", labels.len());
    let mut problems = train.problems.clone();
    val.filter_unseen_labels(&labels, Path::new("validation"));
    problems.extend(val.problems.iter().cloned());
    if let Some(t) = test.as_mut() {
        t.filter_unseen_labels(&labels, Path::new("test"));
        problems.extend(t.problems.iter().cloned());
    }
    ensure!(!val.is_empty(), "the validation set is empty");

    let model = TrainableClassifier::new(ckpt, labels.len(), options.max_seq_len, options.seed, &options.device)?;
    let train_set = encode(&model, train, &labels)?;
    let val_set = encode(&model, &val, &labels)?;
    let counts: Vec<usize> = label_counts.values().copied().collect();
    let class_weights = match &options.class_weights {
        ClassWeights::None => None,
        ClassWeights::Balanced => Some(balanced_class_weights(&counts)),
        ClassWeights::Given(w) if w.len() == labels.len() => Some(w.clone()),
        ClassWeights::Given(w) => bail!("{} class weights given for {} labels ({})", w.len(), labels.len(), labels.join(", ")),
    };

    let micro_batches_per_epoch = train_set.ids.len().div_ceil(options.batch_size);
    let steps_per_epoch = micro_batches_per_epoch.div_ceil(options.grad_accum);
    let total_steps = steps_per_epoch * options.epochs;
    let schedule = LinearSchedule {
        peak_lr: options.learning_rate,
        warmup_steps: (options.warmup_ratio * total_steps as f64).round() as usize,
        total_steps,
    };
    let mut optimizer = GroupedAdamW::new(model.vars(), schedule.lr(0), options.weight_decay)?;
    let vars: Vec<_> = model.vars().iter().map(|(_, v)| v.clone()).collect();
    let rng = DropoutRng::new(options.seed);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut log = std::fs::File::create(out.join("log.jsonl"))?;
    let best_dir = out.join("best");
    let (mut best_f1, mut best_epoch, mut since_best) = (f64::NEG_INFINITY, 0, 0);
    let mut history = Vec::new();
    let mut step = 0;

    for epoch in 1..=options.epochs {
        let started = Instant::now();
        let order = shuffled(train_set.ids.len(), options.seed.wrapping_add(epoch as u64));
        let (mut loss_sum, mut seen) = (0f64, 0usize);
        for group in order.chunks(options.batch_size * options.grad_accum) {
            let mut acc = None;
            let micro: Vec<&[usize]> = group.chunks(options.batch_size).collect();
            for indices in &micro {
                let batch: Vec<&[u32]> = indices.iter().map(|&i| train_set.ids[i].as_slice()).collect();
                let targets: Vec<u32> = indices.iter().map(|&i| train_set.targets[i]).collect();
                let logits = model.logits(&batch, Mode::Train(&rng))?;
                let loss = model.loss(&logits, &targets, class_weights.as_deref())?;
                loss_sum += loss.to_scalar::<f32>()? as f64 * targets.len() as f64;
                seen += targets.len();
                accumulate(&mut acc, (loss / micro.len() as f64)?.backward()?, &model)?;
            }
            if let Some(mut grads) = acc {
                optimizer.set_learning_rate(schedule.lr(step));
                clip_grad_norm(&mut grads, &vars, options.max_grad_norm)?;
                optimizer.step(&grads)?;
                step += 1;
            }
        }
        let (val_loss, val_probs) = evaluate(&model, &val_set)?;
        let val_metrics = metrics_of(&val_set, &val_probs)?;
        let improved = val_metrics.macro_avg.f1 > best_f1;
        if improved {
            best_f1 = val_metrics.macro_avg.f1;
            best_epoch = epoch;
            since_best = 0;
            save_checkpoint(&model, ckpt, &labels, &best_dir)?;
        } else {
            since_best += 1;
        }
        let entry = EpochLog {
            epoch,
            steps: step,
            train_loss: loss_sum / seen.max(1) as f64,
            val_loss,
            val_macro_f1: val_metrics.macro_avg.f1,
            val_accuracy: val_metrics.accuracy,
            learning_rate: schedule.lr(step),
            samples_per_second: seen as f64 / started.elapsed().as_secs_f64().max(1e-9),
            best: improved,
        };
        writeln!(log, "{}", serde_json::to_string(&entry)?)?;
        on_epoch(&entry);
        history.push(entry);
        if options.patience.is_some_and(|p| since_best >= p) {
            break;
        }
    }

    // The final report comes from the best checkpoint, reloaded as users will load it.
    let best = Checkpoint::from_dir(&best_dir)?;
    let best_model = TrainableClassifier::from_trained(&best, options.max_seq_len, &options.device)?;
    let (split, eval_data) = match &test {
        Some(t) if !t.is_empty() => ("test", t),
        _ => ("validation", &val),
    };
    let eval_set = encode(&best_model, eval_data, &labels)?;
    let (_, probs) = evaluate(&best_model, &eval_set)?;
    let metrics = metrics_of(&eval_set, &probs)?;
    let report = report(split, metrics, &labels, best_epoch, history, problems);
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    Ok(RunResult { best_dir, report })
}
