//! One classifier fine-tuning run: encode → the shared loop of fit.rs (shuffle, batches with
//! gradient accumulation, AdamW, evaluation on validation each epoch or every N steps, the
//! best checkpoint by the chosen metric, early stopping, resumable state) → final report on
//! the test split from the best checkpoint, reloaded as users load it.
//!
//! The best checkpoint is a Hugging Face `BertForSequenceClassification` directory
//! (config.json with id2label/label2id, model.safetensors, tokenizer.json) whose config also
//! carries the serving settings (`bedside` key: task, window, aggregation, the decision
//! threshold chosen on validation), so `bedside export`, `bedside eval`, transformers and
//! the browser all read it. `<out>/state/` holds what `--resume` needs to continue to the
//! same final weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use bedside_runtime::bundle::Task;
use bedside_runtime::checkpoint::{Checkpoint, ServingSettings, SERVING_KEY};
use bedside_runtime::model::{Architecture, HeadFeatures, Mode, Precision};
use bedside_runtime::pipeline::aggregate::{Aggregation, CLINICALBERT_DEFAULT_C};
use bedside_runtime::pipeline::scrub::{ScrubOptions, ScrubSettings};
use candle_core::{Device, Tensor};
use serde::Serialize;

use super::classifier::{balanced_class_weights, ModelOptions, TrainableClassifier};
use super::config::{ClassWeights, LongNotes, Metric, ProbeC, TaskKind, TrainConfig, PROBE_C_GRID};
pub use super::fit::RunControl;
use super::fit::{fit, schedule, Evaluated, Learner, RunState};
use super::prepare::RunData;
use super::probe::{fit_multiclass, Probe, ProbeOptions};
use crate::data::{Dataset, Example};
use crate::durable;
use crate::eval::report::{
    build_report, write_report, BaselineProbe, HistoryPoint, Predictions, ProbeGridPoint, ProbeSummary, Report,
    ReportOptions, ReportTask, Truth,
};

/// Windows per forward pass when evaluating (no gradients, so larger is fine).
const EVAL_BATCH: usize = 32;

/// The labels of a task and how a note's labels become its target.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSpace {
    pub task: TaskKind,
    /// Output labels; binary: `[negative, positive]`.
    pub labels: Vec<String>,
}

/// One note's truth, in label-index terms.
#[derive(Debug, Clone, PartialEq)]
pub enum NoteTruth {
    Class(usize),
    Binary(bool),
    Labels(Vec<bool>),
}

impl LabelSpace {
    /// The labels seen in training: sorted, so the same data gives the same head order.
    pub fn from_train(task: TaskKind, train: &Dataset, positive: Option<&str>) -> Result<LabelSpace> {
        let counts = train.label_counts();
        let mut labels: Vec<String> = counts.keys().cloned().collect();
        match task {
            TaskKind::Binary => {
                ensure!(
                    labels.len() == 2,
                    "binary training needs exactly 2 labels in the training data, found {}: {}",
                    labels.len(),
                    labels.join(", ")
                );
                if let Some(p) = positive {
                    let negative = labels.iter().find(|l| *l != p).cloned();
                    ensure!(
                        labels.iter().any(|l| l == p),
                        "positive label {p:?} is not in the training data ({})",
                        labels.join(", ")
                    );
                    labels = vec![negative.context("binary labels")?, p.to_string()];
                }
            }
            TaskKind::Multilabel => ensure!(!labels.is_empty(), "the training data has no labels"),
            TaskKind::Classify | TaskKind::Probe => {
                ensure!(labels.len() >= 2, "training data has {} label(s); a classifier needs at least 2", labels.len())
            }
            TaskKind::Ner => bail!("token classification reads tagged files (train/ner.rs), not labelled notes"),
        }
        Ok(LabelSpace { task, labels })
    }

    /// Outputs of the head: one sigmoid for binary, one per label otherwise.
    pub fn outputs(&self) -> usize {
        if self.task == TaskKind::Binary {
            1
        } else {
            self.labels.len()
        }
    }

    fn sigmoid(&self) -> bool {
        matches!(self.task, TaskKind::Binary | TaskKind::Multilabel)
    }

    fn index(&self, label: &str) -> Result<usize> {
        self.labels.iter().position(|l| l == label).context("a label is not in the label set")
    }

    pub fn truth(&self, example: &Example) -> Result<NoteTruth> {
        let first = example.labels.first().context("example without a label")?;
        Ok(match self.task {
            TaskKind::Classify | TaskKind::Probe => NoteTruth::Class(self.index(first)?),
            TaskKind::Ner => bail!("token classification has no note-level truth"),
            TaskKind::Binary => NoteTruth::Binary(self.index(first)? == 1),
            TaskKind::Multilabel => {
                let mut row = vec![false; self.labels.len()];
                for label in &example.labels {
                    row[self.index(label)?] = true;
                }
                NoteTruth::Labels(row)
            }
        })
    }

    pub fn report_task(&self) -> ReportTask {
        match self.task {
            // `from_train` refuses Ner: no label space of that task exists.
            TaskKind::Classify | TaskKind::Probe | TaskKind::Ner => ReportTask::Multiclass,
            TaskKind::Binary => ReportTask::Binary,
            TaskKind::Multilabel => ReportTask::Multilabel,
        }
    }

