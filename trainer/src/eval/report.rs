//! The evaluation report of a trained note classifier: `report.json` for programs, and
//! `report.html` (one self-contained file with inline SVG charts) and `report.md` for people.
//!
//! Every number comes from [`super::metrics`], which is checked against scikit-learn. This module
//! only chooses what goes in (predictions at the decision threshold, one-vs-rest columns, the
//! threshold itself) and lays the results out, identically for the three tasks, so that
//! `report.json` has the same top-level keys whatever the task.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::metrics::{self, BinaryMetrics, MetricsError};
use crate::data::RowProblem;
use crate::durable::write_file_atomic;

// The rendering lives in eval/render.rs but belongs to this module (eval/mod.rs names only
// `report`), hence the explicit path.
#[path = "render.rs"]
mod render;
pub(crate) use render::esc;
pub use render::{render_html, render_markdown};

/// The threshold used when none is given: `p >= 0.5` is the most probable decision.
pub const DEFAULT_THRESHOLD: f64 = 0.5;
/// Ten equal-width bins, as most published ECE figures use.
pub const DEFAULT_CALIBRATION_BINS: usize = 10;

/// What kind of classifier produced the predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportTask {
    /// Exactly one label per note (softmax).
    Multiclass,
    /// A positive and a negative label (one probability).
    Binary,
    /// Any number of labels per note (a sigmoid each).
    Multilabel,
}

impl ReportTask {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportTask::Multiclass => "multiclass",
            ReportTask::Binary => "binary",
            ReportTask::Multilabel => "multilabel",
        }
    }
}

/// The true labels of the evaluated notes.
#[derive(Debug, Clone, PartialEq)]
pub enum Truth {
    /// Multi-class: the index of each note's label. Binary also accepts 0 (negative) / 1 (positive).
    Classes(Vec<usize>),
    /// Binary: whether each note is positive.
    Binary(Vec<bool>),
    /// Multi-label: per note, whether it has each label.
    Multilabel(Vec<Vec<bool>>),
}

impl Truth {
    fn len(&self) -> usize {
        match self {
            Truth::Classes(v) => v.len(),
            Truth::Binary(v) => v.len(),
            Truth::Multilabel(v) => v.len(),
        }
    }
}

/// A model's probabilities on one split, with the truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub task: ReportTask,
    /// Binary: `[negative, positive]`.
    pub labels: Vec<String>,
    pub truth: Truth,
    /// One row per note. Multiclass: a probability per label (sums to 1). Binary: `[1 − p, p]`.
    /// Multilabel: a sigmoid per label.
    pub probs: Vec<Vec<f64>>,
}

impl Predictions {
    /// Number of notes.
    pub fn len(&self) -> usize {
        self.probs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.probs.is_empty()
    }

    /// Checks shapes and ranges up front, so that errors name the problem instead of surfacing
    /// from deep inside a metric.
    fn validate(&self) -> Result<()> {
        let k = self.labels.len();
        ensure!(!self.probs.is_empty(), "no predictions to evaluate");
        let min_labels = match self.task {
            ReportTask::Multilabel => 1,
            _ => 2,
        };
        ensure!(k >= min_labels, "a {} report needs at least {min_labels} labels, got {k}", self.task.as_str());
        ensure!(
            self.task != ReportTask::Binary || k == 2,
            "a binary report needs exactly two labels [negative, positive], got {k}"
        );
        for (i, label) in self.labels.iter().enumerate() {
            ensure!(!self.labels[..i].contains(label), "label {label:?} appears twice in the label list");
        }
        ensure!(
            self.truth.len() == self.probs.len(),
            "{} true labels for {} probability rows",
            self.truth.len(),
            self.probs.len()
        );
        for (i, row) in self.probs.iter().enumerate() {
            ensure!(row.len() == k, "probability row {i} has {} values, expected {k}", row.len());
            if let Some(p) = row.iter().find(|p| !(0.0..=1.0).contains(*p)) {
                bail!("probability row {i} holds {p}, outside [0, 1]");
            }
        }
        match (&self.truth, self.task) {
            (Truth::Classes(ys), ReportTask::Multiclass | ReportTask::Binary) => {
                if let Some((i, y)) = ys.iter().enumerate().find(|(_, &y)| y >= k) {
                    bail!("note {i}: class index {y} is out of range for {k} labels");
                }
            }
            (Truth::Binary(_), ReportTask::Binary) => {}
            (Truth::Multilabel(ys), ReportTask::Multilabel) => {
                if let Some((i, y)) = ys.iter().enumerate().find(|(_, y)| y.len() != k) {
                    bail!("note {i} has {} label flags, expected {k}", y.len());
                }
            }
            (_, task) => bail!("the truth does not fit a {} task", task.as_str()),
        }
        Ok(())
    }

    /// Binary truth and P(positive); only after [`Predictions::validate`] on a binary task.
    fn binary_columns(&self) -> (Vec<bool>, Vec<f64>) {
        let y = match &self.truth {
            Truth::Binary(y) => y.clone(),
            Truth::Classes(y) => y.iter().map(|&c| c == 1).collect(),
            Truth::Multilabel(_) => unreachable!("validated as binary"),
        };
        (y, self.probs.iter().map(|r| r[1]).collect())
    }
}

/// How predictions are turned into decisions and which are flagged as uncertain.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// Binary and multi-label: a label is predicted iff its probability is `>=` this.
    pub decision_threshold: f64,
    /// Binary: choose the threshold on validation predictions so that this share of positives
    /// is caught (overrides `decision_threshold` when it can be met).
    pub target_sensitivity: Option<f64>,
    /// Flag predictions below this confidence "uncertain" (left for a human) and report the share.
    pub min_confidence: Option<f64>,
    pub calibration_bins: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            decision_threshold: DEFAULT_THRESHOLD,
            target_sensitivity: None,
            min_confidence: None,
            calibration_bins: DEFAULT_CALIBRATION_BINS,
        }
    }
}

impl ReportOptions {
    fn validate(&self) -> Result<()> {
        let unit = |name: &str, v: f64| {
            ensure!((0.0..=1.0).contains(&v), "{name} must lie in [0, 1], got {v}");
            Ok(())
        };
        unit("the decision threshold", self.decision_threshold)?;
        if let Some(t) = self.target_sensitivity {
            unit("the target sensitivity", t)?;
        }
        if let Some(m) = self.min_confidence {
            unit("the minimum confidence", m)?;
        }
        ensure!(self.calibration_bins > 0, "calibration needs at least one bin");
        Ok(())
    }

