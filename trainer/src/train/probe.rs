//! The frozen-encoder probe: logistic regression on pooled [CLS] features.
//!
//! This is the cheap baseline that fine-tuning is compared against. The caller runs the frozen
//! encoder and hands over one pooled [CLS] vector per note; this module fits an L2-regularised
//! logistic regression on them with `linfa-logistic` (L-BFGS) and returns it as a plain linear
//! layer, `logits = W·x + b`, ready to become the classifier head of an exported model.
//!
//! * [`fit_multiclass`]: one softmax over `n_classes` logits (linfa's `MultiLogisticRegression`,
//!   the multinomial model that scikit-learn's `LogisticRegression` fits with lbfgs).
//! * [`fit_binary`]: one logit, `sigmoid(logit) = P(true)`.
//! * [`fit_multilabel`]: one independent binary fit per label (one-vs-rest), one logit each.
//!
//! # Objective and the mapping to scikit-learn and linfa
//!
//! All three minimise, over `W` and `b`,
//!
//! ```text
//!     Σ_rows −log P(y_row | x_row)  +  (l2 / 2) · ‖W‖²        (the bias is not penalised)
//! ```
//!
//! scikit-learn minimises `C · Σ loss + ½‖W‖²`, the same objective scaled by `C`, so
//! `l2 = 1 / C`; linfa minimises `Σ loss + (alpha / 2)‖W‖²` with an unpenalised intercept, so
//! `alpha = l2`. Both libraries penalise all `K` rows of the (over-parameterised) multinomial
//! model, so the multiclass optimum is the same too. [`ProbeOptions::gradient_tolerance`] is
//! scikit-learn's `tol`: sklearn stops when the largest component of the gradient of its
//! *averaged* objective (the one above divided by the number of rows `n`) is below `tol`; linfa
//! (argmin's L-BFGS) stops when the Euclidean norm of the gradient of the *summed* objective is
//! below its tolerance, so we pass `tol · n`. The Euclidean norm bounds the largest component,
//! so the probe stops no earlier than scikit-learn would.
//!
//! # Conditioning, and what is exported
//!
//! Features are always centred before the fit and the centring is folded back into the bias:
//! with an unpenalised bias this does not change the optimum, only the conditioning (pooled BERT
//! vectors share large offsets). With [`ProbeOptions::standardize`] they are also divided by their
//! standard deviation (population, like scikit-learn's `StandardScaler`; a constant feature keeps
//! scale 1), which *does* change the objective — it is
//! `make_pipeline(StandardScaler(), LogisticRegression(C))` — and the scaling is folded back into
//! `W`. Either way [`Probe::logits`] takes raw features, as the exported head sees them.
//!
//! linfa does not report whether L-BFGS converged: when `max_iterations` runs out the fit returns
//! the best parameters found so far, like scikit-learn after its `ConvergenceWarning`.
//!
//! # Degenerate outputs
//!
//! * Multiclass, a class absent from `y`: its row of `W` is zero and its bias is
//!   [`ABSENT_CLASS_BIAS`] (−100). With zero initial parameters, L-BFGS keeps the seen classes'
//!   weight rows summing to zero (every gradient's class-sum is `alpha ·` the weights' class-sum),
//!   and their biases are centred, so the seen logits sum to 0 for every `x` and the largest is
//!   ≥ 0: the absent class's probability is below e⁻¹⁰⁰ (0 in f32) everywhere, and the other
//!   classes keep the probabilities of the fit without it. A softmax output cannot be given a
//!   calibrated constant probability by a bias alone, so we do not try.
//! * Multilabel, a label that is always or never present: its weights are zero and its logit is
//!   the constant `ln((k + ½) / (n − k + ½))` for `k` positives out of `n` rows, the add-half
//!   (Jeffreys) estimate of its frequency: within `1 / (2n + 2)` of `k / n`, finite, and on the
//!   right side of 0.5. (The unregularised-bias optimum would be ±∞.)
//! * Binary, one class only: an error ([`ProbeError::SingleClass`]); so is a multiclass `y` with
//!   one class.

use linfa::prelude::Fit;
use linfa::DatasetBase;
use linfa_logistic::{LogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2, Axis};

/// The bias of a multiclass output whose class never occurs in the training labels (see the
/// module documentation).
pub const ABSENT_CLASS_BIAS: f32 = -100.0;