    pub fn serving_task(&self) -> Task {
        match self.task {
            TaskKind::Classify | TaskKind::Probe => Task::Classification,
            TaskKind::Ner => Task::TokenClassification,
            TaskKind::Binary => Task::Binary,
            TaskKind::Multilabel => Task::Multilabel,
        }
    }

    /// Multi-class notes average their windows; binary and multi-label ones use the
    /// ClinicalBERT rule, so one alarming passage counts.
    pub fn aggregation(&self) -> Aggregation {
        if self.sigmoid() {
            Aggregation::Clinicalbert { c: CLINICALBERT_DEFAULT_C }
        } else {
            Aggregation::Mean
        }
    }

    /// Which rows of a data set this head can be scored on (labels seen in training).
    pub fn keep_known(&self, data: &mut Dataset, file: &Path) {
        data.filter_unseen_labels(&self.labels, file);
    }
}

/// Moves validation and test rows whose labels training never saw into the problems,
/// reported against the file they came from (a split's rows come from the training file).
fn keep_known(space: &LabelSpace, data: &mut RunData, config: &TrainConfig) {
    let val_file = config.val.clone().unwrap_or_else(|| config.train.clone());
    space.keep_known(&mut data.val, &val_file);
    data.problems.append(&mut data.val.problems);
    if let Some(test) = data.test.as_mut() {
        let test_file = config.test.clone().unwrap_or_else(|| config.train.clone());
        space.keep_known(test, &test_file);
        data.problems.append(&mut test.problems);
    }
}

/// A training item: one window (or a note's first window) and its note's target.
struct Item {
    ids: Vec<u32>,
    truth: NoteTruth,
}

/// Notes for evaluation: all windows of each note, and its truth.
pub struct NoteSet {
    windows: Vec<Vec<Vec<u32>>>,
    truth: Vec<NoteTruth>,
}

impl NoteSet {
    pub fn encode(model: &TrainableClassifier, space: &LabelSpace, data: &Dataset) -> Result<NoteSet> {
        let mut set = NoteSet { windows: Vec::with_capacity(data.len()), truth: Vec::with_capacity(data.len()) };
        for (i, ex) in data.examples.iter().enumerate() {
            set.windows.push(model.windows(&ex.text, i).with_context(|| format!("line {}", ex.line))?);
            set.truth.push(space.truth(ex)?);
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.truth.len()
    }

    pub fn is_empty(&self) -> bool {
        self.truth.is_empty()
    }

    /// Every window of every note, with the index of its note, in order.
    fn flat_windows(&self) -> Vec<(usize, &[u32])> {
        self.windows.iter().enumerate().flat_map(|(n, ws)| ws.iter().map(move |w| (n, w.as_slice()))).collect()
    }

    fn report_truth(&self, space: &LabelSpace) -> Truth {
        match space.report_task() {
            ReportTask::Multiclass => {
                Truth::Classes(self.truth.iter().map(|t| if let NoteTruth::Class(c) = t { *c } else { 0 }).collect())
            }
            ReportTask::Binary => {
                Truth::Binary(self.truth.iter().map(|t| matches!(t, NoteTruth::Binary(true))).collect())
            }
            ReportTask::Multilabel => Truth::Multilabel(
                self.truth.iter().map(|t| if let NoteTruth::Labels(l) = t { l.clone() } else { Vec::new() }).collect(),
            ),
        }
    }
}

fn training_items(
    model: &TrainableClassifier,
    space: &LabelSpace,
    data: &Dataset,
    long: LongNotes,
) -> Result<Vec<Item>> {
    let mut items = Vec::with_capacity(data.len());
    for (i, ex) in data.examples.iter().enumerate() {
        let truth = space.truth(ex)?;
        match long {
            LongNotes::Truncate => {
                items.push(Item { ids: model.encode(&ex.text, i).with_context(|| format!("line {}", ex.line))?, truth })
            }
            LongNotes::Windows => {
                for ids in model.windows(&ex.text, i).with_context(|| format!("line {}", ex.line))? {
                    items.push(Item { ids, truth: truth.clone() });
                }
            }
        }
    }
    Ok(items)
}

/// The loss a batch is trained on, from its logits and truths.
struct Objective {
    /// Softmax: weight per class. Binary: weight per class [negative, positive] applied per row.
    class_weights: Option<Vec<f32>>,
    /// Multi-label: weight of a positive, per label (PyTorch's `pos_weight`).
    pos_weight: Option<Vec<f32>>,
}

impl Objective {
    fn new(space: &LabelSpace, items: &[Item], weights: &ClassWeights) -> Result<Objective> {
        let k = space.labels.len();
        let mut counts = vec![0usize; k];
        for item in items {
            match &item.truth {
                NoteTruth::Class(c) => counts[*c] += 1,
                NoteTruth::Binary(b) => counts[usize::from(*b)] += 1,
                NoteTruth::Labels(l) => l.iter().enumerate().filter(|(_, v)| **v).for_each(|(j, _)| counts[j] += 1),
            }
        }
        let given = match weights {
            ClassWeights::Given(w) if w.len() != k => {
                bail!("{} class weights given for {} labels ({})", w.len(), k, space.labels.join(", "))
            }
            ClassWeights::Given(w) => Some(w.clone()),
            _ if weights.is_balanced() => None,
            _ => return Ok(Objective { class_weights: None, pos_weight: None }),
        };
        Ok(match space.task {
            // scikit-learn's "balanced" for a multi-label head is per label: negatives / positives.
            TaskKind::Multilabel => Objective {
                class_weights: None,
                pos_weight: Some(given.unwrap_or_else(|| {
                    counts.iter().map(|&p| if p == 0 { 1.0 } else { (items.len() - p) as f32 / p as f32 }).collect()
                })),
            },
            _ => Objective {
                class_weights: Some(given.unwrap_or_else(|| balanced_class_weights(&counts))),
                pos_weight: None,
            },
        })
    }