    fn threshold_source(&self) -> ThresholdSource {
        if self.decision_threshold == DEFAULT_THRESHOLD {
            ThresholdSource::Default
        } else {
            ThresholdSource::Given
        }
    }
}

/// One point of the training history (an epoch, or a logging step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub epoch: usize,
    pub step: usize,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_metric: Option<f64>,
    pub learning_rate: Option<f64>,
}

/// One label's row of the per-class table, one-vs-rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    /// Positive predictive value.
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Notes that truly have this label.
    pub support: usize,
    /// Notes predicted with this label.
    pub predicted: usize,
    /// Same as `recall`.
    pub sensitivity: f64,
    pub specificity: f64,
    pub roc_auc: Option<f64>,
    pub average_precision: Option<f64>,
}

/// Macro, weighted or micro averages over the labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AverageReport {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Sum of the per-label supports (multi-class and binary: the number of notes).
    pub support: usize,
}

impl AverageReport {
    fn new(a: metrics::Averages, support: usize) -> Self {
        AverageReport { precision: a.precision, recall: a.recall, f1: a.f1, support }
    }
}

/// Counts of true against predicted labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConfusionMatrix {
    /// Multi-class and binary: `[true][predicted]`, in label order (binary: `[[tn, fp], [fn, tp]]`).
    Classes(Vec<Vec<usize>>),
    /// Multi-label: per label `[[tn, fp], [fn, tp]]`, as sklearn's `multilabel_confusion_matrix`.
    PerLabel(Vec<[[usize; 2]; 2]>),
}

/// One bin of the reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinReport {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    pub mean_confidence: Option<f64>,
    pub accuracy: Option<f64>,
}

/// Calibration: does a confidence of 0.8 mean right 80 % of the time?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationReport {
    /// What "confidence" and "correct" mean for this task, in words.
    pub confidence: String,
    pub n_bins: usize,
    /// Expected calibration error.
    pub ece: f64,
    /// Largest calibration gap over non-empty bins.
    pub mce: f64,
    pub bins: Vec<BinReport>,
}

impl From<metrics::Calibration> for CalibrationReport {
    fn from(c: metrics::Calibration) -> Self {
        CalibrationReport {
            confidence: String::new(),
            n_bins: c.n_bins,
            ece: c.ece,
            mce: c.mce,
            bins: c
                .bins
                .into_iter()
                .map(|b| BinReport {
                    lower: b.lower,
                    upper: b.upper,
                    count: b.count,
                    mean_confidence: b.mean_confidence,
                    accuracy: b.accuracy,
                })
                .collect(),
        }
    }
}

/// ROC curve points for plotting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RocPoints {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    /// Score at each point; the first, `+inf` (nothing flagged), is `null`.
    pub thresholds: Vec<Option<f64>>,
}

impl From<metrics::RocCurve> for RocPoints {
    fn from(c: metrics::RocCurve) -> Self {
        RocPoints {
            fpr: c.fpr,
            tpr: c.tpr,
            thresholds: c.thresholds.into_iter().map(|t| t.is_finite().then_some(t)).collect(),
        }
    }
}

/// Where the decision threshold came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdSource {
    /// [`DEFAULT_THRESHOLD`] (multi-class: the most probable label).
    Default,
    /// A threshold the user set.
    Given,
    /// The strictest threshold that reaches [`ReportOptions::target_sensitivity`].
    TargetSensitivity,
}

/// How predictions become decisions, and what a minimum-confidence rule leaves uncertain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The rule in words, e.g. "positive iff P(sepsis) >= 0.31".
    pub rule: String,
    /// Binary and multi-label; `null` for multi-class (argmax).
    pub threshold: Option<f64>,
    pub chosen_by: ThresholdSource,
    /// The split the threshold was chosen on: "validation", or this report's split when no
    /// validation predictions were given. `null` unless chosen for a target sensitivity.
    pub chosen_on: Option<String>,
    pub target_sensitivity: Option<f64>,
    /// Sensitivity and specificity reached on `chosen_on` at the chosen threshold.
    pub reached_sensitivity: Option<f64>,
    pub reached_specificity: Option<f64>,
    pub min_confidence: Option<f64>,
    /// Notes on this split below `min_confidence`.
    pub uncertain: Option<usize>,
    pub uncertain_share: Option<f64>,
    /// Accuracy (multi-label: exact match) over the notes that are not uncertain.
    pub accuracy_on_confident: Option<f64>,
    /// Options that did not apply, fallbacks taken.
    pub notes: Vec<String>,
}

/// The evaluation report. `build_report` fills the metrics; the trainer fills the fields from
/// `history` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub task: ReportTask,
    /// Which split the numbers are from ("test", "validation", a file name…).
    pub split: String,
    pub n: usize,
    /// Multi-label: subset accuracy (every label of the note right).
    pub accuracy: f64,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    /// Mean one-vs-rest ROC-AUC over the labels where it is defined.
    pub roc_auc_macro: Option<f64>,
    /// Mean average precision over the labels where it is defined.
    pub pr_auc_macro: Option<f64>,
    pub labels: Vec<String>,
    pub confusion_matrix: ConfusionMatrix,
    /// Keyed by label; binary has both the negative and the positive row.
    pub per_class: BTreeMap<String, ClassReport>,
    pub macro_avg: AverageReport,
    pub weighted_avg: AverageReport,
    /// Multi-label only: pooled over all (note, label) cells.
    pub micro_avg: Option<AverageReport>,
    /// Multi-label only: share of (note, label) cells predicted wrongly.
    pub hamming_loss: Option<f64>,
    pub calibration: CalibrationReport,
    /// Keyed by label (binary: the positive label only); labels with one class only are absent.
    pub roc_curves: BTreeMap<String, RocPoints>,
    pub decision: Decision,

    #[serde(default)]
    pub history: Vec<HistoryPoint>,
    #[serde(default)]
    pub best_epoch: Option<usize>,
    /// The validation metric that picked the best epoch, e.g. "macro_f1".
    #[serde(default)]
    pub selection_metric: Option<String>,
    /// Rows left out of the data, with file and line.
    #[serde(default, with = "problems_serde")]
    pub problems: Vec<RowProblem>,
    /// PHI replacements per kind, when notes were scrubbed.
    #[serde(default)]
    pub scrub: Option<BTreeMap<String, usize>>,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub data: String,
    #[serde(default)]
    pub created_by: String,
    /// What the classifier layer read: `pooler`, `cls` or `mean`.
    #[serde(default)]
    pub head_features: Option<String>,
    /// A probe run: how its logistic regression was fitted (and, with `probe_c = auto`, the grid).
    #[serde(default)]
    pub probe: Option<ProbeSummary>,
    /// A fine-tuning run: the frozen-encoder probe fitted on the same splits, for comparison.
    #[serde(default)]
    pub baseline_probe: Option<BaselineProbe>,
    /// Recipe choices that are likely to hurt (imbalance without class weights, a learning
    /// rate that barely leaves zero, a probe that beats fine-tuning …). No note text.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// How a probe was fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSummary {
    pub features: String,
    pub standardize: bool,
    /// scikit-learn's C of the exported head.
    pub c: f64,
    /// True when C was chosen on validation from `c_grid`.
    pub c_auto: bool,
    /// The validation metric that scored each C (the selection metric of the run).
    pub metric: String,
    pub c_grid: Vec<ProbeGridPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeGridPoint {
    pub c: f64,
    /// The metric on validation (None where it is undefined).
    pub validation: Option<f64>,
}

