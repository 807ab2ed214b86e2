//! Classification metrics over plain slices (f64), checked against scikit-learn.
//!
//! Every number here is compared with scikit-learn's on fixed examples: the inputs and sklearn's
//! outputs live in `trainer/tests/fixtures/metrics/*.json`, written by
//! `models/reference/make_metrics_fixtures.py`.
//!
//! Conventions (sklearn's unless said otherwise):
//! * Precision / recall / F1 / support follow `precision_recall_fscore_support` with
//!   `zero_division=0`: a ratio whose denominator is 0 is 0. F1 is `2·TP / (2·TP + FP + FN)`. Macro
//!   averages run over all `k` classes (sklearn with `labels=range(k)`), including a class that is
//!   never true or never predicted; weighted averages weight by support.
//! * Specificity = `TN / (TN + FP)`, 0 when there are no negatives (same zero-division rule).
//! * ROC-AUC is the trapezoid area under the ROC curve whose points sit at the distinct scores, so
//!   tied scores give one diagonal step (= the Mann-Whitney statistic with ties counted ½), as in
//!   `roc_auc_score`. It is `None` when the labels hold only positives or only negatives (sklearn
//!   warns and returns NaN).
//! * Average precision (PR-AUC) is sklearn's `average_precision_score`: the step-wise sum
//!   `Σ (R_i − R_{i−1}) · P_i` over the distinct scores from the highest down, no interpolation and
//!   no trapezoid. It is `None` when there are no positives (sklearn warns and returns 0.0 there).
//! * One-vs-rest per class: column `c` of the probabilities scores "class `c`". Macro ROC-AUC and
//!   macro AP average over the classes where they are defined.
//! * Binary and multi-label decisions: positive iff `p >= threshold`.
//! * Confidence of a row = its maximum probability, the prediction = its argmax (first index on ties,
//!   like `numpy.argmax`). For a binary probability `p` the confidence is `max(p, 1 − p)` and the
//!   prediction is `p >= 0.5`.
//! * Calibration: `B` equal-width bins `[0, 1/B], (1/B, 2/B], …, ((B−1)/B, 1]` — bin index
//!   `ceil(conf·B) − 1` clamped to `[0, B−1]` (see [`calibration_bin`]). ECE = `Σ_b n_b/n ·
//!   |acc_b − conf_b|`, MCE = the largest gap over non-empty bins.
//!
//! The entry points that take whole datasets ([`multiclass_metrics`], [`binary_metrics`],
//! [`multilabel_metrics`], [`calibration`], …) validate their inputs and return [`MetricsError`];
//! the ranking primitives ([`roc_auc`], [`average_precision`], [`roc_curve`]) panic on mismatched
//! lengths or NaN scores, which are programming errors.

use serde::Serialize;
use std::fmt;

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsError {
    /// No samples.
    Empty,
    /// Two per-sample inputs differ in length.
    LengthMismatch { what: &'static str, expected: usize, got: usize },
    /// A probability or indicator row has the wrong number of columns (or zero columns).
    RowWidth { row: usize, expected: usize, got: usize },
    /// A class index is not below the number of classes.
    LabelOutOfRange { row: usize, label: usize, n_classes: usize },
    /// A score or probability is NaN or infinite.
    NonFinite { row: usize },
    /// A confidence lies outside `[0, 1]`.
    OutOfUnitRange { row: usize, value: f64 },
    /// A parameter (threshold, target, bin count) is unusable.
    InvalidParameter { name: &'static str, value: f64 },
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsError::Empty => write!(f, "no samples to evaluate"),
            MetricsError::LengthMismatch { what, expected, got } => {
                write!(f, "{what}: expected {expected} entries (one per sample), got {got}")
            }
            MetricsError::RowWidth { row, expected, got } => {
                write!(f, "row {row} has {got} columns, expected {expected}")
            }
            MetricsError::LabelOutOfRange { row, label, n_classes } => {
                write!(f, "row {row}: class index {label} is out of range for {n_classes} classes")
            }
            MetricsError::NonFinite { row } => write!(f, "row {row}: score is NaN or infinite"),
            MetricsError::OutOfUnitRange { row, value } => {
                write!(f, "row {row}: confidence {value} is outside [0, 1]")
            }
            MetricsError::InvalidParameter { name, value } => write!(f, "invalid {name}: {value}"),
        }
    }
}

impl std::error::Error for MetricsError {}

pub type Result<T> = std::result::Result<T, MetricsError>;

// ---------------------------------------------------------------------------------------------
// Result types
// ---------------------------------------------------------------------------------------------

/// Precision, recall and F1 averaged over classes or labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Averages {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// One class of a multi-class problem (one-vs-rest).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub class: usize,
    /// Samples whose true class is this one.
    pub support: usize,
    /// Samples predicted as this class.
    pub predicted: usize,
    pub precision: f64,
    pub recall: f64,
    /// Same as `recall`; spelled out for clinical readers.
    pub sensitivity: f64,
    pub specificity: f64,
    pub f1: f64,
    pub roc_auc: Option<f64>,
    pub average_precision: Option<f64>,
}

/// Multi-class metrics: see [`multiclass_metrics`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MulticlassMetrics {
    pub n_samples: usize,
    pub n_classes: usize,
    pub accuracy: f64,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    pub per_class: Vec<ClassMetrics>,
    pub macro_avg: Averages,
    pub weighted_avg: Averages,
    /// Mean of the defined per-class ROC-AUCs; `None` if none is defined.
    pub macro_roc_auc: Option<f64>,
    /// Mean of the defined per-class average precisions; `None` if none is defined.
    pub macro_average_precision: Option<f64>,
}

/// Binary metrics at one threshold plus threshold-free ranking metrics: see [`binary_metrics`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BinaryMetrics {
    pub n_samples: usize,
    /// Positive iff `p >= threshold`.
    pub threshold: f64,
    /// Number of positives in the labels.
    pub support: usize,
    pub true_positives: usize,
    pub false_positives: usize,
    pub true_negatives: usize,
    pub false_negatives: usize,
    pub precision: f64,
    pub recall: f64,
    /// Same as `recall`.
    pub sensitivity: f64,
    pub specificity: f64,
    pub f1: f64,
    pub accuracy: f64,
    pub roc_auc: Option<f64>,
    pub average_precision: Option<f64>,
}

/// Multi-label metrics: see [`multilabel_metrics`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MultilabelMetrics {
    pub n_samples: usize,
    pub n_labels: usize,
    pub threshold: f64,
    pub per_label: Vec<BinaryMetrics>,
    /// From the TP/FP/FN counts pooled over all labels.
    pub micro_avg: Averages,
    /// Unweighted mean over all labels.
    pub macro_avg: Averages,
    /// Mean over labels weighted by their number of positives.
    pub weighted_avg: Averages,
    /// Share of samples whose whole label set is predicted exactly.
    pub subset_accuracy: f64,
    /// Share of (sample, label) cells predicted wrongly.
    pub hamming_loss: f64,
    pub macro_roc_auc: Option<f64>,
    pub macro_average_precision: Option<f64>,
}