    fn loss(&self, model: &TrainableClassifier, logits: &Tensor, truth: &[&NoteTruth]) -> Result<Tensor> {
        match truth.first() {
            Some(NoteTruth::Class(_)) => {
                let targets: Vec<u32> =
                    truth.iter().map(|t| if let NoteTruth::Class(c) = t { *c as u32 } else { 0 }).collect();
                model.loss(logits, &targets, self.class_weights.as_deref())
            }
            Some(NoteTruth::Binary(_)) => {
                let positive: Vec<bool> = truth.iter().map(|t| matches!(t, NoteTruth::Binary(true))).collect();
                let targets: Vec<f32> = positive.iter().map(|&p| f32::from(u8::from(p))).collect();
                let weights: Option<Vec<f32>> =
                    self.class_weights.as_ref().map(|w| positive.iter().map(|&p| w[usize::from(p)]).collect());
                model.bce_loss(logits, &targets, None, weights.as_deref())
            }
            Some(NoteTruth::Labels(_)) => {
                let targets: Vec<f32> = truth
                    .iter()
                    .flat_map(|t| match t {
                        NoteTruth::Labels(l) => l.iter().map(|&v| f32::from(u8::from(v))).collect::<Vec<_>>(),
                        _ => Vec::new(),
                    })
                    .collect();
                model.bce_loss(logits, &targets, self.pos_weight.as_deref(), None)
            }
            None => bail!("empty batch"),
        }
    }
}

/// Per-note probabilities (rows as the report expects) and the mean window loss.
pub fn evaluate(model: &TrainableClassifier, space: &LabelSpace, notes: &NoteSet) -> Result<(Vec<Vec<f64>>, f64)> {
    let plain = Objective { class_weights: None, pos_weight: None };
    let flat = notes.flat_windows();
    let mut window_probs: Vec<Vec<Vec<f32>>> = vec![Vec::new(); notes.len()];
    let mut loss_sum = 0f64;
    for batch in flat.chunks(EVAL_BATCH) {
        let ids: Vec<&[u32]> = batch.iter().map(|(_, w)| *w).collect();
        let truth: Vec<&NoteTruth> = batch.iter().map(|(n, _)| &notes.truth[*n]).collect();
        let logits = model.logits(&ids, Mode::Eval)?;
        loss_sum += plain.loss(model, &logits, &truth)?.to_scalar::<f32>()? as f64 * batch.len() as f64;
        let probs =
            if space.sigmoid() { candle_nn::ops::sigmoid(&logits)? } else { candle_nn::ops::softmax(&logits, 1)? };
        for ((n, _), row) in batch.iter().zip(probs.to_device(&Device::Cpu)?.to_vec2::<f32>()?) {
            window_probs[*n].push(row);
        }
    }
    let aggregation = space.aggregation();
    let rows = window_probs
        .iter()
        .map(|windows| {
            let note = aggregation.combine(windows);
            match space.task {
                TaskKind::Binary => vec![1.0 - note[0] as f64, note[0] as f64],
                _ => note.into_iter().map(f64::from).collect(),
            }
        })
        .collect();
    Ok((rows, loss_sum / flat.len().max(1) as f64))
}

pub fn predictions(space: &LabelSpace, notes: &NoteSet, probs: Vec<Vec<f64>>) -> Predictions {
    Predictions { task: space.report_task(), labels: space.labels.clone(), truth: notes.report_truth(space), probs }
}

fn metric_value(metric: Metric, report: &Report, loss: f64) -> f64 {
    let value = match metric {
        Metric::MacroF1 => Some(report.macro_f1),
        Metric::Accuracy => Some(report.accuracy),
        Metric::RocAuc => report.roc_auc_macro,
        Metric::PrAuc => report.pr_auc_macro,
        Metric::Loss => Some(loss),
    };
    // An undefined AUC (one class only in validation) must not win: treat it as the worst.
    value.filter(|v| v.is_finite()).unwrap_or(metric.worst())
}

/// Writes the model as a transformers `BertForSequenceClassification` directory with the
/// serving settings under `bedside`, atomically ([`durable::replace_dir_atomic`]).
pub fn save_checkpoint(
    model: &TrainableClassifier,
    ckpt: &Checkpoint,
    serving: &ServingSettings,
    dir: &Path,
) -> Result<()> {
    durable::replace_dir_atomic(dir, |partial| write_checkpoint(model, ckpt, serving, partial))
}

fn write_checkpoint(
    model: &TrainableClassifier,
    ckpt: &Checkpoint,
    serving: &ServingSettings,
    partial: &Path,
) -> Result<()> {
    let weights = model.snapshot()?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let arch = model.config().architecture();
    for (name, w) in weights.iter() {
        let hf_name =
            if name.starts_with("classifier.") { name.clone() } else { format!("{}{name}", arch.weight_prefix()) };
        tensors.insert(hf_name, w.to_f32()?.contiguous()?);
    }
    candle_core::safetensors::save(&tensors, partial.join("model.safetensors"))?;
    let mut config = serde_json::to_value(model.config())?;
    // Head labels in output order: a binary head's one output is the positive label.
    let head_labels: Vec<&String> = match serving.task {
        Task::Binary => serving.labels.iter().skip(1).collect(),
        _ => serving.labels.iter().collect(),
    };
    let family = match arch {
        Architecture::Bert => "Bert",
        Architecture::Roberta if model.config().model_type.as_deref() == Some("xlm-roberta") => "XLMRoberta",
        Architecture::Roberta => "Roberta",
    };
    let head = if serving.task == Task::TokenClassification { "TokenClassification" } else { "SequenceClassification" };
    config["architectures"] = serde_json::json!([format!("{family}For{head}")]);
    if model.config().model_type.is_none() {
        config["model_type"] = serde_json::json!("bert");
    }
    config["id2label"] = head_labels.iter().enumerate().map(|(i, l)| (i.to_string(), serde_json::json!(l))).collect();
    config["label2id"] = head_labels.iter().enumerate().map(|(i, l)| (l.to_string(), serde_json::json!(i))).collect();
    config["problem_type"] = match serving.task {
        Task::Multilabel => serde_json::json!("multi_label_classification"),
        Task::Classification => serde_json::json!("single_label_classification"),
        _ => serde_json::Value::Null,
    };
    config[SERVING_KEY] = serde_json::to_value(serving)?;
    std::fs::write(partial.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    std::fs::write(partial.join("tokenizer.json"), &ckpt.tokenizer_json)?;
    let special = &ckpt.special_tokens;
    let tokenizer_config = serde_json::json!({
        "cls_token": special.cls, "sep_token": special.sep, "pad_token": special.pad,
        "tokenizer_class": format!("{family}TokenizerFast"), "model_max_length": serving.max_seq_len,
    });
    std::fs::write(partial.join("tokenizer_config.json"), serde_json::to_string_pretty(&tokenizer_config)?)?;
    Ok(())
}

/// Rewrites only the serving settings of a saved checkpoint (after the threshold is chosen).
pub fn update_serving(dir: &Path, serving: &ServingSettings) -> Result<()> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut config: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    config[SERVING_KEY] = serde_json::to_value(serving)?;
    durable::write_file_atomic(&path, serde_json::to_string_pretty(&config)?.as_bytes())?;
    Ok(())
}

/// What a caller sees after each evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalEvent {
    pub epoch: usize,
    pub step: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub metric: &'static str,
    pub value: f64,
    pub best: bool,
    pub samples_per_second: f64,
}