/// The probe beside a fine-tuning run, both scored by the run's metric on validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineProbe {
    pub features: String,
    pub c: f64,
    pub metric: String,
    pub probe_validation: Option<f64>,
    pub fine_tuned_validation: Option<f64>,
}

impl Report {
    /// The binary report's positive label.
    pub fn positive_label(&self) -> Option<&str> {
        (self.task == ReportTask::Binary).then(|| self.labels.get(1).map(String::as_str)).flatten()
    }
}

/// The task-specific part of a report.
struct Measured {
    accuracy: f64,
    macro_avg: AverageReport,
    weighted_avg: AverageReport,
    micro_avg: Option<AverageReport>,
    hamming_loss: Option<f64>,
    roc_auc_macro: Option<f64>,
    pr_auc_macro: Option<f64>,
    confusion_matrix: ConfusionMatrix,
    per_class: BTreeMap<String, ClassReport>,
    calibration: CalibrationReport,
    roc_curves: BTreeMap<String, RocPoints>,
    decision: Decision,
}

fn metric_err(e: MetricsError) -> anyhow::Error {
    anyhow::anyhow!("metrics: {e}")
}

/// Builds the report of `eval` (the predictions on `split`). `validation` is only used to choose
/// a binary threshold for [`ReportOptions::target_sensitivity`]: choosing it on the reported
/// split itself would flatter the sensitivity reported there.
pub fn build_report(
    split: &str,
    eval: &Predictions,
    validation: Option<&Predictions>,
    options: &ReportOptions,
) -> Result<Report> {
    options.validate()?;
    eval.validate().with_context(|| format!("{split} predictions"))?;
    if let Some(v) = validation {
        v.validate().context("validation predictions")?;
        ensure!(
            v.task == eval.task && v.labels == eval.labels,
            "validation predictions are for a different task or label set than the {split} ones"
        );
    }
    let m = match eval.task {
        ReportTask::Multiclass => multiclass(eval, options)?,
        ReportTask::Binary => binary(split, eval, validation, options)?,
        ReportTask::Multilabel => multilabel(eval, options)?,
    };
    Ok(Report {
        task: eval.task,
        split: split.to_string(),
        n: eval.len(),
        accuracy: m.accuracy,
        macro_f1: m.macro_avg.f1,
        weighted_f1: m.weighted_avg.f1,
        roc_auc_macro: m.roc_auc_macro,
        pr_auc_macro: m.pr_auc_macro,
        labels: eval.labels.clone(),
        confusion_matrix: m.confusion_matrix,
        per_class: m.per_class,
        macro_avg: m.macro_avg,
        weighted_avg: m.weighted_avg,
        micro_avg: m.micro_avg,
        hamming_loss: m.hamming_loss,
        calibration: m.calibration,
        roc_curves: m.roc_curves,
        decision: m.decision,
        history: Vec::new(),
        best_epoch: None,
        selection_metric: None,
        problems: Vec::new(),
        scrub: None,
        model: String::new(),
        data: String::new(),
        created_by: concat!("bedside ", env!("CARGO_PKG_VERSION")).to_string(),
        head_features: None,
        probe: None,
        baseline_probe: None,
        warnings: Vec::new(),
    })
}

fn decision(rule: String, threshold: Option<f64>, chosen_by: ThresholdSource) -> Decision {
    Decision {
        rule,
        threshold,
        chosen_by,
        chosen_on: None,
        target_sensitivity: None,
        reached_sensitivity: None,
        reached_specificity: None,
        min_confidence: None,
        uncertain: None,
        uncertain_share: None,
        accuracy_on_confident: None,
        notes: Vec::new(),
    }
}

impl Decision {
    fn set_abstention(&mut self, a: metrics::Abstention) {
        self.min_confidence = Some(a.min_confidence);
        self.uncertain = Some(a.uncertain);
        self.uncertain_share = Some(a.uncertain_share);
        self.accuracy_on_confident = a.accuracy_on_confident;
    }
}

/// One-vs-rest ROC curve of every label that has both classes.
fn roc_curves(labels: &[String], columns: impl Iterator<Item = (Vec<bool>, Vec<f64>)>) -> BTreeMap<String, RocPoints> {
    labels
        .iter()
        .zip(columns)
        .filter_map(|(label, (y, s))| Some((label.clone(), metrics::roc_curve(&y, &s, true)?.into())))
        .collect()
}

/// The report parts from `multiclass_metrics` (multi-class and binary).
fn from_multiclass(
    labels: &[String],
    m: metrics::MulticlassMetrics,
    calibration: CalibrationReport,
    roc_curves: BTreeMap<String, RocPoints>,
    decision: Decision,
) -> Measured {
    let per_class = m
        .per_class
        .iter()
        .map(|c| {
            let row = ClassReport {
                precision: c.precision,
                recall: c.recall,
                f1: c.f1,
                support: c.support,
                predicted: c.predicted,
                sensitivity: c.sensitivity,
                specificity: c.specificity,
                roc_auc: c.roc_auc,
                average_precision: c.average_precision,
            };
            (labels[c.class].clone(), row)
        })
        .collect();
    Measured {
        accuracy: m.accuracy,
        macro_avg: AverageReport::new(m.macro_avg, m.n_samples),
        weighted_avg: AverageReport::new(m.weighted_avg, m.n_samples),
        micro_avg: None,
        hamming_loss: None,
        roc_auc_macro: m.macro_roc_auc,
        pr_auc_macro: m.macro_average_precision,
        confusion_matrix: ConfusionMatrix::Classes(m.confusion),
        per_class,
        calibration,
        roc_curves,
        decision,
    }
}