/// ROC curve points for plotting, as sklearn's `roc_curve`: the first point is (0, 0) at threshold
/// `+inf` (serialized as JSON `null`), then one point per distinct score from the highest down.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RocCurve {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    pub thresholds: Vec<f64>,
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationBin {
    /// Exclusive lower edge (the first bin also holds confidence 0).
    pub lower: f64,
    /// Inclusive upper edge.
    pub upper: f64,
    pub count: usize,
    /// `None` for an empty bin.
    pub mean_confidence: Option<f64>,
    /// `None` for an empty bin.
    pub accuracy: Option<f64>,
}

/// Expected calibration error and the reliability diagram: see [`calibration_from_confidence`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    pub n_samples: usize,
    pub n_bins: usize,
    /// Expected calibration error.
    pub ece: f64,
    /// Maximum calibration error over non-empty bins.
    pub mce: f64,
    pub bins: Vec<CalibrationBin>,
}

/// What a minimum-confidence rule leaves "uncertain": see [`abstention_from_confidence`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Abstention {
    pub min_confidence: f64,
    pub n_samples: usize,
    /// Samples with confidence `< min_confidence`.
    pub uncertain: usize,
    pub uncertain_share: f64,
    /// Accuracy over the samples that are not uncertain; `None` if there are none.
    pub accuracy_on_confident: Option<f64>,
}

/// A binary decision threshold chosen for a target sensitivity: see [`threshold_for_sensitivity`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdChoice {
    pub target_sensitivity: f64,
    /// Positive iff `p >= threshold`; one of the observed scores.
    pub threshold: f64,
    pub sensitivity: f64,
    pub specificity: f64,
    pub precision: f64,
    /// Samples at or above the threshold.
    pub flagged: usize,
    pub flagged_share: f64,
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// `num / den`, or 0 when `den == 0` (sklearn's `zero_division=0`).
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn mean_defined(xs: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let (sum, n) = xs.into_iter().flatten().fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// The predicted class (argmax, first index on ties like `numpy.argmax`) and its probability.
///
/// # Panics
/// On an empty row.
pub fn top_class(row: &[f64]) -> (usize, f64) {
    assert!(!row.is_empty(), "top_class of an empty row");
    let mut best = 0;
    for (i, &p) in row.iter().enumerate().skip(1) {
        if p > row[best] {
            best = i;
        }
    }
    (best, row[best])
}

/// Confidence of a binary positive-class probability: `max(p, 1 − p)`.
pub fn binary_confidence(p: f64) -> f64 {
    p.max(1.0 - p)
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(MetricsError::LengthMismatch { what, expected, got })
    }
}

fn check_param(name: &'static str, value: f64) -> Result<()> {
    if value.is_nan() {
        Err(MetricsError::InvalidParameter { name, value })
    } else {
        Ok(())
    }
}

fn check_finite(scores: &[f64]) -> Result<()> {
    match scores.iter().position(|s| !s.is_finite()) {
        Some(row) => Err(MetricsError::NonFinite { row }),
        None => Ok(()),
    }
}

/// Checks a probability matrix (`n` rows of equal, non-zero width, finite) and returns the width.
fn check_rows<R: AsRef<[f64]>>(rows: &[R], n: usize) -> Result<usize> {
    check_len("probability rows", n, rows.len())?;
    let k = rows.first().map_or(0, |r| r.as_ref().len());
    for (i, r) in rows.iter().enumerate() {
        let r = r.as_ref();
        if r.len() != k || k == 0 {
            return Err(MetricsError::RowWidth { row: i, expected: k.max(1), got: r.len() });
        }
        if r.iter().any(|p| !p.is_finite()) {
            return Err(MetricsError::NonFinite { row: i });
        }
    }
    Ok(k)
}

fn check_labels(labels: &[usize], n_classes: usize) -> Result<()> {
    match labels.iter().position(|&l| l >= n_classes) {
        Some(row) => Err(MetricsError::LabelOutOfRange { row, label: labels[row], n_classes }),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Ranking metrics (binary, threshold-free)
// ---------------------------------------------------------------------------------------------

/// sklearn's `_binary_clf_curve`: for each distinct score from the highest down, that score and
/// the cumulative (TP, FP) counts of predicting positive at `score >= threshold`.
/// `None` when lengths differ or a score is NaN: ranking metrics are undefined then, and a bad
/// row must not bring down an evaluation run.
fn clf_curve(y_true: &[bool], scores: &[f64]) -> Option<Vec<(f64, usize, usize)>> {
    if y_true.len() != scores.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Stable sort, descending; -0.0 and 0.0 compare equal, as in numpy (no NaN: checked above).
    order.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap_or(std::cmp::Ordering::Equal));
    let mut points = Vec::new();
    let (mut tp, mut fp) = (0usize, 0usize);
    for (i, &idx) in order.iter().enumerate() {
        if y_true[idx] {
            tp += 1;
        } else {
            fp += 1;
        }
        let last_of_tie = order.get(i + 1).is_none_or(|&next| scores[next] != scores[idx]);
        if last_of_tie {
            points.push((scores[idx], tp, fp));
        }
    }
    Some(points)
}

/// ROC-AUC of `scores` for the positive labels; `None` unless both classes are present.
///
/// Trapezoid over the ROC points at the distinct scores (ties → one diagonal segment), computed
/// from integer counts. Equals sklearn's `roc_auc_score`.
///
/// `None` too if the lengths differ or a score is NaN.
pub fn roc_auc(y_true: &[bool], scores: &[f64]) -> Option<f64> {
    let points = clf_curve(y_true, scores)?;
    let &(_, pos, neg) = points.last()?;
    if pos == 0 || neg == 0 {
        return None;
    }
    // Twice the area in units of (1/neg)·(1/pos): Σ Δfp · (tp + tp_prev).
    let (mut twice_area, mut prev_tp, mut prev_fp) = (0u128, 0usize, 0usize);
    for &(_, tp, fp) in &points {
        twice_area += ((fp - prev_fp) as u128) * ((tp + prev_tp) as u128);
        prev_tp = tp;
        prev_fp = fp;
    }
    Some(twice_area as f64 / (2.0 * pos as f64 * neg as f64))
}

/// Average precision (PR-AUC) as sklearn's `average_precision_score`: `Σ (R_i − R_{i−1}) · P_i` over
/// the distinct scores from the highest down (step-wise, not trapezoid). `None` without positives.
///
/// `None` too if the lengths differ or a score is NaN.
pub fn average_precision(y_true: &[bool], scores: &[f64]) -> Option<f64> {
    let points = clf_curve(y_true, scores)?;
    let &(_, pos, _) = points.last()?;
    if pos == 0 {
        return None;
    }
    let (mut ap, mut prev_tp) = (0.0, 0usize);
    for &(_, tp, fp) in &points {
        if tp > prev_tp {
            ap += (tp - prev_tp) as f64 / pos as f64 * (tp as f64 / (tp + fp) as f64);
        }
        prev_tp = tp;
    }
    Some(ap)
}

/// ROC curve points, as sklearn's `roc_curve`. `None` unless both classes are present (sklearn
/// returns NaN rates there).
///
/// With `drop_intermediate` (sklearn's default) a point is dropped when it lies in the middle of
/// three equally spaced points (zero second difference in both FP and TP counts); the first and
/// last points always stay.
///
/// `None` too if the lengths differ or a score is NaN.
pub fn roc_curve(y_true: &[bool], scores: &[f64], drop_intermediate: bool) -> Option<RocCurve> {
    let points = clf_curve(y_true, scores)?;
    let &(_, pos, neg) = points.last()?;
    if pos == 0 || neg == 0 {
        return None;
    }
    let m = points.len();
    let second_diff_nonzero = |i: usize| {
        let (_, tp0, fp0) = points[i - 1];
        let (_, tp1, fp1) = points[i];
        let (_, tp2, fp2) = points[i + 1];
        tp0 + tp2 != 2 * tp1 || fp0 + fp2 != 2 * fp1
    };
    let mut curve = RocCurve { fpr: vec![0.0], tpr: vec![0.0], thresholds: vec![f64::INFINITY] };
    for (i, &(t, tp, fp)) in points.iter().enumerate() {
        let keep = !drop_intermediate || m <= 2 || i == 0 || i == m - 1 || second_diff_nonzero(i);
        if keep {
            curve.fpr.push(fp as f64 / neg as f64);
            curve.tpr.push(tp as f64 / pos as f64);
            curve.thresholds.push(t);
        }
    }
    Some(curve)
}

// ---------------------------------------------------------------------------------------------
// Multi-class
// ---------------------------------------------------------------------------------------------

/// Confusion matrix `[true][predicted]` over classes `0..n_classes`.
pub fn confusion_matrix(y_true: &[usize], y_pred: &[usize], n_classes: usize) -> Result<Vec<Vec<usize>>> {
    check_len("predicted labels", y_true.len(), y_pred.len())?;
    check_labels(y_true, n_classes)?;
    check_labels(y_pred, n_classes)?;
    let mut cm = vec![vec![0usize; n_classes]; n_classes];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        cm[t][p] += 1;
    }
    Ok(cm)
}