pub struct RunResult {
    pub best_dir: PathBuf,
    /// `None` when the run stopped at `stop_after_steps` (no report was written).
    pub report: Option<Report>,
}

impl RunResult {
    pub fn interrupted(&self) -> bool {
        self.report.is_none()
    }
}

pub fn serving_settings(space: &LabelSpace, model: &TrainableClassifier, config: &TrainConfig) -> ServingSettings {
    ServingSettings {
        task: space.serving_task(),
        labels: space.labels.clone(),
        max_seq_len: model.window().max_len(),
        stride: model.window().stride(),
        aggregation: space.aggregation(),
        decision_threshold: config.decision_threshold as f32,
        min_confidence: config.min_confidence.unwrap_or(0.0) as f32,
        head_features: model.head_features(),
        entity_aggregation: Default::default(),
        scrub: scrub_settings(config),
    }
}

/// How [`prepare`](super::prepare) scrubs the run's text (every pattern kind, plus the names
/// list when one was given), as serving must repeat it; `None` when scrubbing is off. The
/// names themselves are never recorded, only that a list was used.
pub fn scrub_settings(config: &TrainConfig) -> Option<ScrubSettings> {
    config.scrub.then(|| ScrubSettings::new(&ScrubOptions::all(), config.scrub_names.is_some()))
}

/// `cpu`, `cuda` (an error that says why when there is none) or `auto` (CUDA when this binary
/// has it and the machine has a driver and a GPU, else the CPU, saying why on stderr).
pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda_device(),
        "auto" => Ok(cuda_device().unwrap_or_else(|why| {
            eprintln!("bedside: training on the CPU: {why:#}");
            Device::Cpu
        })),
        other => bail!("unknown device {other:?}: use cpu, cuda or auto"),
    }
}