/// Calibration with its meaning spelled out.
fn calibration_report(c: metrics::Calibration, confidence: String) -> CalibrationReport {
    CalibrationReport { confidence, ..c.into() }
}

fn multiclass(eval: &Predictions, options: &ReportOptions) -> Result<Measured> {
    let Truth::Classes(y) = &eval.truth else { unreachable!("validated as multiclass") };
    let pred: Vec<usize> = eval.probs.iter().map(|r| metrics::top_class(r).0).collect();
    let m = metrics::multiclass_metrics(y, &pred, &eval.probs).map_err(metric_err)?;
    let calibration = calibration_report(
        metrics::calibration(y, &eval.probs, options.calibration_bins).map_err(metric_err)?,
        "the probability of the predicted (most probable) label; correct when that label is the true one".into(),
    );
    let columns = (0..eval.labels.len())
        .map(|c| (y.iter().map(|&t| t == c).collect(), eval.probs.iter().map(|r| r[c]).collect()));

    let mut d = decision("the most probable label".into(), None, ThresholdSource::Default);
    if options.decision_threshold != DEFAULT_THRESHOLD {
        d.notes.push(
            "the decision threshold does not apply to multi-class predictions (the most probable label is taken); \
             ignored"
                .into(),
        );
    }
    if options.target_sensitivity.is_some() {
        d.notes.push("a target sensitivity applies to binary tasks only; ignored".into());
    }
    if let Some(min) = options.min_confidence {
        d.set_abstention(metrics::abstention(y, &eval.probs, min).map_err(metric_err)?);
    }
    Ok(from_multiclass(&eval.labels, m, calibration, roc_curves(&eval.labels, columns), d))
}

/// The binary threshold and how it was chosen (see [`ReportOptions::target_sensitivity`]).
fn binary_decision(
    split: &str,
    eval: &Predictions,
    validation: Option<&Predictions>,
    options: &ReportOptions,
) -> Result<Decision> {
    let positive = &eval.labels[1];
    let rule = |t: f64| format!("{positive} iff P({positive}) >= {}", render::threshold_text(t));
    let mut d =
        decision(rule(options.decision_threshold), Some(options.decision_threshold), options.threshold_source());
    let Some(target) = options.target_sensitivity else {
        return Ok(d);
    };
    d.target_sensitivity = Some(target);
    let (on, preds) = match validation {
        Some(v) => ("validation", v),
        None => (split, eval),
    };
    let (y, p) = preds.binary_columns();
    match metrics::threshold_for_sensitivity(&y, &p, target).map_err(metric_err)? {
        Some(choice) => {
            // The chosen threshold is an observed score: a model whose scores move by a
            // rounding error (the quantized bundle) would flip exactly those notes. Halfway
            // to the next lower observed score makes the same decisions on this split with
            // a margin on both sides.
            let below = p.iter().copied().filter(|&s| s < choice.threshold).fold(f64::NEG_INFINITY, f64::max);
            let threshold = if below.is_finite() { (choice.threshold + below) / 2.0 } else { choice.threshold };
            d.rule = rule(threshold);
            d.threshold = Some(threshold);
            d.chosen_by = ThresholdSource::TargetSensitivity;
            d.chosen_on = Some(on.to_string());
            d.reached_sensitivity = Some(choice.sensitivity);
            d.reached_specificity = Some(choice.specificity);
            if validation.is_none() {
                d.notes.push(format!(
                    "no validation predictions: the threshold was chosen on the {split} split itself, \
                     so the sensitivity reported here is optimistic"
                ));
            }
        }
        None => d.notes.push(format!(
            "the {on} split has no {positive} notes, so no threshold could be chosen for sensitivity {target}; \
             used {} instead",
            render::threshold_text(options.decision_threshold)
        )),
    }
    Ok(d)
}

fn binary(
    split: &str,
    eval: &Predictions,
    validation: Option<&Predictions>,
    options: &ReportOptions,
) -> Result<Measured> {
    let mut d = binary_decision(split, eval, validation, options)?;
    let t = d.threshold.unwrap_or(options.decision_threshold);
    let (y, p) = eval.binary_columns();
    // Both labels one-vs-rest, with the decision made at `t`: multiclass_metrics takes the
    // predictions as given, so the confusion is [[tn, fp], [fn, tp]] and both rows come out.
    let truth: Vec<usize> = y.iter().map(|&b| usize::from(b)).collect();
    let pred: Vec<usize> = p.iter().map(|&q| usize::from(q >= t)).collect();
    let two_columns: Vec<[f64; 2]> = p.iter().map(|&q| [1.0 - q, q]).collect();
    let m = metrics::multiclass_metrics(&truth, &pred, &two_columns).map_err(metric_err)?;
    let calibration = calibration_report(
        metrics::binary_calibration(&y, &p, options.calibration_bins).map_err(metric_err)?,
        format!("max(p, 1 − p) for p = P({}); correct when (p >= 0.5) matches the truth", eval.labels[1]),
    );
    if let Some(min) = options.min_confidence {
        // Correct at the decision threshold, so that accuracy_on_confident compares with `accuracy`.
        let confidence: Vec<f64> = p.iter().map(|&q| metrics::binary_confidence(q)).collect();
        let correct: Vec<bool> = y.iter().zip(&p).map(|(&y, &q)| (q >= t) == y).collect();
        d.set_abstention(metrics::abstention_from_confidence(&confidence, &correct, min).map_err(metric_err)?);
    }
    let roc = roc_curves(&eval.labels[1..], std::iter::once((y, p)));
    Ok(from_multiclass(&eval.labels, m, calibration, roc, d))
}