/// Multi-class metrics from true class indices, predicted class indices and probability rows
/// (`probs[i][c]` = probability of class `c` for sample `i`; `k` = row width).
///
/// Precision/recall/F1/support per class and their macro and weighted averages follow sklearn's
/// `precision_recall_fscore_support(labels=range(k), zero_division=0)`; ROC-AUC and average
/// precision are one-vs-rest on each probability column (see the module docs).
pub fn multiclass_metrics<R: AsRef<[f64]>>(
    y_true: &[usize],
    y_pred: &[usize],
    probs: &[R],
) -> Result<MulticlassMetrics> {
    let n = y_true.len();
    if n == 0 {
        return Err(MetricsError::Empty);
    }
    let k = check_rows(probs, n)?;
    let confusion = confusion_matrix(y_true, y_pred, k)?;

    let mut per_class = Vec::with_capacity(k);
    let mut column = vec![0.0; n];
    for c in 0..k {
        let tp = confusion[c][c];
        let support: usize = confusion[c].iter().sum();
        let predicted: usize = confusion.iter().map(|row| row[c]).sum();
        let (fn_, fp) = (support - tp, predicted - tp);
        let tn = n - tp - fn_ - fp;
        let recall = ratio(tp, support);
        let is_c: Vec<bool> = y_true.iter().map(|&t| t == c).collect();
        for (x, row) in column.iter_mut().zip(probs) {
            *x = row.as_ref()[c];
        }
        per_class.push(ClassMetrics {
            class: c,
            support,
            predicted,
            precision: ratio(tp, predicted),
            recall,
            sensitivity: recall,
            specificity: ratio(tn, tn + fp),
            f1: ratio(2 * tp, support + predicted),
            roc_auc: roc_auc(&is_c, &column),
            average_precision: average_precision(&is_c, &column),
        });
    }

    let kf = k as f64;
    let macro_avg = Averages {
        precision: per_class.iter().map(|m| m.precision).sum::<f64>() / kf,
        recall: per_class.iter().map(|m| m.recall).sum::<f64>() / kf,
        f1: per_class.iter().map(|m| m.f1).sum::<f64>() / kf,
    };
    let weighted =
        |f: fn(&ClassMetrics) -> f64| per_class.iter().map(|m| m.support as f64 * f(m)).sum::<f64>() / n as f64;
    let weighted_avg =
        Averages { precision: weighted(|m| m.precision), recall: weighted(|m| m.recall), f1: weighted(|m| m.f1) };
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();

    Ok(MulticlassMetrics {
        n_samples: n,
        n_classes: k,
        accuracy: correct as f64 / n as f64,
        macro_roc_auc: mean_defined(per_class.iter().map(|m| m.roc_auc)),
        macro_average_precision: mean_defined(per_class.iter().map(|m| m.average_precision)),
        confusion,
        per_class,
        macro_avg,
        weighted_avg,
    })
}

// ---------------------------------------------------------------------------------------------
// Binary and multi-label
// ---------------------------------------------------------------------------------------------

/// Binary metrics of the positive-class probabilities `p_pos` against `y_true`, deciding positive
/// iff `p >= threshold`; ROC-AUC and average precision are threshold-free.
pub fn binary_metrics(y_true: &[bool], p_pos: &[f64], threshold: f64) -> Result<BinaryMetrics> {
    if y_true.is_empty() {
        return Err(MetricsError::Empty);
    }
    check_len("positive-class probabilities", y_true.len(), p_pos.len())?;
    check_finite(p_pos)?;
    check_param("threshold", threshold)?;
    Ok(binary_unchecked(y_true, p_pos, threshold))
}

fn binary_unchecked(y_true: &[bool], p_pos: &[f64], threshold: f64) -> BinaryMetrics {
    let (mut tp, mut fp, mut tn, mut fn_) = (0, 0, 0, 0);
    for (&y, &p) in y_true.iter().zip(p_pos) {
        match (y, p >= threshold) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (false, false) => tn += 1,
            (true, false) => fn_ += 1,
        }
    }
    let n = y_true.len();
    let recall = ratio(tp, tp + fn_);
    BinaryMetrics {
        n_samples: n,
        threshold,
        support: tp + fn_,
        true_positives: tp,
        false_positives: fp,
        true_negatives: tn,
        false_negatives: fn_,
        precision: ratio(tp, tp + fp),
        recall,
        sensitivity: recall,
        specificity: ratio(tn, tn + fp),
        f1: ratio(2 * tp, 2 * tp + fp + fn_),
        accuracy: ratio(tp + tn, n),
        roc_auc: roc_auc(y_true, p_pos),
        average_precision: average_precision(y_true, p_pos),
    }
}