/// Hyper-parameters of the probe. The defaults are scikit-learn's `LogisticRegression()` except
/// `max_iter` (1000 instead of 100, which often stops short on 768-dimensional features).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeOptions {
    /// L2 regularisation strength, scikit-learn's `1 / C` (and linfa's `alpha`, unchanged): the
    /// penalty is `(l2 / 2)·‖W‖²` next to the *summed* log-loss. Default 1.0 (`C = 1`). 0 turns
    /// the penalty off (separable data then only stops at `max_iterations`).
    pub l2: f64,
    /// L-BFGS iterations at most (scikit-learn's `max_iter`). Default 1000.
    pub max_iterations: u64,
    /// scikit-learn's `tol`, on the gradient of the row-averaged objective; passed to linfa as
    /// `tol · n_rows` (see the module documentation). Default 1e-4.
    pub gradient_tolerance: f64,
    /// Standardise features (zero mean, unit population variance) before the fit, as a
    /// `StandardScaler` in front of the regression would; the scaling is folded into `W` and `b`.
    /// Default false, like a bare `LogisticRegression`.
    pub standardize: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self { l2: 1.0, max_iterations: 1000, gradient_tolerance: 1e-4, standardize: false }
    }
}

impl ProbeOptions {
    /// The defaults with scikit-learn's inverse regularisation strength `C` (`l2 = 1 / C`).
    pub fn with_c(c: f64) -> Self {
        Self { l2: 1.0 / c, ..Self::default() }
    }
}

/// A fitted probe as a linear layer: `logits = weight · x + bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// `[outputs][dim]`, on raw (unstandardised) features.
    pub weight: Vec<Vec<f32>>,
    /// `[outputs]`.
    pub bias: Vec<f32>,
}