/// bf16 runs on the CPU too, emulated (candle's CPU has no bf16 matmul): say so, since it is
/// there to check numerics and is slower than f32.
pub fn say_how_bf16_runs(config: &TrainConfig, device: &Device) -> Result<()> {
    if config.matmul_precision()? == Precision::Bf16 && device.is_cpu() {
        eprintln!(
            "bedside: bf16 on the CPU rounds matmul operands and products to bf16 and sums in f32 \
             (candle's CPU has no bf16 kernels): a GPU bf16 run's numerics, slower than f32"
        );
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    bail!("this bedside was built without CUDA: rebuild with `bash scripts/gpu/build.sh`")
}

/// The CUDA build loads the driver at run time (scripts/gpu/build.sh builds cudarc that way), so
/// the same binary starts on a machine without one. Probing first turns "no driver" into an
/// error here instead of a panic inside cudarc at the first CUDA call.
#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    const DRIVER: &[&str] = &["libcuda.so.1", "libcuda.so", "nvcuda.dll"];
    // SAFETY: loading the NVIDIA driver runs its initialisers, which is what using CUDA means.
    let found = DRIVER.iter().any(|name| unsafe { libloading::Library::new(*name) }.is_ok());
    ensure!(found, "no NVIDIA driver on this machine ({} not found)", DRIVER[0]);
    Device::new_cuda(0).map_err(|e| anyhow::anyhow!("the NVIDIA driver is here but CUDA device 0 did not open: {e}"))
}

pub fn model_options(config: &TrainConfig, task: TaskKind) -> ModelOptions {
    ModelOptions {
        max_seq_len: config.max_seq_len_for(task),
        stride: config.stride_for(task),
        dropout: config.dropout,
        features: config.features_for(task),
        token_head: task == TaskKind::Ner,
    }
}

/// A classifier's part of the shared loop: the task's loss on windows, validation scored per
/// note with the runtime's aggregation, the best checkpoint as a transformers directory.
struct Classifying<'a> {
    ckpt: &'a Checkpoint,
    space: &'a LabelSpace,
    items: Vec<Item>,
    objective: Objective,
    val_notes: NoteSet,
    metric: Metric,
    config: &'a TrainConfig,
    serving: ServingSettings,
    best_dir: &'a Path,
    on_eval: &'a mut dyn FnMut(&EvalEvent),
}

impl Learner for Classifying<'_> {
    type Point = HistoryPoint;
    /// The validation loss.
    type Scores = f64;

    fn items(&self) -> usize {
        self.items.len()
    }

    fn lengths(&self) -> Option<Vec<usize>> {
        Some(self.items.iter().map(|item| item.ids.len()).collect())
    }

    fn loss(&self, model: &TrainableClassifier, batch: &[usize], mode: Mode) -> Result<Option<Tensor>> {
        let ids: Vec<&[u32]> = batch.iter().map(|&i| self.items[i].ids.as_slice()).collect();
        let truth: Vec<&NoteTruth> = batch.iter().map(|&i| &self.items[i].truth).collect();
        let logits = model.logits(&ids, mode)?;
        Ok(Some(self.objective.loss(model, &logits, &truth)?))
    }

    fn evaluate(&mut self, model: &TrainableClassifier) -> Result<(Option<f64>, f64)> {
        let (probs, val_loss) = evaluate(model, self.space, &self.val_notes)?;
        let options = report_options(self.config, false);
        let val_report = build_report("validation", &predictions(self.space, &self.val_notes, probs), None, &options)?;
        Ok((Some(metric_value(self.metric, &val_report, val_loss)), val_loss))
    }

    fn better(&self, candidate: f64, best: f64) -> bool {
        self.metric.better(candidate, best)
    }

    fn save_best(&self, model: &TrainableClassifier) -> Result<()> {
        save_checkpoint(model, self.ckpt, &self.serving, self.best_dir)
    }

    fn record(&mut self, at: &Evaluated, val_loss: f64) -> Result<(serde_json::Value, HistoryPoint)> {
        let value = at.value.unwrap_or(self.metric.worst());
        let event = EvalEvent {
            epoch: at.epoch,
            step: at.step,
            train_loss: at.train_loss,
            val_loss,
            metric: self.metric.as_str(),
            value,
            best: at.best,
            samples_per_second: at.samples_per_second,
        };
        (self.on_eval)(&event);
        let point = HistoryPoint {
            epoch: at.epoch,
            step: at.step,
            train_loss: Some(at.train_loss),
            val_loss: Some(val_loss),
            val_metric: Some(value).filter(|v| v.is_finite()),
            learning_rate: Some(at.learning_rate),
        };
        Ok((serde_json::to_value(&event)?, point))
    }
}