/// Multi-label metrics from an indicator matrix `y_true[i][j]` (sample `i` has label `j`) and
/// probabilities `probs[i][j]`, deciding label `j` iff `probs[i][j] >= threshold`.
///
/// Per label: [`BinaryMetrics`]. Averages as sklearn's `precision_recall_fscore_support` on
/// indicator matrices with `average="micro" | "macro" | "weighted"`, `zero_division=0`.
pub fn multilabel_metrics<Y: AsRef<[bool]>, R: AsRef<[f64]>>(
    y_true: &[Y],
    probs: &[R],
    threshold: f64,
) -> Result<MultilabelMetrics> {
    let n = y_true.len();
    if n == 0 {
        return Err(MetricsError::Empty);
    }
    check_param("threshold", threshold)?;
    let l = check_rows(probs, n)?;
    for (i, row) in y_true.iter().enumerate() {
        check_len_row(i, l, row.as_ref().len())?;
    }

    let mut per_label = Vec::with_capacity(l);
    for j in 0..l {
        let y: Vec<bool> = y_true.iter().map(|r| r.as_ref()[j]).collect();
        let p: Vec<f64> = probs.iter().map(|r| r.as_ref()[j]).collect();
        per_label.push(binary_unchecked(&y, &p, threshold));
    }

    let (tp, fp, fn_) = per_label
        .iter()
        .fold((0, 0, 0), |(tp, fp, fn_), m| (tp + m.true_positives, fp + m.false_positives, fn_ + m.false_negatives));
    let micro_avg =
        Averages { precision: ratio(tp, tp + fp), recall: ratio(tp, tp + fn_), f1: ratio(2 * tp, 2 * tp + fp + fn_) };
    let lf = l as f64;
    let macro_avg = Averages {
        precision: per_label.iter().map(|m| m.precision).sum::<f64>() / lf,
        recall: per_label.iter().map(|m| m.recall).sum::<f64>() / lf,
        f1: per_label.iter().map(|m| m.f1).sum::<f64>() / lf,
    };
    let total_support: usize = per_label.iter().map(|m| m.support).sum();
    let weighted = |f: fn(&BinaryMetrics) -> f64| {
        if total_support == 0 {
            0.0
        } else {
            per_label.iter().map(|m| m.support as f64 * f(m)).sum::<f64>() / total_support as f64
        }
    };
    let weighted_avg =
        Averages { precision: weighted(|m| m.precision), recall: weighted(|m| m.recall), f1: weighted(|m| m.f1) };

    let mut exact = 0usize;
    let mut wrong_cells = 0usize;
    for (y, p) in y_true.iter().zip(probs) {
        let wrong = y.as_ref().iter().zip(p.as_ref()).filter(|(&y, &p)| y != (p >= threshold)).count();
        wrong_cells += wrong;
        exact += usize::from(wrong == 0);
    }

    Ok(MultilabelMetrics {
        n_samples: n,
        n_labels: l,
        threshold,
        micro_avg,
        macro_avg,
        weighted_avg,
        subset_accuracy: ratio(exact, n),
        hamming_loss: ratio(wrong_cells, n * l),
        macro_roc_auc: mean_defined(per_label.iter().map(|m| m.roc_auc)),
        macro_average_precision: mean_defined(per_label.iter().map(|m| m.average_precision)),
        per_label,
    })
}

fn check_len_row(row: usize, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(MetricsError::RowWidth { row, expected, got })
    }
}

// ---------------------------------------------------------------------------------------------
// Calibration and abstention
// ---------------------------------------------------------------------------------------------

/// The calibration bin of a confidence: `ceil(conf·B) − 1` clamped to `[0, B−1]`, so the bins are
/// `[0, 1/B], (1/B, 2/B], …, ((B−1)/B, 1]` (upper edges inclusive, as in common ECE code; the
/// product `conf·B` is taken in f64 exactly as numpy does).
pub fn calibration_bin(confidence: f64, n_bins: usize) -> usize {
    let b = (confidence * n_bins as f64).ceil() - 1.0;
    if b <= 0.0 {
        0
    } else {
        (b as usize).min(n_bins - 1)
    }
}

/// Expected calibration error and reliability-diagram bins from per-sample confidences and whether
/// each prediction was correct, with `n_bins` equal-width bins (see [`calibration_bin`]).
///
/// ECE = `Σ_b (n_b / n) · |accuracy_b − mean_confidence_b|`; MCE = max gap over non-empty bins.
pub fn calibration_from_confidence(confidence: &[f64], correct: &[bool], n_bins: usize) -> Result<Calibration> {
    let n = confidence.len();
    if n == 0 {
        return Err(MetricsError::Empty);
    }
    check_len("correctness flags", n, correct.len())?;
    if n_bins == 0 {
        return Err(MetricsError::InvalidParameter { name: "n_bins", value: 0.0 });
    }
    check_finite(confidence)?;
    if let Some(row) = confidence.iter().position(|c| !(0.0..=1.0).contains(c)) {
        return Err(MetricsError::OutOfUnitRange { row, value: confidence[row] });
    }

    let mut counts = vec![0usize; n_bins];
    let mut conf_sums = vec![0.0; n_bins];
    let mut hits = vec![0usize; n_bins];
    for (&c, &ok) in confidence.iter().zip(correct) {
        let b = calibration_bin(c, n_bins);
        counts[b] += 1;
        conf_sums[b] += c;
        hits[b] += usize::from(ok);
    }

    let (mut ece, mut mce) = (0.0f64, 0.0f64);
    let mut bins = Vec::with_capacity(n_bins);
    for b in 0..n_bins {
        let count = counts[b];
        let (mean_confidence, accuracy) = if count == 0 {
            (None, None)
        } else {
            let (mc, acc) = (conf_sums[b] / count as f64, hits[b] as f64 / count as f64);
            let gap = (acc - mc).abs();
            ece += count as f64 / n as f64 * gap;
            mce = mce.max(gap);
            (Some(mc), Some(acc))
        };
        bins.push(CalibrationBin {
            lower: b as f64 / n_bins as f64,
            upper: (b + 1) as f64 / n_bins as f64,
            count,
            mean_confidence,
            accuracy,
        });
    }
    Ok(Calibration { n_samples: n, n_bins, ece, mce, bins })
}

/// Per-sample confidence (row max) and correctness (argmax == true class) of a multi-class model.
fn multiclass_confidence<R: AsRef<[f64]>>(y_true: &[usize], probs: &[R]) -> Result<(Vec<f64>, Vec<bool>)> {
    if y_true.is_empty() {
        return Err(MetricsError::Empty);
    }
    let k = check_rows(probs, y_true.len())?;
    check_labels(y_true, k)?;
    Ok(probs
        .iter()
        .zip(y_true)
        .map(|(row, &t)| {
            let (pred, conf) = top_class(row.as_ref());
            (conf, pred == t)
        })
        .unzip())
}