fn multilabel(eval: &Predictions, options: &ReportOptions) -> Result<Measured> {
    let Truth::Multilabel(y) = &eval.truth else { unreachable!("validated as multilabel") };
    let t = options.decision_threshold;
    let ml = metrics::multilabel_metrics(y, &eval.probs, t).map_err(metric_err)?;
    let support: usize = ml.per_label.iter().map(|b| b.support).sum();
    let row = |b: &BinaryMetrics| ClassReport {
        precision: b.precision,
        recall: b.recall,
        f1: b.f1,
        support: b.support,
        predicted: b.true_positives + b.false_positives,
        sensitivity: b.sensitivity,
        specificity: b.specificity,
        roc_auc: b.roc_auc,
        average_precision: b.average_precision,
    };
    let column = |j: usize| -> (Vec<bool>, Vec<f64>) {
        (y.iter().map(|r| r[j]).collect(), eval.probs.iter().map(|r| r[j]).collect())
    };

    // Calibration over every (note, label) cell, each a binary decision.
    let (confidence, correct): (Vec<f64>, Vec<bool>) = y
        .iter()
        .zip(&eval.probs)
        .flat_map(|(ys, ps)| ys.iter().zip(ps).map(|(&y, &p)| (metrics::binary_confidence(p), (p >= 0.5) == y)))
        .unzip();
    let calibration = calibration_report(
        metrics::calibration_from_confidence(&confidence, &correct, options.calibration_bins).map_err(metric_err)?,
        "per (note, label): max(p, 1 − p); correct when (p >= 0.5) matches the truth".into(),
    );

    let mut d = decision(
        format!("each label iff its probability >= {}", render::threshold_text(t)),
        Some(t),
        options.threshold_source(),
    );
    if options.target_sensitivity.is_some() {
        d.notes.push("a target sensitivity applies to binary tasks only; ignored".into());
    }
    if let Some(min) = options.min_confidence {
        // A note is as uncertain as its least certain label, and right only if every label is.
        let note_confidence: Vec<f64> =
            eval.probs.iter().map(|ps| ps.iter().map(|&p| metrics::binary_confidence(p)).fold(1.0, f64::min)).collect();
        let exact: Vec<bool> =
            y.iter().zip(&eval.probs).map(|(ys, ps)| ys.iter().zip(ps).all(|(&y, &p)| (p >= t) == y)).collect();
        d.set_abstention(metrics::abstention_from_confidence(&note_confidence, &exact, min).map_err(metric_err)?);
    }

    Ok(Measured {
        accuracy: ml.subset_accuracy,
        macro_avg: AverageReport::new(ml.macro_avg, support),
        weighted_avg: AverageReport::new(ml.weighted_avg, support),
        micro_avg: Some(AverageReport::new(ml.micro_avg, support)),
        hamming_loss: Some(ml.hamming_loss),
        roc_auc_macro: ml.macro_roc_auc,
        pr_auc_macro: ml.macro_average_precision,
        confusion_matrix: ConfusionMatrix::PerLabel(
            ml.per_label
                .iter()
                .map(|b| [[b.true_negatives, b.false_positives], [b.false_negatives, b.true_positives]])
                .collect(),
        ),
        per_class: eval.labels.iter().cloned().zip(ml.per_label.iter().map(row)).collect(),
        calibration,
        roc_curves: roc_curves(&eval.labels, (0..eval.labels.len()).map(column)),
        decision: d,
    })
}

/// Writes `report.json`, `report.html` and `report.md` into `dir` (created if missing), each
/// with [`write_file_atomic`], so a reader never sees half a report.
pub fn write_report(report: &Report, dir: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(report).context("serializing the report")?;
    write_file_atomic(&dir.join("report.json"), json.as_bytes())?;
    write_file_atomic(&dir.join("report.html"), render_html(report).as_bytes())?;
    write_file_atomic(&dir.join("report.md"), render_markdown(report).as_bytes())?;
    Ok(())
}

/// `RowProblem` is Serialize only (it lives in data/), so the report reads problems back through
/// a mirror with the kind as a string. Paths are written lossily: a non-UTF-8 file name must not
/// stop a report from being written.
mod problems_serde {
    use std::path::PathBuf;

    use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

    use crate::data::{ProblemKind, RowProblem};

    /// Every kind, to read names back. The exhaustive match in the tests fails to compile when
    /// a kind is added, so this list cannot silently fall behind.
    pub(super) const KINDS: [ProblemKind; 10] = [
        ProblemKind::EmptyText,
        ProblemKind::MissingLabel,
        ProblemKind::EmptyField,
        ProblemKind::MissingColumn,
        ProblemKind::WrongType,
        ProblemKind::InvalidJson,
        ProblemKind::InvalidUtf8,
        ProblemKind::WrongFieldCount,
        ProblemKind::UnseenLabel,
        ProblemKind::Unpaired,
    ];