/// Fine-tunes `ckpt` for `task` on `data` with `config`; writes `<out>/best/`,
/// `<out>/log.jsonl`, `<out>/report.{json,html,md}` and `<out>/state/`.
pub fn train(
    ckpt: &Checkpoint,
    task: TaskKind,
    mut data: RunData,
    config: &TrainConfig,
    control: &RunControl,
    on_eval: &mut dyn FnMut(&EvalEvent),
) -> Result<RunResult> {
    config.validate()?;
    if task == TaskKind::Probe {
        return train_probe(ckpt, data, config);
    }
    let space = LabelSpace::from_train(task, &data.train, config.positive_label.as_deref())?;
    keep_known(&space, &mut data, config);
    ensure!(!data.val.is_empty(), "the validation set is empty");
    let metric = config.metric_for(task)?;
    let device = device(&config.device)?;
    say_how_bf16_runs(config, &device)?;

    let model = TrainableClassifier::new(ckpt, space.outputs(), model_options(config, task), config.seed, &device)?;
    let items = training_items(&model, &space, &data.train, config.long_notes_for(task))?;
    let val_notes = NoteSet::encode(&model, &space, &data.val)?;
    let objective = Objective::new(&space, &items, &config.class_weights)?;
    let mut warnings = recipe_warnings(config, task, &class_counts(&space, &items), items.len());
    // The cheap baseline on the same splits, before the encoder moves (multi-class only).
    let baseline = if task == TaskKind::Classify && config.baseline_probe {
        let frozen = FrozenFeatures::compute(&model, &items, &val_notes, HeadFeatures::Cls)?;
        Some(fit_probe(&frozen, &space, &val_notes, config, metric, HeadFeatures::Cls)?)
    } else {
        None
    };
    let best_dir = config.out.join("best");
    let mut learner = Classifying {
        ckpt,
        space: &space,
        items,
        objective,
        val_notes,
        metric,
        config,
        serving: serving_settings(&space, &model, config),
        best_dir: &best_dir,
        on_eval,
    };
    let Some(state) = fit(&model, config, control, &mut learner)? else {
        return Ok(RunResult { best_dir, report: None });
    };
    let baseline_probe = baseline.map(|(_, summary, probe_value)| {
        if let (Some(p), Some(f)) = (probe_value, state.best_metric) {
            if !metric.better(f, p) {
                warnings.push(format!(
                    "the frozen-encoder probe ({} features) scores {p:.3} validation {} and fine-tuning {f:.3}: \
                     on this data `bedside train probe` does as well for a fraction of the cost",
                    summary.features,
                    metric.as_str()
                ));
            }
        }
        BaselineProbe {
            features: summary.features,
            c: summary.c,
            metric: metric.as_str().to_string(),
            probe_validation: probe_value,
            fine_tuned_validation: state.best_metric,
        }
    });
    let extras = ReportExtras { head_features: model.head_features(), probe: None, baseline_probe, warnings };
    let report = final_report(&best_dir, &space, &data, config, task, metric, &state, &device, extras)?;
    Ok(RunResult { best_dir, report: Some(report) })
}

/// Row counts per output in the training items (classes; binary [negative, positive];
/// multi-label positives per label).
fn class_counts(space: &LabelSpace, items: &[Item]) -> Vec<usize> {
    let mut counts = vec![0usize; space.labels.len()];
    for item in items {
        match &item.truth {
            NoteTruth::Class(c) => counts[*c] += 1,
            NoteTruth::Binary(b) => counts[usize::from(*b)] += 1,
            NoteTruth::Labels(l) => l.iter().enumerate().filter(|(_, v)| **v).for_each(|(j, _)| counts[j] += 1),
        }
    }
    counts
}

/// Largest over smallest class at which unweighted training is flagged.
const IMBALANCE_RATIO: f64 = 3.0;
/// Share of `learning_rate` below which a schedule that never gets higher is flagged.
const LOW_PEAK_SHARE: f64 = 0.5;
/// Fewer optimiser steps than this in a whole run is flagged.
const FEW_STEPS: usize = 20;

/// Recipe choices that quietly ruin small data: imbalanced classes trained unweighted, and
/// schedules whose learning rate barely leaves zero. Counts and settings only, never labels
/// or text.
pub fn recipe_warnings(config: &TrainConfig, task: TaskKind, class_counts: &[usize], items: usize) -> Vec<String> {
    let mut warnings = Vec::new();
    let unweighted = matches!(&config.class_weights, ClassWeights::Named(n) if n == "none");
    if matches!(task, TaskKind::Classify | TaskKind::Binary) && unweighted {
        let present = class_counts.iter().copied().filter(|&c| c > 0);
        if let (Some(max), Some(min)) = (present.clone().max(), present.min()) {
            if max as f64 >= IMBALANCE_RATIO * min as f64 {
                warnings.push(format!(
                    "the classes are imbalanced (the largest has {max} training rows, the smallest {min}) and \
                     class weights are off: small classes may never be predicted; try --class-weights balanced"
                ));
            }
        }
    }
    if task != TaskKind::Probe {
        let s = schedule(config, items);
        let peak = (0..s.total_steps).map(|step| s.lr(step)).fold(0.0, f64::max);
        if peak < LOW_PEAK_SHARE * config.learning_rate {
            warnings.push(format!(
                "the learning rate never gets above {peak:.2e} ({:.0}% of {:.2e}): the warm-up ({} steps) is \
                 longer than most of the run ({} optimiser steps); lower --warmup-ratio/--warmup-steps or train longer",
                100.0 * peak / config.learning_rate,
                config.learning_rate,
                s.warmup_steps,
                s.total_steps
            ));
        }
        if s.total_steps < FEW_STEPS {
            warnings.push(format!(
                "the whole run is {} optimiser steps ({} epochs of {} items at batch {} × accumulation {}): \
                 too few for the weights to move far from the base model; add epochs or lower --batch-size",
                s.total_steps, config.epochs, items, config.batch_size, config.grad_accum
            ));
        }
    }
    warnings
}