/// Per-sample confidence `max(p, 1 − p)` and correctness of `p >= 0.5` for a binary model.
fn binary_confidence_correct(y_true: &[bool], p_pos: &[f64]) -> Result<(Vec<f64>, Vec<bool>)> {
    if y_true.is_empty() {
        return Err(MetricsError::Empty);
    }
    check_len("positive-class probabilities", y_true.len(), p_pos.len())?;
    check_finite(p_pos)?;
    Ok(p_pos.iter().zip(y_true).map(|(&p, &y)| (binary_confidence(p), (p >= 0.5) == y)).unzip())
}

/// Calibration of a multi-class model: confidence = max probability, prediction = its argmax.
pub fn calibration<R: AsRef<[f64]>>(y_true: &[usize], probs: &[R], n_bins: usize) -> Result<Calibration> {
    let (conf, correct) = multiclass_confidence(y_true, probs)?;
    calibration_from_confidence(&conf, &correct, n_bins)
}

/// Calibration of a binary model: confidence = `max(p, 1 − p)`, prediction = `p >= 0.5`.
pub fn binary_calibration(y_true: &[bool], p_pos: &[f64], n_bins: usize) -> Result<Calibration> {
    let (conf, correct) = binary_confidence_correct(y_true, p_pos)?;
    calibration_from_confidence(&conf, &correct, n_bins)
}

/// Share of confidences below `min_confidence` (strictly): the notes a minimum-confidence rule
/// would leave "uncertain". 0 for no notes.
pub fn uncertain_share(confidence: &[f64], min_confidence: f64) -> f64 {
    ratio(confidence.iter().filter(|&&c| c < min_confidence).count(), confidence.len())
}

/// What a minimum-confidence rule does on labelled data: how many samples have confidence
/// `< min_confidence` ("uncertain", left for a human) and the accuracy on the rest.
pub fn abstention_from_confidence(confidence: &[f64], correct: &[bool], min_confidence: f64) -> Result<Abstention> {
    let n = confidence.len();
    if n == 0 {
        return Err(MetricsError::Empty);
    }
    check_len("correctness flags", n, correct.len())?;
    check_param("min_confidence", min_confidence)?;
    check_finite(confidence)?;
    let (mut uncertain, mut kept_correct) = (0usize, 0usize);
    for (&c, &ok) in confidence.iter().zip(correct) {
        if c < min_confidence {
            uncertain += 1;
        } else {
            kept_correct += usize::from(ok);
        }
    }
    let kept = n - uncertain;
    Ok(Abstention {
        min_confidence,
        n_samples: n,
        uncertain,
        uncertain_share: ratio(uncertain, n),
        accuracy_on_confident: (kept > 0).then(|| ratio(kept_correct, kept)),
    })
}

/// [`abstention_from_confidence`] for a multi-class model (confidence = max probability).
pub fn abstention<R: AsRef<[f64]>>(y_true: &[usize], probs: &[R], min_confidence: f64) -> Result<Abstention> {
    let (conf, correct) = multiclass_confidence(y_true, probs)?;
    abstention_from_confidence(&conf, &correct, min_confidence)
}

/// [`abstention_from_confidence`] for a binary model (confidence = `max(p, 1 − p)`).
pub fn binary_abstention(y_true: &[bool], p_pos: &[f64], min_confidence: f64) -> Result<Abstention> {
    let (conf, correct) = binary_confidence_correct(y_true, p_pos)?;
    abstention_from_confidence(&conf, &correct, min_confidence)
}