impl Probe {
    /// The logits for one feature vector: softmax them for a multiclass probe, sigmoid each for
    /// a binary or multilabel one. Panics if `x` does not have [`Probe::dim`] features.
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        assert_eq!(x.len(), self.dim(), "probe input has {} features, the probe takes {}", x.len(), self.dim());
        self.weight
            .iter()
            .zip(&self.bias)
            .map(|(w, &b)| (w.iter().zip(x).map(|(&w, &x)| w as f64 * x as f64).sum::<f64>() + b as f64) as f32)
            .collect()
    }

    /// Number of logits (classes, 1 for binary, labels).
    pub fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// Number of input features.
    pub fn dim(&self) -> usize {
        self.weight.first().map_or(0, Vec::len)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeError {
    #[error("no training rows")]
    Empty,
    #[error("the feature vectors are empty (dimension 0)")]
    ZeroDimension,
    #[error("row {row} has {found} features, row 0 has {expected}")]
    Ragged { row: usize, expected: usize, found: usize },
    #[error("row {row}, feature {column} is not a finite number")]
    NonFinite { row: usize, column: usize },
    #[error("{rows} feature rows but {labels} label rows")]
    LengthMismatch { rows: usize, labels: usize },
    #[error("row {row}: label {label} is out of range for {n_classes} classes")]
    LabelOutOfRange { row: usize, label: usize, n_classes: usize },
    #[error("row {row} has {found} labels, row 0 has {expected}")]
    RaggedLabels { row: usize, expected: usize, found: usize },
    #[error("{what}: got {got}, need at least {min}")]
    TooFewOutputs { what: &'static str, got: usize, min: usize },
    #[error("every row has class {class}: the fit needs at least two classes in the data")]
    SingleClass { class: usize },
    #[error("invalid probe option: {0}")]
    InvalidOption(String),
    #[error("logistic regression fit failed: {0}")]
    Fit(String),
}

/// Multinomial (softmax) logistic regression over `n_classes` logits; `y[i] < n_classes`.
/// Classes absent from `y` get a zero weight row and [`ABSENT_CLASS_BIAS`].
pub fn fit_multiclass(x: &[Vec<f32>], y: &[usize], n_classes: usize, o: &ProbeOptions) -> Result<Probe, ProbeError> {
    check_options(o)?;
    if n_classes < 2 {
        return Err(ProbeError::TooFewOutputs { what: "classes", got: n_classes, min: 2 });
    }
    let features = Features::new(x, o.standardize)?;
    check_len(x.len(), y.len())?;
    if let Some((row, &label)) = y.iter().enumerate().find(|(_, &l)| l >= n_classes) {
        return Err(ProbeError::LabelOutOfRange { row, label, n_classes });
    }
    let mut present = vec![false; n_classes];
    y.iter().for_each(|&c| present[c] = true);
    let seen: Vec<usize> = (0..n_classes).filter(|&c| present[c]).collect();
    if seen.len() < 2 {
        return Err(ProbeError::SingleClass { class: y[0] });
    }

    let dataset = DatasetBase::new(features.z.view(), Array1::from(y.to_vec()));
    let fitted = MultiLogisticRegression::<f64>::default()
        .alpha(o.l2)
        .max_iterations(o.max_iterations)
        .gradient_tolerance(o.gradient_tolerance * x.len() as f64)
        .fit(&dataset)
        .map_err(|e| ProbeError::Fit(e.to_string()))?;
    // linfa numbers the distinct labels it saw in sorted order: column j of params ([dim, seen])
    // and intercept ([seen]) belong to class `classes()[j]`.
    debug_assert_eq!(fitted.classes(), &seen[..]);
    let params = fitted.params();
    let intercept = fitted.intercept();
    let mean_bias = intercept.sum() / intercept.len() as f64;

    let mut weight = vec![vec![0.0f32; features.dim()]; n_classes];
    let mut bias = vec![ABSENT_CLASS_BIAS; n_classes];
    for (j, &class) in fitted.classes().iter().enumerate() {
        let (w, b) = features.fold(params.column(j).iter().copied(), intercept[j] - mean_bias);
        weight[class] = w;
        bias[class] = b;
    }
    Ok(Probe { weight, bias })
}

/// Binary logistic regression: one logit with `sigmoid(logit) = P(true)`. Needs both classes.
pub fn fit_binary(x: &[Vec<f32>], y: &[bool], o: &ProbeOptions) -> Result<Probe, ProbeError> {
    check_options(o)?;
    let features = Features::new(x, o.standardize)?;
    check_len(x.len(), y.len())?;
    if y.iter().all(|&v| v == y[0]) {
        return Err(ProbeError::SingleClass { class: y[0] as usize });
    }
    let (w, b) = binary_logit(&features, y, o)?;
    Ok(Probe { weight: vec![w], bias: vec![b] })
}

/// One independent binary fit per label (all rows of `y` have the same length, at least 1).
/// A label that is always or never present gets zero weights and the constant logit
/// `ln((k + ½) / (n − k + ½))` (see the module documentation) instead of an error.
pub fn fit_multilabel(x: &[Vec<f32>], y: &[Vec<bool>], o: &ProbeOptions) -> Result<Probe, ProbeError> {
    check_options(o)?;
    let features = Features::new(x, o.standardize)?;
    check_len(x.len(), y.len())?;
    let n_labels = y[0].len();
    if n_labels == 0 {
        return Err(ProbeError::TooFewOutputs { what: "labels", got: 0, min: 1 });
    }
    if let Some((row, r)) = y.iter().enumerate().find(|(_, r)| r.len() != n_labels) {
        return Err(ProbeError::RaggedLabels { row, expected: n_labels, found: r.len() });
    }

    let n = y.len();
    let mut weight = Vec::with_capacity(n_labels);
    let mut bias = Vec::with_capacity(n_labels);
    for label in 0..n_labels {
        let column: Vec<bool> = y.iter().map(|r| r[label]).collect();
        let positives = column.iter().filter(|&&v| v).count();
        let (w, b) = if positives == 0 || positives == n {
            let k = positives as f64;
            (vec![0.0; features.dim()], ((k + 0.5) / (n as f64 - k + 0.5)).ln() as f32)
        } else {
            binary_logit(&features, &column, o).map_err(|e| match e {
                ProbeError::Fit(m) => ProbeError::Fit(format!("label {label}: {m}")),
                other => other,
            })?
        };
        weight.push(w);
        bias.push(b);
    }
    Ok(Probe { weight, bias })
}

/// Fits one logit for `y` (both classes present) and folds it back to raw features.
fn binary_logit(features: &Features, y: &[bool], o: &ProbeOptions) -> Result<(Vec<f32>, f32), ProbeError> {
    let dataset = DatasetBase::new(features.z.view(), Array1::from(y.to_vec()));
    let fitted = LogisticRegression::<f64>::default()
        .alpha(o.l2)
        .max_iterations(o.max_iterations)
        .gradient_tolerance(o.gradient_tolerance * y.len() as f64)
        .fit(&dataset)
        .map_err(|e| ProbeError::Fit(e.to_string()))?;
    // linfa's sigmoid(w·x + b) is the probability of `labels().pos.class`, which is whichever
    // label is more frequent (the first seen on a tie), not necessarily `true`. P(true) from a
    // model of P(false) is sigmoid(−w·x − b): flip both signs.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    Ok(features.fold(fitted.params().iter().map(|&w| sign * w), sign * fitted.intercept()))
}

fn check_options(o: &ProbeOptions) -> Result<(), ProbeError> {
    if !(o.l2.is_finite() && o.l2 >= 0.0) {
        return Err(ProbeError::InvalidOption(format!("l2 must be finite and >= 0, got {}", o.l2)));
    }
    if !(o.gradient_tolerance.is_finite() && o.gradient_tolerance > 0.0) {
        return Err(ProbeError::InvalidOption(format!(
            "gradient_tolerance must be finite and > 0, got {}",
            o.gradient_tolerance
        )));
    }
    if o.max_iterations == 0 {
        return Err(ProbeError::InvalidOption("max_iterations must be at least 1".into()));
    }
    Ok(())
}

fn check_len(rows: usize, labels: usize) -> Result<(), ProbeError> {
    if rows != labels {
        return Err(ProbeError::LengthMismatch { rows, labels });
    }
    Ok(())
}

/// The validated features in f64, centred (and scaled when standardising): `z = (x − mean) / scale`.
struct Features {
    z: Array2<f64>,
    mean: Array1<f64>,
    scale: Array1<f64>,
}

impl Features {
    fn new(x: &[Vec<f32>], standardize: bool) -> Result<Self, ProbeError> {
        let first = x.first().ok_or(ProbeError::Empty)?;
        let dim = first.len();
        if dim == 0 {
            return Err(ProbeError::ZeroDimension);
        }
        let mut z = Array2::<f64>::zeros((x.len(), dim));
        for (row, (r, mut out)) in x.iter().zip(z.rows_mut()).enumerate() {
            if r.len() != dim {
                return Err(ProbeError::Ragged { row, expected: dim, found: r.len() });
            }
            if let Some(column) = r.iter().position(|v| !v.is_finite()) {
                return Err(ProbeError::NonFinite { row, column });
            }
            out.iter_mut().zip(r).for_each(|(o, &v)| *o = v as f64);
        }
        let mean = z.mean_axis(Axis(0)).expect("at least one row");
        z -= &mean;
        let scale = if standardize {
            // Population standard deviation, like StandardScaler; constant features keep 1.
            let scale =
                z.map_axis(Axis(0), |c| (c.dot(&c) / c.len() as f64).sqrt()).mapv(|s| if s > 0.0 { s } else { 1.0 });
            z /= &scale;
            scale
        } else {
            Array1::ones(dim)
        };
        Ok(Self { z, mean, scale })
    }

    fn dim(&self) -> usize {
        self.mean.len()
    }

    /// `w·z + b` with `z = (x − mean) / scale` is `(w / scale)·x + (b − Σ w·mean / scale)`.
    fn fold(&self, w: impl Iterator<Item = f64>, b: f64) -> (Vec<f32>, f32) {
        let w: Vec<f64> = w.zip(&self.scale).map(|(w, s)| w / s).collect();
        let b = b - w.iter().zip(&self.mean).map(|(w, m)| w * m).sum::<f64>();
        (w.into_iter().map(|w| w as f32).collect(), b as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn sigmoid(z: f32) -> f64 {
        1.0 / (1.0 + (-(z as f64)).exp())
    }

    fn softmax(z: &[f32]) -> Vec<f64> {
        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = z.iter().map(|&v| (v as f64 - max).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect()
    }

    fn argmax(p: &[f64]) -> usize {
        (0..p.len()).fold(0, |best, i| if p[i] > p[best] { i } else { best })
    }

    fn load(text: &str) -> Value {
        serde_json::from_str(text).expect("fixture is JSON")
    }

    fn matrix(v: &Value) -> Vec<Vec<f64>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
            .collect()
    }

    fn vector(v: &Value) -> Vec<f64> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    }

    fn features(v: &Value) -> Vec<Vec<f32>> {
        matrix(v).into_iter().map(|r| r.into_iter().map(|x| x as f32).collect()).collect()
    }

    fn bools(v: &Value) -> Vec<bool> {
        v.as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect()
    }

    fn max_abs(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).flat_map(|(r, s)| r.iter().zip(s).map(|(x, y)| (x - y).abs())).fold(0.0, f64::max)
    }

    fn agreement(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
        a.iter().zip(b).filter(|(r, s)| argmax(r) == argmax(s)).count() as f64 / a.len() as f64
    }

    // Tolerances against scikit-learn. Both libraries minimise the same objective (l2 = 1/C) with
    // L-BFGS from zero, so the answers differ only by where each optimiser stops. At its default
    // tol=1e-4 sklearn stops within 1.2e-3 (multiclass) and 1e-4 (binary) of the tol=1e-10
    // optimum in probability (the fixtures' max_abs_default_vs_tight). The probe passes tol·n to
    // linfa on the Euclidean norm, so it stops at least as close: measured 6.2e-4 (multiclass)
    // and 2.2e-4 (binary) from the optimum, 1.3e-3 and 2.2e-4 from sklearn's default fit. 0.02
    // against the default fit is ten times the sum of both stopping errors (≈ 1.8e-3) and still
    // far below what a wrong convention produces (a sign flip, a mis-mapped class, C for 1/C or
    // a mean-vs-sum penalty move probabilities by 0.05 to 1). Against the tight optimum only the
    // probe's own stopping error remains: 5e-3 is eight times the measured 6.2e-4.
    const TOL_VS_SKLEARN: f64 = 0.02;
    const TOL_VS_OPTIMUM: f64 = 5e-3;

    fn multiclass_probs(p: &Probe, x: &[Vec<f32>]) -> Vec<Vec<f64>> {
        x.iter().map(|r| softmax(&p.logits(r))).collect()
    }

    fn binary_probs(p: &Probe, x: &[Vec<f32>], output: usize) -> Vec<Vec<f64>> {
        x.iter().map(|r| vec![sigmoid(p.logits(r)[output])]).collect()
    }

    fn column(v: &Value) -> Vec<Vec<f64>> {
        vector(v).into_iter().map(|p| vec![p]).collect()
    }

    /// Binary probabilities as [P(false), P(true)] rows, for the argmax agreement.
    fn two_columns(p: &[Vec<f64>]) -> Vec<Vec<f64>> {
        p.iter().map(|r| vec![1.0 - r[0], r[0]]).collect()
    }

    #[test]
    fn multiclass_matches_sklearn() {
        let fx = load(include_str!("../../tests/fixtures/probe/multiclass.json"));
        let x = features(&fx["x"]);
        let y: Vec<usize> = vector(&fx["y"]).into_iter().map(|c| c as usize).collect();
        let k = fx["n_classes"].as_u64().unwrap() as usize;
        let probe = fit_multiclass(&x, &y, k, &ProbeOptions::default()).unwrap();
        assert_eq!((probe.outputs(), probe.dim()), (3, 8));

        let ours = multiclass_probs(&probe, &x);
        let d_default = max_abs(&ours, &matrix(&fx["proba"]));
        let d_tight = max_abs(&ours, &matrix(&fx["proba_tight"]));
        eprintln!("multiclass: max |p - sklearn| = {d_default:.2e} (default tol), {d_tight:.2e} (tol=1e-10)");
        assert!(d_default < TOL_VS_SKLEARN, "max abs diff vs sklearn {d_default}");
        assert!(d_tight < TOL_VS_OPTIMUM, "max abs diff vs sklearn's optimum {d_tight}");
        let agree = agreement(&ours, &matrix(&fx["proba"]));
        assert!(agree >= 0.98, "argmax agrees on {agree}");
        let accuracy = ours.iter().zip(&y).filter(|(p, &c)| argmax(p) == c).count() as f64 / y.len() as f64;
        assert!((accuracy - fx["accuracy"].as_f64().unwrap()).abs() <= 1.0 / 60.0, "accuracy {accuracy}");

        // Weights: sklearn's softmax coefficients (centred intercepts) are the same parameters.
        let coef = matrix(&fx["coef"]);
        let w: Vec<Vec<f64>> = probe.weight.iter().map(|r| r.iter().map(|&v| v as f64).collect()).collect();
        let dw = max_abs(&w, &coef);
        eprintln!("multiclass: max |W - sklearn coef| = {dw:.2e}");
        assert!(dw < 0.05, "weights differ from sklearn's coef_ by {dw}");

        // l2 = 1/C, told apart from l2 = C by a fit with C = 0.1.
        let c = fx["c_small"].as_f64().unwrap();
        let strong = fit_multiclass(&x, &y, k, &ProbeOptions::with_c(c)).unwrap();
        let d = max_abs(&multiclass_probs(&strong, &x), &matrix(&fx["proba_c_small"]));
        eprintln!("multiclass C={c}: max |p - sklearn| = {d:.2e}");
        assert!(d < TOL_VS_OPTIMUM, "C = {c}: max abs diff vs sklearn {d}");
    }

    #[test]
    fn multiclass_standardized_matches_sklearn_pipeline() {
        let fx = load(include_str!("../../tests/fixtures/probe/multiclass.json"));
        let x = features(&fx["x"]);
        let y: Vec<usize> = vector(&fx["y"]).into_iter().map(|c| c as usize).collect();
        let o = ProbeOptions { standardize: true, ..ProbeOptions::default() };
        let probe = fit_multiclass(&x, &y, 3, &o).unwrap();
        let ours = multiclass_probs(&probe, &x);
        let d = max_abs(&ours, &matrix(&fx["proba_standardized"]));
        eprintln!("multiclass standardized: max |p - sklearn pipeline| = {d:.2e}");
        assert!(d < TOL_VS_OPTIMUM, "max abs diff vs StandardScaler+LogisticRegression {d}");
        // And it is a different model from the unstandardised one (the test can tell them apart).
        assert!(max_abs(&ours, &matrix(&fx["proba_tight"])) > 10.0 * TOL_VS_OPTIMUM);
    }

    #[test]
    fn binary_matches_sklearn() {
        let fx = load(include_str!("../../tests/fixtures/probe/binary.json"));
        let x = features(&fx["x"]);
        let y = bools(&fx["y"]);
        // The positive class is the minority here, so linfa's +1 label is `false`.
        assert!(y.iter().filter(|&&v| v).count() * 2 < y.len());
        let probe = fit_binary(&x, &y, &ProbeOptions::default()).unwrap();
        assert_eq!((probe.outputs(), probe.dim()), (1, 5));
        let ours = binary_probs(&probe, &x, 0);
        let d_default = max_abs(&ours, &column(&fx["proba"]));
        let d_tight = max_abs(&ours, &column(&fx["proba_tight"]));
        eprintln!("binary: max |p - sklearn| = {d_default:.2e} (default tol), {d_tight:.2e} (tol=1e-10)");
        assert!(d_default < TOL_VS_SKLEARN, "max abs diff vs sklearn {d_default}");
        assert!(d_tight < TOL_VS_OPTIMUM, "max abs diff vs sklearn's optimum {d_tight}");
        let agree = agreement(&two_columns(&ours), &two_columns(&column(&fx["proba"])));
        assert!(agree >= 0.98, "decisions agree on {agree}");
        let dw = max_abs(&[probe.weight[0].iter().map(|&v| v as f64).collect()], &matrix(&fx["coef"]));
        let db = (probe.bias[0] as f64 - vector(&fx["intercept"])[0]).abs();
        eprintln!("binary: max |w - coef| = {dw:.2e}, |b - intercept| = {db:.2e}");
        assert!(dw < 0.05 && db < 0.05);

        let o = ProbeOptions { standardize: true, ..ProbeOptions::default() };
        let std = binary_probs(&fit_binary(&x, &y, &o).unwrap(), &x, 0);
        let d = max_abs(&std, &column(&fx["proba_standardized"]));
        eprintln!("binary standardized: max |p - sklearn pipeline| = {d:.2e}");
        assert!(d < TOL_VS_OPTIMUM);

        let c = fx["c_small"].as_f64().unwrap();
        let strong = binary_probs(&fit_binary(&x, &y, &ProbeOptions::with_c(c)).unwrap(), &x, 0);
        let d = max_abs(&strong, &column(&fx["proba_c_small"]));
        eprintln!("binary C={c}: max |p - sklearn| = {d:.2e}");
        assert!(d < TOL_VS_OPTIMUM, "C = {c}: max abs diff vs sklearn {d}");
    }

    #[test]
    fn multilabel_matches_sklearn_per_label() {
        let fx = load(include_str!("../../tests/fixtures/probe/multilabel.json"));
        let x = features(&fx["x"]);
        let y: Vec<Vec<bool>> = fx["y"].as_array().unwrap().iter().map(bools).collect();
        let probe = fit_multilabel(&x, &y, &ProbeOptions::default()).unwrap();
        assert_eq!(probe.outputs(), 2);
        for (label, block) in fx["labels"].as_array().unwrap().iter().enumerate() {
            let ours = binary_probs(&probe, &x, label);
            let d = max_abs(&ours, &column(&block["proba"]));
            let dt = max_abs(&ours, &column(&block["proba_tight"]));
            eprintln!("multilabel label {label}: max |p - sklearn| = {d:.2e} (default tol), {dt:.2e} (tol=1e-10)");
            assert!(d < TOL_VS_SKLEARN && dt < TOL_VS_OPTIMUM, "label {label}: {d} / {dt}");
        }
    }

    /// Positives have x[0] > 0 (x[1] is noise), and they are the majority, then the minority:
    /// both ways linfa's internal labelling must come out as P(true).
    #[test]
    fn binary_logit_is_positive_class() {
        for positives_first in [true, false] {
            let mut x = Vec::new();
            let mut y = Vec::new();
            for i in 0..60 {
                let a = 0.2 + (i % 10) as f32 * 0.3;
                let noise = ((i * 7) % 11) as f32 / 5.0 - 1.0;
                // 40 positives and 20 negatives, or the other way round.
                let positive = (i < 40) == positives_first;
                x.push(vec![if positive { a } else { -a }, noise]);
                y.push(positive);
            }
            let probe = fit_binary(&x, &y, &ProbeOptions::default()).unwrap();
            let p_pos = sigmoid(probe.logits(&[3.0, 0.0])[0]);
            let p_neg = sigmoid(probe.logits(&[-3.0, 0.0])[0]);
            assert!(p_pos > 0.9 && p_neg < 0.1, "P(true | x0=+3) = {p_pos}, P(true | x0=-3) = {p_neg}");
            assert!(probe.weight[0][0] > 0.0);
        }
    }

    #[test]
    fn multilabel_constant_label_gets_smoothed_frequency() {
        let x: Vec<Vec<f32>> = (0..40).map(|i| vec![i as f32 / 10.0 - 2.0, ((i * 3) % 7) as f32]).collect();
        for constant in [false, true] {
            let y: Vec<Vec<bool>> = x.iter().map(|r| vec![r[0] > 0.0, constant]).collect();
            let probe = fit_multilabel(&x, &y, &ProbeOptions::default()).unwrap();
            assert_eq!(probe.outputs(), 2);
            // The learnable label is learnt.
            assert!(sigmoid(probe.logits(&[1.5, 3.0])[0]) > 0.9);
            assert!(sigmoid(probe.logits(&[-1.5, 3.0])[0]) < 0.1);
            // The constant one: zero weights, P = (k + 1/2) / (n + 1), within 1/(2n+2) of k/n.
            assert!(probe.weight[1].iter().all(|&w| w == 0.0));
            let n = x.len() as f64;
            let k = if constant { n } else { 0.0 };
            let expected = (k + 0.5) / (n + 1.0);
            for r in &x {
                let p = sigmoid(probe.logits(r)[1]);
                assert!((p - expected).abs() < 1e-6, "P = {p}, expected {expected}");
                assert!((p - k / n).abs() <= 1.0 / (2.0 * n + 2.0) + 1e-9);
            }
        }
    }

    #[test]
    fn multiclass_absent_class_gets_a_dead_row() {
        let fx = load(include_str!("../../tests/fixtures/probe/multiclass.json"));
        let x = features(&fx["x"]);
        // Classes 0, 1, 2 become 0, 1, 3: class 2 of 4 never occurs.
        let y: Vec<usize> = vector(&fx["y"]).into_iter().map(|c| if c == 2.0 { 3 } else { c as usize }).collect();
        let probe = fit_multiclass(&x, &y, 4, &ProbeOptions::default()).unwrap();
        assert_eq!(probe.outputs(), 4);
        assert!(probe.weight[2].iter().all(|&w| w == 0.0));
        assert_eq!(probe.bias[2], ABSENT_CLASS_BIAS);
        let ours = multiclass_probs(&probe, &x);
        assert!(ours.iter().all(|p| p[2] < 1e-30));
        // The other classes are the 3-class fit, in their new slots.
        let three: Vec<Vec<f64>> = ours.iter().map(|p| vec![p[0], p[1], p[3]]).collect();
        let d = max_abs(&three, &matrix(&fx["proba_tight"]));
        assert!(d < TOL_VS_OPTIMUM, "{d}");
    }

    #[test]
    fn logits_are_w_x_plus_b() {
        let probe = Probe { weight: vec![vec![1.0, -2.0], vec![0.5, 0.0]], bias: vec![0.25, -1.0] };
        assert_eq!(probe.logits(&[2.0, 1.0]), vec![0.25, 0.0]);
        assert_eq!((probe.outputs(), probe.dim()), (2, 2));
    }

    #[test]
    fn bad_input_is_reported() {
        let o = ProbeOptions::default();
        let x = vec![vec![0.0f32, 1.0], vec![1.0, 0.0], vec![2.0, 2.0]];
        let ragged = vec![vec![0.0f32, 1.0], vec![1.0, 0.0], vec![2.0]];
        let nan = vec![vec![0.0f32, 1.0], vec![1.0, f32::NAN], vec![2.0, 2.0]];
        let empty: Vec<Vec<f32>> = Vec::new();

        assert_eq!(fit_multiclass(&empty, &[], 3, &o), Err(ProbeError::Empty));
        assert_eq!(fit_binary(&empty, &[], &o), Err(ProbeError::Empty));
        assert_eq!(fit_multilabel(&empty, &[], &o), Err(ProbeError::Empty));
        assert_eq!(fit_binary(&[vec![], vec![]], &[true, false], &o), Err(ProbeError::ZeroDimension));

        let ragged_err = Err(ProbeError::Ragged { row: 2, expected: 2, found: 1 });
        assert_eq!(fit_multiclass(&ragged, &[0, 1, 2], 3, &o), ragged_err);
        assert_eq!(fit_binary(&ragged, &[true, false, true], &o), ragged_err);
        assert_eq!(fit_multilabel(&ragged, &[vec![true], vec![false], vec![true]], &o), ragged_err);
        assert_eq!(fit_binary(&nan, &[true, false, true], &o), Err(ProbeError::NonFinite { row: 1, column: 1 }));

        assert_eq!(
            fit_multiclass(&x, &[0, 3, 1], 3, &o),
            Err(ProbeError::LabelOutOfRange { row: 1, label: 3, n_classes: 3 })
        );
        assert_eq!(fit_multiclass(&x, &[0, 1], 3, &o), Err(ProbeError::LengthMismatch { rows: 3, labels: 2 }));
        assert_eq!(
            fit_multiclass(&x, &[0, 0, 0], 1, &o),
            Err(ProbeError::TooFewOutputs { what: "classes", got: 1, min: 2 })
        );
        assert_eq!(fit_multiclass(&x, &[1, 1, 1], 3, &o), Err(ProbeError::SingleClass { class: 1 }));
        assert_eq!(fit_binary(&x, &[true, true, true], &o), Err(ProbeError::SingleClass { class: 1 }));
        assert_eq!(
            fit_multilabel(&x, &[vec![true], vec![false, true], vec![true]], &o),
            Err(ProbeError::RaggedLabels { row: 1, expected: 1, found: 2 })
        );
        assert_eq!(
            fit_multilabel(&x, &[vec![], vec![], vec![]], &o),
            Err(ProbeError::TooFewOutputs { what: "labels", got: 0, min: 1 })
        );
        let bad = ProbeOptions { l2: -1.0, ..o };
        assert!(matches!(fit_binary(&x, &[true, false, true], &bad), Err(ProbeError::InvalidOption(_))));
        // Messages carry the row.
        let message = fit_binary(&ragged, &[true, false, true], &o).map(|_| ()).unwrap_err().to_string();
        assert_eq!(message, "row 2 has 1 features, row 0 has 2");
    }
}