/// The frozen encoder's head features: one row per training item, and one row per window
/// of each validation note.
struct FrozenFeatures {
    train: Vec<Vec<f32>>,
    targets: Vec<usize>,
    val: Vec<Vec<Vec<f32>>>,
}

impl FrozenFeatures {
    fn compute(model: &TrainableClassifier, items: &[Item], val: &NoteSet, features: HeadFeatures) -> Result<Self> {
        let rows = |ids: &[&[u32]]| -> Result<Vec<Vec<f32>>> {
            Ok(model.features_of(ids, features)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
        };
        let mut train = Vec::with_capacity(items.len());
        for batch in items.chunks(EVAL_BATCH) {
            train.extend(rows(&batch.iter().map(|i| i.ids.as_slice()).collect::<Vec<_>>())?);
        }
        let targets = items
            .iter()
            .map(|i| match i.truth {
                NoteTruth::Class(c) => Ok(c),
                _ => bail!("the probe fits multi-class labels only"),
            })
            .collect::<Result<_>>()?;
        let flat = val.flat_windows();
        let mut per_note = vec![Vec::new(); val.len()];
        for batch in flat.chunks(EVAL_BATCH) {
            let ids: Vec<&[u32]> = batch.iter().map(|(_, w)| *w).collect();
            for ((n, _), row) in batch.iter().zip(rows(&ids)?) {
                per_note[*n].push(row);
            }
        }
        Ok(FrozenFeatures { train, targets, val: per_note })
    }
}

/// A probe's per-note probabilities: a softmax per window, windows combined by the
/// runtime's rule, as the exported head will score them.
fn probe_note_probs(probe: &Probe, notes: &[Vec<Vec<f32>>], aggregation: Aggregation) -> Vec<Vec<f64>> {
    let softmax = |logits: Vec<f32>| -> Vec<f32> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|v| (v / sum) as f32).collect()
    };
    notes
        .iter()
        .map(|windows| {
            let probs: Vec<Vec<f32>> = windows.iter().map(|w| softmax(probe.logits(w))).collect();
            aggregation.combine(&probs).into_iter().map(f64::from).collect()
        })
        .collect()
}

/// Fits the probe at the configured C, or at each C of [`PROBE_C_GRID`] keeping the best by
/// `metric` on validation (the smaller C wins a tie), and says how; with the chosen fit's
/// validation value (None where the metric is undefined).
fn fit_probe(
    frozen: &FrozenFeatures,
    space: &LabelSpace,
    val_notes: &NoteSet,
    config: &TrainConfig,
    metric: Metric,
    features: HeadFeatures,
) -> Result<(Probe, ProbeSummary, Option<f64>)> {
    let candidates: Vec<f64> = match config.probe_c {
        ProbeC::Auto => PROBE_C_GRID.to_vec(),
        ProbeC::Value(c) => vec![c],
    };
    let mut best: Option<(f64, Probe, f64)> = None;
    let mut grid = Vec::with_capacity(candidates.len());
    for c in candidates {
        let options = ProbeOptions { l2: 1.0 / c, standardize: config.probe_standardize, ..Default::default() };
        let probe = fit_multiclass(&frozen.train, &frozen.targets, space.labels.len(), &options)?;
        let probs = probe_note_probs(&probe, &frozen.val, space.aggregation());
        let loss = probs
            .iter()
            .zip(&val_notes.truth)
            .map(|(p, t)| if let NoteTruth::Class(c) = t { -p[*c].max(1e-300).ln() } else { 0.0 })
            .sum::<f64>()
            / probs.len().max(1) as f64;
        let report =
            build_report("validation", &predictions(space, val_notes, probs), None, &report_options(config, false))?;
        let value = metric_value(metric, &report, loss);
        grid.push(ProbeGridPoint { c, validation: Some(value).filter(|v| v.is_finite()) });
        if best.as_ref().is_none_or(|(_, _, b)| metric.better(value, *b)) {
            best = Some((c, probe, value));
        }
    }
    let (c, probe, value) = best.context("no C to fit the probe with")?;
    let summary = ProbeSummary {
        features: features.as_str().to_string(),
        standardize: config.probe_standardize,
        c,
        c_auto: config.probe_c == ProbeC::Auto,
        metric: metric.as_str().to_string(),
        c_grid: grid,
    };
    Ok((probe, summary, Some(value).filter(|v| v.is_finite())))
}

/// What a run adds to the report beyond the metrics.
struct ReportExtras {
    head_features: HeadFeatures,
    probe: Option<ProbeSummary>,
    baseline_probe: Option<BaselineProbe>,
    warnings: Vec<String>,
}