/// The highest threshold (among the observed scores) whose sensitivity on these labelled samples
/// is `>= target` when deciding positive iff `p >= threshold` — e.g. pick on validation data the
/// strictest cut-off that still catches 90 % of positives. `None` if there are no positives or
/// the target is above 1.
pub fn threshold_for_sensitivity(y_true: &[bool], p_pos: &[f64], target: f64) -> Result<Option<ThresholdChoice>> {
    if y_true.is_empty() {
        return Err(MetricsError::Empty);
    }
    check_len("positive-class probabilities", y_true.len(), p_pos.len())?;
    check_finite(p_pos)?;
    check_param("target sensitivity", target)?;
    // Lengths and finiteness were checked just above, so the curve exists.
    let points = clf_curve(y_true, p_pos).unwrap_or_default();
    let (pos, neg) = points.last().map_or((0, 0), |&(_, tp, fp)| (tp, fp));
    if pos == 0 {
        return Ok(None);
    }
    Ok(points.iter().find(|&&(_, tp, _)| ratio(tp, pos) >= target).map(|&(threshold, tp, fp)| ThresholdChoice {
        target_sensitivity: target,
        threshold,
        sensitivity: ratio(tp, pos),
        specificity: ratio(neg - fp, neg),
        precision: ratio(tp, tp + fp),
        flagged: tp + fp,
        flagged_share: ratio(tp + fp, y_true.len()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const TOL: f64 = 1e-9;

    // ---- fixture helpers ------------------------------------------------------------------

    fn load(text: &str) -> Value {
        serde_json::from_str(text).expect("fixture JSON")
    }

    fn num(v: &Value) -> f64 {
        v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
    }

    fn int(v: &Value) -> usize {
        v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}")) as usize
    }

    fn nums(v: &Value) -> Vec<f64> {
        v.as_array().unwrap().iter().map(num).collect()
    }

    fn ints(v: &Value) -> Vec<usize> {
        v.as_array().unwrap().iter().map(int).collect()
    }

    fn bools(v: &Value) -> Vec<bool> {
        v.as_array().unwrap().iter().map(|b| b.as_bool().unwrap()).collect()
    }

    fn rows(v: &Value) -> Vec<Vec<f64>> {
        v.as_array().unwrap().iter().map(nums).collect()
    }

    fn bool_rows(v: &Value) -> Vec<Vec<bool>> {
        v.as_array().unwrap().iter().map(bools).collect()
    }

    fn close(got: f64, want: f64, what: &str) {
        assert!((got - want).abs() <= TOL, "{what}: got {got}, sklearn {want}");
    }

    fn close_v(got: f64, want: &Value, what: &str) {
        close(got, num(want), what);
    }

    fn close_opt(got: Option<f64>, want: &Value, what: &str) {
        match (got, want.is_null()) {
            (None, true) => {}
            (Some(g), false) => close(g, num(want), what),
            _ => panic!("{what}: got {got:?}, sklearn {want}"),
        }
    }

    fn close_avg(got: &Averages, want: &Value, what: &str) {
        close_v(got.precision, &want["precision"], &format!("{what} precision"));
        close_v(got.recall, &want["recall"], &format!("{what} recall"));
        close_v(got.f1, &want["f1"], &format!("{what} f1"));
    }

    fn check_calibration(got: &Calibration, want: &Value, what: &str) {
        assert_eq!(got.n_bins, int(&want["n_bins"]), "{what}");
        close_v(got.ece, &want["ece"], &format!("{what} ece"));
        close_v(got.mce, &want["mce"], &format!("{what} mce"));
        let bins = want["bins"].as_array().unwrap();
        assert_eq!(got.bins.len(), bins.len(), "{what}");
        for (b, (g, w)) in got.bins.iter().zip(bins).enumerate() {
            assert_eq!(g.count, int(&w["count"]), "{what} bin {b} count");
            close_opt(g.mean_confidence, &w["mean_confidence"], &format!("{what} bin {b} confidence"));
            close_opt(g.accuracy, &w["accuracy"], &format!("{what} bin {b} accuracy"));
        }
    }

    fn check_abstention(got: &Abstention, want: &Value, what: &str) {
        close_v(got.min_confidence, &want["min_confidence"], what);
        assert_eq!(got.uncertain, int(&want["uncertain"]), "{what} uncertain");
        close_v(got.uncertain_share, &want["uncertain_share"], &format!("{what} share"));
        close_opt(got.accuracy_on_confident, &want["accuracy_on_confident"], &format!("{what} accuracy"));
    }

    fn check_binary(got: &BinaryMetrics, want: &Value, what: &str) {
        close_v(got.threshold, &want["threshold"], what);
        assert_eq!(got.true_positives, int(&want["tp"]), "{what} tp");
        assert_eq!(got.false_positives, int(&want["fp"]), "{what} fp");
        assert_eq!(got.true_negatives, int(&want["tn"]), "{what} tn");
        assert_eq!(got.false_negatives, int(&want["fn"]), "{what} fn");
        close_v(got.precision, &want["precision"], &format!("{what} precision"));
        close_v(got.recall, &want["recall"], &format!("{what} recall"));
        close_v(got.sensitivity, &want["recall"], &format!("{what} sensitivity"));
        close_v(got.specificity, &want["specificity"], &format!("{what} specificity"));
        close_v(got.f1, &want["f1"], &format!("{what} f1"));
        close_v(got.accuracy, &want["accuracy"], &format!("{what} accuracy"));
        close_opt(got.roc_auc, &want["roc_auc"], &format!("{what} roc_auc"));
        close_opt(got.average_precision, &want["average_precision"], &format!("{what} average_precision"));
    }

    fn check_roc(got: &RocCurve, want: &Value, what: &str) {
        let (fpr, tpr) = (nums(&want["fpr"]), nums(&want["tpr"]));
        let thresholds = want["thresholds"].as_array().unwrap();
        assert_eq!(got.fpr.len(), fpr.len(), "{what}: number of points");
        assert_eq!(got.tpr.len(), tpr.len(), "{what}: number of points");
        assert_eq!(got.thresholds.len(), thresholds.len(), "{what}: number of points");
        for i in 0..fpr.len() {
            close(got.fpr[i], fpr[i], &format!("{what} fpr[{i}]"));
            close(got.tpr[i], tpr[i], &format!("{what} tpr[{i}]"));
            if thresholds[i].is_null() {
                assert_eq!(got.thresholds[i], f64::INFINITY, "{what} threshold[{i}] (sklearn: inf)");
            } else {
                close_v(got.thresholds[i], &thresholds[i], &format!("{what} threshold[{i}]"));
            }
        }
    }

    fn check_multiclass(text: &str, name: &str) {
        let fx = load(text);
        let (inp, exp) = (&fx["inputs"], &fx["expected"]);
        let y_true = ints(&inp["y_true"]);
        let y_pred = ints(&inp["y_pred"]);
        let probs = rows(&inp["probs"]);
        // The fixture's predictions are numpy argmaxes; ours must agree (ties → first index).
        let argmax: Vec<usize> = probs.iter().map(|r| top_class(r).0).collect();
        assert_eq!(argmax, y_pred, "{name}: argmax");

        let m = multiclass_metrics(&y_true, &y_pred, &probs).unwrap();
        assert_eq!(m.n_samples, y_true.len());
        close_v(m.accuracy, &exp["accuracy"], &format!("{name} accuracy"));
        let confusion: Vec<Vec<usize>> = exp["confusion"].as_array().unwrap().iter().map(ints).collect();
        assert_eq!(m.confusion, confusion, "{name} confusion");
        assert_eq!(m.per_class.len(), m.n_classes);
        for (c, pc) in m.per_class.iter().enumerate() {
            let what = format!("{name} class {c}");
            assert_eq!(pc.class, c);
            assert_eq!(pc.support, int(&exp["support"][c]), "{what} support");
            close_v(pc.precision, &exp["precision"][c], &format!("{what} precision"));
            close_v(pc.recall, &exp["recall"][c], &format!("{what} recall"));
            close_v(pc.sensitivity, &exp["recall"][c], &format!("{what} sensitivity"));
            close_v(pc.f1, &exp["f1"][c], &format!("{what} f1"));
            close_v(pc.specificity, &exp["specificity"][c], &format!("{what} specificity"));
            close_opt(pc.roc_auc, &exp["roc_auc"][c], &format!("{what} roc_auc"));
            close_opt(pc.average_precision, &exp["average_precision"][c], &format!("{what} AP"));
        }
        close_avg(&m.macro_avg, &exp["macro"], &format!("{name} macro"));
        close_avg(&m.weighted_avg, &exp["weighted"], &format!("{name} weighted"));
        close_opt(m.macro_roc_auc, &exp["macro_roc_auc"], &format!("{name} macro roc_auc"));
        close_opt(m.macro_average_precision, &exp["macro_average_precision"], &format!("{name} macro AP"));

        for (want, bins) in exp["calibration"].as_array().unwrap().iter().zip(ints(&fx["n_bins"])) {
            let cal = calibration(&y_true, &probs, bins).unwrap();
            check_calibration(&cal, want, &format!("{name} calibration B={bins}"));
        }
        for (want, min) in exp["abstention"].as_array().unwrap().iter().zip(nums(&fx["min_confidences"])) {
            let ab = abstention(&y_true, &probs, min).unwrap();
            check_abstention(&ab, want, &format!("{name} abstention {min}"));
            let conf: Vec<f64> = probs.iter().map(|r| top_class(r).1).collect();
            close_v(uncertain_share(&conf, min), &want["uncertain_share"], "uncertain_share");
        }
    }

    // ---- fixtures (scikit-learn) ----------------------------------------------------------

    #[test]
    fn sklearn_multiclass_4_with_unpredicted_and_empty_class() {
        check_multiclass(include_str!("../../tests/fixtures/metrics/multiclass_4.json"), "multiclass_4");
    }

    #[test]
    fn sklearn_multiclass_3_with_tied_probabilities() {
        check_multiclass(include_str!("../../tests/fixtures/metrics/multiclass_3_ties.json"), "multiclass_3_ties");
    }

    #[test]
    fn sklearn_binary_with_ties() {
        let fx = load(include_str!("../../tests/fixtures/metrics/binary_ties.json"));
        let (inp, exp) = (&fx["inputs"], &fx["expected"]);
        let y = bools(&inp["y_true"]);
        let p = nums(&inp["p"]);

        for want in exp["at_threshold"].as_array().unwrap() {
            let t = num(&want["threshold"]);
            check_binary(&binary_metrics(&y, &p, t).unwrap(), want, &format!("binary @{t}"));
        }
        check_roc(&roc_curve(&y, &p, true).unwrap(), &exp["roc_curve"], "roc_curve");
        check_roc(&roc_curve(&y, &p, false).unwrap(), &exp["roc_curve_all"], "roc_curve (all points)");
        assert!(
            exp["roc_curve"]["fpr"].as_array().unwrap().len() < exp["roc_curve_all"]["fpr"].as_array().unwrap().len(),
            "the fixture should exercise drop_intermediate"
        );

        for case in exp["sensitivity_thresholds"].as_array().unwrap() {
            let target = num(&case["target"]);
            let got = threshold_for_sensitivity(&y, &p, target).unwrap();
            let want = &case["choice"];
            let what = format!("threshold for sensitivity {target}");
            match got {
                None => assert!(want.is_null(), "{what}: got None, expected {want}"),
                Some(c) => {
                    close_v(c.threshold, &want["threshold"], &what);
                    close_v(c.sensitivity, &want["sensitivity"], &what);
                    close_v(c.specificity, &want["specificity"], &what);
                    close_v(c.precision, &want["precision"], &what);
                    assert_eq!(c.flagged, int(&want["flagged"]), "{what}");
                    close(c.flagged_share, c.flagged as f64 / y.len() as f64, &what);
                    close(c.target_sensitivity, target, &what);
                }
            }
        }
        for (want, bins) in exp["calibration"].as_array().unwrap().iter().zip(ints(&fx["n_bins"])) {
            let cal = binary_calibration(&y, &p, bins).unwrap();
            check_calibration(&cal, want, &format!("binary calibration B={bins}"));
        }
        for (want, min) in exp["abstention"].as_array().unwrap().iter().zip(nums(&fx["min_confidences"])) {
            let ab = binary_abstention(&y, &p, min).unwrap();
            check_abstention(&ab, want, &format!("binary abstention {min}"));
        }
    }

    #[test]
    fn sklearn_multilabel() {
        let fx = load(include_str!("../../tests/fixtures/metrics/multilabel.json"));
        let (inp, exp) = (&fx["inputs"], &fx["expected"]);
        let y = bool_rows(&inp["y_true"]);
        let probs = rows(&inp["probs"]);
        let t = num(&inp["threshold"]);
        let m = multilabel_metrics(&y, &probs, t).unwrap();
        assert_eq!((m.n_samples, m.n_labels), (y.len(), y[0].len()));
        let per = exp["per_label"].as_array().unwrap();
        assert_eq!(m.per_label.len(), per.len());
        for (j, (got, want)) in m.per_label.iter().zip(per).enumerate() {
            check_binary(got, want, &format!("label {j}"));
        }
        close_avg(&m.micro_avg, &exp["micro"], "micro");
        close_avg(&m.macro_avg, &exp["macro"], "macro");
        close_avg(&m.weighted_avg, &exp["weighted"], "weighted");
        close_v(m.subset_accuracy, &exp["subset_accuracy"], "subset accuracy");
        close_v(m.hamming_loss, &exp["hamming_loss"], "hamming loss");
        close_opt(m.macro_roc_auc, &exp["macro_roc_auc"], "macro roc_auc");
        close_opt(m.macro_average_precision, &exp["macro_average_precision"], "macro AP");
    }

    // ---- hand-checkable -------------------------------------------------------------------

    const Y: [bool; 6] = [false, false, false, true, true, true];

    #[test]
    fn perfect_ranking_gives_auc_1() {
        let s = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9];
        assert_eq!(roc_auc(&Y, &s), Some(1.0));
        assert_eq!(average_precision(&Y, &s), Some(1.0));
        let c = roc_curve(&Y, &s, true).unwrap();
        assert_eq!(c.fpr, vec![0.0, 0.0, 0.0, 1.0]);
        assert_eq!(c.tpr, vec![0.0, 1.0 / 3.0, 1.0, 1.0]);
        assert_eq!(c.thresholds, vec![f64::INFINITY, 0.9, 0.7, 0.1]);
    }

    #[test]
    fn reversed_ranking_gives_auc_0() {
        let s = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1];
        assert_eq!(roc_auc(&Y, &s), Some(0.0));
        // Positives ranked last: precision 1/4, 2/5, 3/6 as each is reached.
        let ap = average_precision(&Y, &s).unwrap();
        assert!((ap - (0.25 + 0.4 + 0.5) / 3.0).abs() < 1e-15, "{ap}");
    }

    #[test]
    fn constant_scores_give_auc_half_and_ap_prevalence() {
        let s = [0.4; 6];
        assert_eq!(roc_auc(&Y, &s), Some(0.5));
        assert_eq!(average_precision(&Y, &s), Some(0.5));
        let c = roc_curve(&Y, &s, true).unwrap();
        assert_eq!((c.fpr, c.tpr), (vec![0.0, 1.0], vec![0.0, 1.0]));
    }

    #[test]
    fn ties_count_half() {
        // One positive tied with one negative, one positive above everything: pairs (p1>n, p2=n) → 0.75.
        assert_eq!(roc_auc(&[true, true, false], &[0.9, 0.5, 0.5]), Some(0.75));
    }

    #[test]
    fn one_class_only_is_undefined() {
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.9]), None);
        assert_eq!(roc_auc(&[false, false], &[0.1, 0.9]), None);
        assert_eq!(roc_auc(&[], &[]), None);
        assert!(roc_curve(&[false, false], &[0.1, 0.9], true).is_none());
        assert_eq!(average_precision(&[false, false], &[0.1, 0.9]), None);
        assert_eq!(average_precision(&[true, true], &[0.1, 0.9]), Some(1.0));
        let m = binary_metrics(&[false, false], &[0.1, 0.9], 0.5).unwrap();
        assert_eq!((m.roc_auc, m.average_precision), (None, None));
        assert_eq!((m.precision, m.recall, m.f1, m.specificity), (0.0, 0.0, 0.0, 0.5));
        assert_eq!(threshold_for_sensitivity(&[false, false], &[0.1, 0.9], 0.9).unwrap(), None);
    }

    #[test]
    fn zero_division_is_zero() {
        // Class 2 never true and never predicted; class 1 never predicted.
        let probs = [[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.3, 0.1, 0.6]];
        let m = multiclass_metrics(&[0, 1, 0], &[0, 0, 2], &probs).unwrap();
        assert_eq!(m.confusion, vec![vec![1, 0, 1], vec![1, 0, 0], vec![0, 0, 0]]);
        let c1 = &m.per_class[1];
        assert_eq!((c1.precision, c1.recall, c1.f1, c1.support, c1.predicted), (0.0, 0.0, 0.0, 1, 0));
        let c2 = &m.per_class[2];
        assert_eq!((c2.precision, c2.recall, c2.f1, c2.support), (0.0, 0.0, 0.0, 0));
        assert_eq!(c2.specificity, 2.0 / 3.0);
        assert_eq!((c2.roc_auc, c2.average_precision), (None, None));
        // Macro runs over all three classes, the undefined AUC is left out of its mean.
        assert_eq!(m.macro_avg.recall, 0.5 / 3.0);
        // Class 0: positives scored 0.9 and 0.3 around a negative at 0.8 → 1/2; class 1: 1.
        assert_eq!(m.per_class[0].roc_auc, Some(0.5));
        assert_eq!(m.per_class[1].roc_auc, Some(1.0));
        assert_eq!(m.macro_roc_auc, Some(0.75));
    }

    #[test]
    fn calibration_bins_are_right_closed() {
        assert_eq!(calibration_bin(0.0, 10), 0);
        assert_eq!(calibration_bin(0.1, 10), 0);
        assert_eq!(calibration_bin(0.1000001, 10), 1);
        assert_eq!(calibration_bin(0.55, 10), 5);
        assert_eq!(calibration_bin(0.9, 10), 8);
        assert_eq!(calibration_bin(1.0, 10), 9);
        assert_eq!(calibration_bin(0.5, 1), 0);
        let cal =
            calibration_from_confidence(&[0.25, 0.75, 0.75, 0.75, 0.75], &[false, true, true, true, false], 4).unwrap();
        // 0.75 = 3/4 sits on an edge and goes to the bin it closes, (0.5, 0.75].
        assert_eq!(cal.bins.iter().map(|b| b.count).collect::<Vec<_>>(), vec![1, 0, 4, 0]);
        assert_eq!(cal.bins[0].accuracy, Some(0.0));
        assert_eq!(cal.bins[2].accuracy, Some(0.75));
        assert_eq!((cal.bins[1].mean_confidence, cal.bins[3].accuracy), (None, None));
        assert_eq!((cal.bins[2].lower, cal.bins[2].upper), (0.5, 0.75));
        // |0 − 0.25|·1/5 + |0.75 − 0.75|·4/5
        assert!((cal.ece - 0.05).abs() < 1e-15);
        assert!((cal.mce - 0.25).abs() < 1e-15);
    }

    #[test]
    fn perfectly_calibrated_has_zero_ece() {
        let cal = calibration_from_confidence(&[1.0, 1.0, 0.5, 0.5], &[true, true, true, false], 10).unwrap();
        assert_eq!((cal.ece, cal.mce), (0.0, 0.0));
    }

    #[test]
    fn threshold_choice_by_hand() {
        let y = [true, true, true, true, false, false];
        let p = [0.9, 0.8, 0.6, 0.2, 0.7, 0.1];
        let c = threshold_for_sensitivity(&y, &p, 0.75).unwrap().unwrap();
        assert_eq!((c.threshold, c.sensitivity, c.flagged), (0.6, 0.75, 4));
        assert_eq!((c.specificity, c.precision), (0.5, 0.75));
        let c = threshold_for_sensitivity(&y, &p, 0.5).unwrap().unwrap();
        assert_eq!(c.threshold, 0.8);
        let c = threshold_for_sensitivity(&y, &p, 1.0).unwrap().unwrap();
        assert_eq!((c.threshold, c.specificity), (0.2, 0.5));
        assert_eq!(threshold_for_sensitivity(&y, &p, 1.01).unwrap(), None);
    }

    #[test]
    fn abstention_by_hand() {
        let a = binary_abstention(&[true, false, true, false], &[0.95, 0.45, 0.3, 0.1], 0.6).unwrap();
        // Confidences 0.95, 0.55, 0.7, 0.9 → one uncertain; of the rest 0.95 ✓, 0.3 ✗, 0.1 ✓.
        assert_eq!((a.uncertain, a.uncertain_share), (1, 0.25));
        assert_eq!(a.accuracy_on_confident, Some(2.0 / 3.0));
        let a = binary_abstention(&[true], &[0.5], 0.9).unwrap();
        assert_eq!(a.accuracy_on_confident, None);
        assert_eq!(uncertain_share(&[], 0.5), 0.0);
        assert_eq!(uncertain_share(&[0.5, 0.49], 0.5), 0.5);
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let probs = [[0.5, 0.5], [0.2, 0.8]];
        assert_eq!(multiclass_metrics(&[], &[], &[] as &[[f64; 2]]), Err(MetricsError::Empty));
        assert!(matches!(
            multiclass_metrics(&[0, 1], &[0], &probs),
            Err(MetricsError::LengthMismatch { expected: 2, got: 1, .. })
        ));
        assert_eq!(
            multiclass_metrics(&[0, 2], &[0, 1], &probs),
            Err(MetricsError::LabelOutOfRange { row: 1, label: 2, n_classes: 2 })
        );
        let ragged = vec![vec![0.5, 0.5], vec![1.0]];
        assert_eq!(
            multiclass_metrics(&[0, 1], &[0, 1], &ragged),
            Err(MetricsError::RowWidth { row: 1, expected: 2, got: 1 })
        );
        assert_eq!(binary_metrics(&[true], &[f64::NAN], 0.5), Err(MetricsError::NonFinite { row: 0 }));
        assert!(matches!(binary_metrics(&[true], &[0.5], f64::NAN), Err(MetricsError::InvalidParameter { .. })));
        assert!(matches!(binary_calibration(&[true], &[0.5], 0), Err(MetricsError::InvalidParameter { .. })));
        assert!(matches!(
            calibration_from_confidence(&[1.5], &[true], 10),
            Err(MetricsError::OutOfUnitRange { row: 0, .. })
        ));
        assert_eq!(
            multilabel_metrics(&[vec![true], vec![false, true]], &[[0.5], [0.5]], 0.5),
            Err(MetricsError::RowWidth { row: 1, expected: 1, got: 2 })
        );
        assert!(MetricsError::Empty.to_string().contains("no samples"));
    }

    #[test]
    fn results_serialize_to_json() {
        let m = binary_metrics(&Y, &[0.1, 0.2, 0.6, 0.7, 0.8, 0.4], 0.5).unwrap();
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["true_positives"], 2);
        assert_eq!(v["false_positives"], 1);
        assert!(v["roc_auc"].is_number());
        let c = serde_json::to_value(roc_curve(&Y, &[0.1, 0.2, 0.6, 0.7, 0.8, 0.4], true).unwrap()).unwrap();
        assert!(c["thresholds"][0].is_null(), "+inf threshold serializes as null");
        let cal = serde_json::to_value(binary_calibration(&Y, &[0.1, 0.2, 0.6, 0.7, 0.8, 0.4], 10).unwrap()).unwrap();
        assert!(cal["bins"][0]["accuracy"].is_null());
        let mc = multiclass_metrics(&[0, 1], &[0, 1], &[[0.9, 0.1], [0.2, 0.8]]).unwrap();
        let v = serde_json::to_value(&mc).unwrap();
        assert_eq!(v["macro_avg"]["f1"], 1.0);
        assert_eq!(v["per_class"][1]["specificity"], 1.0);
    }
}