    #[derive(Serialize, Deserialize)]
    struct Row<'a> {
        file: String,
        line: usize,
        #[serde(borrow)]
        kind: std::borrow::Cow<'a, str>,
        message: String,
    }

    pub fn serialize<S: Serializer>(problems: &[RowProblem], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(problems.iter().map(|p| Row {
            file: p.file.to_string_lossy().into_owned(),
            line: p.line,
            kind: p.kind.as_str().into(),
            message: p.message.clone(),
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RowProblem>, D::Error> {
        Vec::<Row>::deserialize(d)?
            .into_iter()
            .map(|r| {
                let kind = KINDS
                    .into_iter()
                    .find(|k| k.as_str() == r.kind)
                    .ok_or_else(|| D::Error::custom(format!("unknown row problem kind {:?}", r.kind)))?;
                Ok(RowProblem { file: PathBuf::from(r.file), line: r.line, kind, message: r.message })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ProblemKind;
    use serde_json::Value;

    const CONTRACT_KEYS: [&str; 24] = [
        "task",
        "split",
        "n",
        "accuracy",
        "macro_f1",
        "weighted_f1",
        "roc_auc_macro",
        "pr_auc_macro",
        "labels",
        "confusion_matrix",
        "per_class",
        "macro_avg",
        "weighted_avg",
        "calibration",
        "roc_curves",
        "decision",
        "history",
        "best_epoch",
        "selection_metric",
        "problems",
        "scrub",
        "model",
        "data",
        "created_by",
    ];
    const CLASS_KEYS: [&str; 8] =
        ["precision", "recall", "f1", "support", "sensitivity", "specificity", "roc_auc", "average_precision"];

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn multiclass_preds() -> Predictions {
        Predictions {
            task: ReportTask::Multiclass,
            labels: labels(&["cardiology", "endocrinology", "respiratory"]),
            truth: Truth::Classes(vec![0, 0, 1, 1, 2, 2, 0, 2]),
            probs: vec![
                vec![0.7, 0.2, 0.1],
                vec![0.4, 0.35, 0.25],
                vec![0.1, 0.8, 0.1],
                vec![0.5, 0.3, 0.2],
                vec![0.2, 0.2, 0.6],
                vec![0.1, 0.45, 0.45],
                vec![0.9, 0.05, 0.05],
                vec![0.05, 0.05, 0.9],
            ],
        }
    }

    fn binary_preds(y: &[bool], p: &[f64]) -> Predictions {
        Predictions {
            task: ReportTask::Binary,
            labels: labels(&["no sepsis", "sepsis"]),
            truth: Truth::Binary(y.to_vec()),
            probs: p.iter().map(|&q| vec![1.0 - q, q]).collect(),
        }
    }

    const BIN_Y: [bool; 8] = [true, true, true, true, false, false, false, false];
    const BIN_P: [f64; 8] = [0.9, 0.7, 0.45, 0.3, 0.6, 0.35, 0.2, 0.1];

    fn multilabel_preds() -> Predictions {
        Predictions {
            task: ReportTask::Multilabel,
            labels: labels(&["diabetes", "hypertension", "copd"]),
            truth: Truth::Multilabel(vec![
                vec![true, false, false],
                vec![true, true, false],
                vec![false, true, true],
                vec![false, false, true],
                vec![false, false, false],
            ]),
            probs: vec![
                vec![0.8, 0.3, 0.1],
                vec![0.6, 0.55, 0.2],
                vec![0.3, 0.45, 0.9],
                vec![0.2, 0.1, 0.65],
                vec![0.1, 0.6, 0.05],
            ],
        }
    }

    /// JSON equality up to float parsing: serde_json's default parser may land one ulp off.
    fn assert_same(a: &Value, b: &Value, at: &str) {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((x - y).abs() <= 1e-12 * x.abs().max(1.0), "{at}: {x} != {y}");
            }
            (Value::Array(xs), Value::Array(ys)) => {
                assert_eq!(xs.len(), ys.len(), "{at}: lengths");
                for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
                    assert_same(x, y, &format!("{at}[{i}]"));
                }
            }
            (Value::Object(xs), Value::Object(ys)) => {
                assert_eq!(xs.keys().collect::<Vec<_>>(), ys.keys().collect::<Vec<_>>(), "{at}: keys");
                for (k, x) in xs {
                    assert_same(x, &ys[k], &format!("{at}.{k}"));
                }
            }
            _ => assert_eq!(a, b, "{at}"),
        }
    }

    fn json(report: &Report) -> Value {
        serde_json::to_value(report).unwrap()
    }

    fn assert_contract(report: &Report) {
        let v = json(report);
        let obj = v.as_object().unwrap();
        for key in CONTRACT_KEYS {
            assert!(obj.contains_key(key), "{:?} report.json lacks {key}", report.task);
        }
        for label in &report.labels {
            for key in CLASS_KEYS {
                assert!(
                    v["per_class"][label].as_object().is_some_and(|o| o.contains_key(key)),
                    "per_class[{label}] lacks {key}"
                );
            }
        }
        for key in ["ece", "mce", "bins"] {
            assert!(!v["calibration"][key].is_null(), "calibration lacks {key}");
        }
        for key in ["threshold", "chosen_by", "chosen_on", "target_sensitivity", "min_confidence", "uncertain_share"] {
            assert!(v["decision"].as_object().unwrap().contains_key(key), "decision lacks {key}");
        }
        // Round trip: what is written reads back as the same report.
        let back: Report = serde_json::from_str(&serde_json::to_string(report).unwrap()).unwrap();
        assert_same(&json(&back), &v, "report");
    }

    #[test]
    fn multiclass_report_matches_metrics() {
        let p = multiclass_preds();
        let opts = ReportOptions { min_confidence: Some(0.5), ..Default::default() };
        let r = build_report("test", &p, None, &opts).unwrap();
        assert_contract(&r);

        let Truth::Classes(y) = &p.truth else { unreachable!() };
        let pred: Vec<usize> = p.probs.iter().map(|r| metrics::top_class(r).0).collect();
        let m = metrics::multiclass_metrics(y, &pred, &p.probs).unwrap();
        assert_eq!((r.n, r.task), (8, ReportTask::Multiclass));
        assert_eq!(r.accuracy, m.accuracy);
        assert_eq!(r.macro_f1, m.macro_avg.f1);
        assert_eq!(r.weighted_f1, m.weighted_avg.f1);
        assert_eq!(r.roc_auc_macro, m.macro_roc_auc);
        assert_eq!(r.pr_auc_macro, m.macro_average_precision);
        assert_eq!(r.confusion_matrix, ConfusionMatrix::Classes(m.confusion.clone()));
        for c in &m.per_class {
            let row = &r.per_class[&p.labels[c.class]];
            assert_eq!((row.precision, row.recall, row.f1), (c.precision, c.recall, c.f1));
            assert_eq!((row.support, row.specificity, row.roc_auc), (c.support, c.specificity, c.roc_auc));
            assert_eq!(row.average_precision, c.average_precision);
        }
        let cal = metrics::calibration(y, &p.probs, 10).unwrap();
        assert_eq!((r.calibration.ece, r.calibration.mce), (cal.ece, cal.mce));
        assert_eq!(r.calibration.bins.len(), 10);
        assert_eq!(r.roc_curves.len(), 3);
        let c0 = metrics::roc_curve(
            &y.iter().map(|&t| t == 0).collect::<Vec<_>>(),
            &[0.7, 0.4, 0.1, 0.5, 0.2, 0.1, 0.9, 0.05],
            true,
        )
        .unwrap();
        assert_eq!(r.roc_curves["cardiology"].fpr, c0.fpr);

        // Max probabilities 0.7, 0.4, 0.8, 0.5, 0.6, 0.45, 0.9, 0.9: two below 0.5.
        assert_eq!(r.decision.uncertain, Some(2));
        assert_eq!(r.decision.uncertain_share, Some(0.25));
        // Confident: rows 0 ✓, 2 ✓, 3 ✗ (class 1 predicted 0), 4 ✓, 6 ✓, 7 ✓ → 5/6.
        assert_eq!(r.decision.accuracy_on_confident, Some(5.0 / 6.0));
        assert_eq!((r.decision.threshold, r.decision.chosen_by), (None, ThresholdSource::Default));
    }

    #[test]
    fn binary_report_has_both_rows_at_the_threshold() {
        let p = binary_preds(&BIN_Y, &BIN_P);
        let opts = ReportOptions { decision_threshold: 0.4, min_confidence: Some(0.65), ..Default::default() };
        let r = build_report("test", &p, None, &opts).unwrap();
        assert_contract(&r);
        assert_eq!(r.decision.chosen_by, ThresholdSource::Given);
        assert_eq!(r.decision.threshold, Some(0.4));

        let b = metrics::binary_metrics(&BIN_Y, &BIN_P, 0.4).unwrap();
        let pos = &r.per_class["sepsis"];
        assert_eq!((pos.precision, pos.recall, pos.f1), (b.precision, b.recall, b.f1));
        assert_eq!(
            (pos.specificity, pos.roc_auc, pos.average_precision),
            (b.specificity, b.roc_auc, b.average_precision)
        );
        assert_eq!(r.accuracy, b.accuracy);
        // [[tn, fp], [fn, tp]]
        assert_eq!(
            r.confusion_matrix,
            ConfusionMatrix::Classes(vec![
                vec![b.true_negatives, b.false_positives],
                vec![b.false_negatives, b.true_positives]
            ])
        );
        // The negative row is the positive one mirrored.
        let neg = &r.per_class["no sepsis"];
        assert_eq!((neg.sensitivity, neg.specificity), (b.specificity, b.sensitivity));
        assert_eq!(neg.support, 4);
        assert_eq!(r.macro_f1, (pos.f1 + neg.f1) / 2.0);
        assert_eq!(r.roc_curves.keys().collect::<Vec<_>>(), ["sepsis"]);
        let cal = metrics::binary_calibration(&BIN_Y, &BIN_P, 10).unwrap();
        assert_eq!(r.calibration.ece, cal.ece);

        // Confidences 0.9 0.7 0.55 0.7 0.6 0.65 0.8 0.9: 0.55 and 0.6 are below 0.65.
        assert_eq!((r.decision.uncertain, r.decision.uncertain_share), (Some(2), Some(0.25)));
        // Confident at t = 0.4: 0.9 ✓ 0.7 ✓ 0.3 ✗ 0.35 ✓ 0.2 ✓ 0.1 ✓ → 5/6.
        assert_eq!(r.decision.accuracy_on_confident, Some(5.0 / 6.0));
    }

    #[test]
    fn binary_threshold_is_chosen_on_validation() {
        let val_y = [true, true, true, true, true, false, false, false, false, false];
        let val_p = [0.95, 0.8, 0.62, 0.4, 0.33, 0.5, 0.3, 0.25, 0.1, 0.05];
        let val = binary_preds(&val_y, &val_p);
        let eval = binary_preds(&BIN_Y, &BIN_P);
        let opts = ReportOptions { target_sensitivity: Some(0.8), ..Default::default() };
        let r = build_report("test", &eval, Some(&val), &opts).unwrap();
        assert_contract(&r);
        let d = &r.decision;
        assert_eq!(d.chosen_by, ThresholdSource::TargetSensitivity);
        assert_eq!(d.chosen_on.as_deref(), Some("validation"));
        let t = d.threshold.unwrap();
        // The strictest threshold catching 4 of 5 validation positives is the score 0.4;
        // it moves halfway down to the next lower score (0.33) for a margin.
        assert!((t - 0.365).abs() < 1e-12, "{t}");
        let on_val = metrics::binary_metrics(&val_y, &val_p, t).unwrap();
        assert!(on_val.sensitivity >= 0.8, "{}", on_val.sensitivity);
        assert_eq!(d.reached_sensitivity, Some(on_val.sensitivity));
        assert_eq!(d.reached_specificity, Some(on_val.specificity));
        // Metrics on the test split are at that threshold.
        let on_test = metrics::binary_metrics(&BIN_Y, &BIN_P, t).unwrap();
        assert_eq!(r.per_class["sepsis"].sensitivity, on_test.sensitivity);
        assert!(d.notes.is_empty(), "{:?}", d.notes);

        // Without validation it is chosen on the split itself, and says so.
        let r = build_report("test", &eval, None, &opts).unwrap();
        assert_eq!(r.decision.chosen_on.as_deref(), Some("test"));
        // On the test split, 4 of 4 positives are needed to reach 0.8: the lowest positive, 0.3,
        // moved halfway to the next lower score, 0.2.
        assert!((r.decision.threshold.unwrap() - 0.25).abs() < 1e-12, "{:?}", r.decision.threshold);
        assert!(r.decision.notes[0].contains("optimistic"));

        // No positives to aim at: fall back to the default, with a note.
        let none = binary_preds(&[false, false], &[0.2, 0.7]);
        let r = build_report("test", &eval, Some(&none), &opts).unwrap();
        assert_eq!((r.decision.chosen_by, r.decision.threshold), (ThresholdSource::Default, Some(0.5)));
        assert_eq!(r.decision.notes.len(), 1);
    }

    #[test]
    fn multilabel_report_matches_metrics() {
        let p = multilabel_preds();
        let opts = ReportOptions { min_confidence: Some(0.6), ..Default::default() };
        let r = build_report("test", &p, None, &opts).unwrap();
        assert_contract(&r);
        let Truth::Multilabel(y) = &p.truth else { unreachable!() };
        let m = metrics::multilabel_metrics(y, &p.probs, 0.5).unwrap();
        assert_eq!(r.accuracy, m.subset_accuracy);
        assert_eq!(r.macro_f1, m.macro_avg.f1);
        assert_eq!(r.weighted_f1, m.weighted_avg.f1);
        assert_eq!(r.roc_auc_macro, m.macro_roc_auc);
        assert_eq!(r.pr_auc_macro, m.macro_average_precision);
        assert_eq!(r.micro_avg.as_ref().unwrap().f1, m.micro_avg.f1);
        let ConfusionMatrix::PerLabel(cms) = &r.confusion_matrix else { panic!("per-label confusion") };
        assert_eq!(cms.len(), 3);
        let b = &m.per_label[1];
        assert_eq!(cms[1], [[b.true_negatives, b.false_positives], [b.false_negatives, b.true_positives]]);
        assert_eq!(r.per_class["hypertension"].f1, b.f1);
        assert_eq!(r.per_class["copd"].roc_auc, m.per_label[2].roc_auc);
        let v = json(&r);
        assert_eq!(
            v["confusion_matrix"][1],
            serde_json::json!([[b.true_negatives, b.false_positives], [b.false_negatives, b.true_positives]])
        );
        // Least certain label per note: 0.7, 0.55, 0.55, 0.65, 0.6 → two below 0.6.
        assert_eq!((r.decision.uncertain, r.decision.uncertain_share), (Some(2), Some(0.4)));
        // Confident notes 0, 3, 4: exact, exact, wrong (hypertension 0.6) → 2/3.
        assert_eq!(r.decision.accuracy_on_confident, Some(2.0 / 3.0));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut p = multiclass_preds();
        p.probs[3] = vec![0.5, 0.5];
        assert!(build_report("test", &p, None, &ReportOptions::default()).is_err());
        let mut p = multiclass_preds();
        p.labels[2] = "cardiology".into();
        let err = build_report("test", &p, None, &ReportOptions::default()).unwrap_err();
        assert!(format!("{err:#}").contains("twice"), "{err:#}");
        let p = binary_preds(&[true], &[1.5]);
        assert!(build_report("test", &p, None, &ReportOptions::default()).is_err());
        let p = binary_preds(&BIN_Y, &BIN_P);
        let bad = ReportOptions { target_sensitivity: Some(f64::NAN), ..Default::default() };
        assert!(build_report("test", &p, None, &bad).is_err());
        let mut wrong = multiclass_preds();
        wrong.truth = Truth::Binary(vec![true; 8]);
        assert!(build_report("test", &wrong, None, &ReportOptions::default()).is_err());
    }

    fn full_report() -> Report {
        let mut p = multiclass_preds();
        p.labels[1] = "<script>alert(1)</script>".into();
        let mut r =
            build_report("test", &p, None, &ReportOptions { min_confidence: Some(0.5), ..Default::default() }).unwrap();
        r.history = (1..=3)
            .map(|e| HistoryPoint {
                epoch: e,
                step: 10 * e,
                train_loss: Some(1.0 / e as f64),
                val_loss: Some(1.2 / e as f64),
                val_metric: Some(0.5 + 0.1 * e as f64),
                learning_rate: Some(1e-5),
            })
            .collect();
        r.best_epoch = Some(3);
        r.selection_metric = Some("macro_f1".into());
        r.problems = (0..205)
            .map(|i| RowProblem {
                file: "notes<b>.csv".into(),
                line: i + 2,
                kind: ProblemKind::EmptyText,
                message: "column `text` is empty".into(),
            })
            .collect();
        r.scrub = Some([("date".to_string(), 12), ("name".to_string(), 3)].into());
        r.model = "bioclinical-bert".into();
        r.data = "notes.csv".into();
        r
    }

    #[test]
    fn html_is_self_contained_escaped_and_has_charts() {
        let html = render_html(&full_report());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.matches("<svg").count() >= 3, "ROC, reliability and loss charts");
        for title in ["ROC curves", "Reliability", "Loss"] {
            assert!(html.contains(&format!("aria-label=\"{title}")), "no {title} chart");
        }
        assert!(!html.contains("<script>alert(1)</script>"), "raw label in HTML");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("notes<b>.csv"));
        for forbidden in ["http://", "https://", "src=\"http", "href=\"http", "<link", "<img", "@import", "url("] {
            assert!(!html.contains(forbidden), "external reference {forbidden}");
        }
        assert!(!html.contains("<script"), "no scripts at all");
        // 205 problems: the first 200 listed, the rest counted.
        assert_eq!(html.matches("<li><code>").count(), 200);
        assert!(html.contains("205 rows"));
        assert!(html.contains("and 5 more"));
        for text in ["bioclinical-bert", "Per-class metrics", "Confusion matrix", "macro avg", "weighted avg"] {
            assert!(html.contains(text), "HTML lacks {text}");
        }
    }

    #[test]
    fn html_omits_the_loss_chart_without_history() {
        let r = build_report("test", &binary_preds(&BIN_Y, &BIN_P), None, &ReportOptions::default()).unwrap();
        let html = render_html(&r);
        assert!(html.contains("aria-label=\"ROC curves"));
        assert!(!html.contains("aria-label=\"Loss"));
        assert!(html.contains("Sensitivity"));
        let ml = build_report("test", &multilabel_preds(), None, &ReportOptions::default()).unwrap();
        let html = render_html(&ml);
        assert_eq!(html.matches("class=\"confusion\"").count(), 3, "one 2×2 table per label");
    }

    #[test]
    fn markdown_has_the_tables() {
        let md = render_markdown(&full_report());
        assert!(md.contains("| Label | Precision | Recall | F1 | Support | Sensitivity | Specificity | ROC-AUC | AP |"));
        assert!(md.contains("report.html"));
        assert!(!md.contains("<script>"));
        assert!(md.contains("&lt;script>alert(1)&lt;/script>"));
        assert!(md.contains("| **macro avg** |"));
        assert!(md.contains("and 5 more"));
        assert!(md.contains("## Training history"));
    }

    #[test]
    fn write_report_writes_three_files_that_read_back() {
        let dir = std::env::temp_dir().join(format!("bedside-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let report = full_report();
        write_report(&report, &dir).unwrap();
        for name in ["report.json", "report.html", "report.md"] {
            assert!(std::fs::metadata(dir.join(name)).unwrap().len() > 0, "{name}");
            assert!(!dir.join(format!("{name}.partial")).exists());
        }
        let back: Report = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        assert_same(&json(&back), &json(&report), "report.json");
        assert_eq!((&back.problems, &back.labels, &back.history.len()), (&report.problems, &report.labels, &3));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        assert_eq!(v["problems"][0]["kind"], "empty_text");
        assert_eq!(v["problems"][0]["line"], 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_problem_kind_reads_back() {
        // Exhaustive on purpose: a new ProblemKind must be added to `problems_serde::KINDS`.
        fn listed(k: ProblemKind) -> bool {
            match k {
                ProblemKind::EmptyText
                | ProblemKind::MissingLabel
                | ProblemKind::EmptyField
                | ProblemKind::MissingColumn
                | ProblemKind::WrongType
                | ProblemKind::InvalidJson
                | ProblemKind::InvalidUtf8
                | ProblemKind::WrongFieldCount
                | ProblemKind::UnseenLabel
                | ProblemKind::Unpaired => problems_serde::KINDS.contains(&k),
            }
        }
        assert!(problems_serde::KINDS.into_iter().all(listed));
        let mut r = full_report();
        r.problems = problems_serde::KINDS
            .into_iter()
            .map(|kind| RowProblem { file: "a.jsonl".into(), line: 1, kind, message: String::new() })
            .collect();
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.problems, r.problems);
        let mut v = json(&r);
        v["problems"][0]["kind"] = "no_such_kind".into();
        assert!(serde_json::from_value::<Report>(v).is_err());
    }
}