/// The frozen-encoder baseline: the head's features (raw [CLS] by default; the mean or the
/// pooler with `features`) of each training note's first window → logistic regression (C
/// given, or chosen on validation) → the fitted weights become the classifier layer, saved
/// and scored like a fine-tuned run.
pub fn train_probe(ckpt: &Checkpoint, mut data: RunData, config: &TrainConfig) -> Result<RunResult> {
    config.validate()?;
    let task = TaskKind::Probe;
    let space = LabelSpace::from_train(task, &data.train, None)?;
    keep_known(&space, &mut data, config);
    ensure!(!data.val.is_empty(), "the validation set is empty");
    let device = device(&config.device)?;
    let metric = config.metric_for(task)?;
    let features = config.features_for(task);
    let model = TrainableClassifier::new(ckpt, space.outputs(), model_options(config, task), config.seed, &device)?;
    let items = training_items(&model, &space, &data.train, LongNotes::Truncate)?;
    let val_notes = NoteSet::encode(&model, &space, &data.val)?;
    let frozen = FrozenFeatures::compute(&model, &items, &val_notes, features)?;
    let (probe, summary, _) = fit_probe(&frozen, &space, &val_notes, config, metric, features)?;
    let dim = model.config().hidden_size;
    let weight = Tensor::from_vec(probe.weight.concat(), (probe.outputs(), dim), &Device::Cpu)?;
    let bias = Tensor::from_vec(probe.bias.clone(), probe.outputs(), &Device::Cpu)?;
    model.set_head(&weight, &bias)?;

    let out = config.out.as_path();
    durable::write_file_atomic(&out.join("config.toml"), config.to_toml()?.as_bytes())?;
    let best_dir = out.join("best");
    save_checkpoint(&model, ckpt, &serving_settings(&space, &model, config), &best_dir)?;
    let state = RunState::<HistoryPoint>::start(0);
    let extras = ReportExtras { head_features: features, probe: Some(summary), baseline_probe: None, warnings: vec![] };
    let report = final_report(&best_dir, &space, &data, config, task, metric, &state, &device, extras)?;
    Ok(RunResult { best_dir, report: Some(report) })
}

pub fn report_options(config: &TrainConfig, final_report: bool) -> ReportOptions {
    ReportOptions {
        decision_threshold: config.decision_threshold,
        target_sensitivity: if final_report { config.target_sensitivity } else { None },
        min_confidence: config.min_confidence,
        calibration_bins: 10,
    }
}

/// Scores the best checkpoint, reloaded as users load it, on validation (to choose the
/// threshold) and on the test split, stores the chosen threshold in the checkpoint, and
/// writes the report.
#[allow(clippy::too_many_arguments)]
fn final_report(
    best_dir: &Path,
    space: &LabelSpace,
    data: &RunData,
    config: &TrainConfig,
    task: TaskKind,
    metric: Metric,
    state: &RunState<HistoryPoint>,
    device: &Device,
    extras: ReportExtras,
) -> Result<Report> {
    let best = Checkpoint::from_dir(best_dir)?;
    let model = TrainableClassifier::from_trained(&best, model_options(config, task), device)?;
    let val_notes = NoteSet::encode(&model, space, &data.val)?;
    let (val_probs, _) = evaluate(&model, space, &val_notes)?;
    let val_predictions = predictions(space, &val_notes, val_probs);
    let (split, eval_data) = match &data.test {
        Some(t) if !t.is_empty() => ("test", t),
        _ => ("validation", &data.val),
    };
    let notes = NoteSet::encode(&model, space, eval_data)?;
    let (probs, _) = evaluate(&model, space, &notes)?;
    let mut report =
        build_report(split, &predictions(space, &notes, probs), Some(&val_predictions), &report_options(config, true))?;
    report.history = state.history.clone();
    report.best_epoch = state.best_epoch;
    report.selection_metric = Some(metric.as_str().to_string());
    report.problems = data.problems.clone();
    report.scrub = data.scrub.clone();
    report.model = config.base.clone();
    report.data = config.train.display().to_string();
    report.created_by = format!("bedside {}", env!("CARGO_PKG_VERSION"));
    report.head_features = Some(extras.head_features.as_str().to_string());
    report.probe = extras.probe;
    report.baseline_probe = extras.baseline_probe;
    report.warnings = extras.warnings;
    if let Some(serving) = &best.serving {
        let threshold = report.decision.threshold.map_or(serving.decision_threshold, |t| t as f32);
        let chosen = ServingSettings { decision_threshold: threshold, ..serving.clone() };
        update_serving(best_dir, &chosen)?;
    }
    write_report(&report, &config.out)?;
    write_split(&config.out.join("splits"), split, eval_data, &config.label_separator)?;
    Ok(report)
}

/// Keeps the scored split next to the run (`splits/<name>.jsonl`: text, label, source line)
/// so that `bedside export` can report parity on it. The text is the scrubbed text when
/// scrubbing was on; like the checkpoint, it stays on this machine.
fn write_split(dir: &Path, name: &str, data: &Dataset, separator: &str) -> Result<()> {
    let mut text = String::new();
    for ex in &data.examples {
        let row =
            serde_json::json!({"text": ex.text, "label": ex.labels.join(separator), "line": ex.line, "id": ex.id});
        text.push_str(&row.to_string());
        text.push('\n');
    }
    let path = dir.join(format!("{name}.jsonl"));
    durable::write_file_atomic(&path, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(feature = "cuda"))]
    fn auto_trains_on_the_cpu_and_cuda_says_why_it_cannot() {
        assert!(device("auto").unwrap().is_cpu());
        assert!(device("cpu").unwrap().is_cpu());
        let why = device("cuda").unwrap_err().to_string();
        assert!(why.contains("built without CUDA"), "{why}");
        assert!(device("tpu").unwrap_err().to_string().contains("cpu, cuda or auto"));
    }
}
