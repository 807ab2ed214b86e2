//! Every training option in one place: the TOML config file (`--config`), overridden by
//! flags, with the seed recipe's defaults. The effective config is written next to the run
//! (`<out>/config.toml`) so a run can be repeated and `--resume` can check it continues the
//! same run.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use bedside_runtime::model::{HeadFeatures, Precision};
use serde::{Deserialize, Serialize};

/// What is being trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// One label per note, softmax over labels.
    Classify,
    /// Negative/positive outcome, one sigmoid output; long notes train as windows.
    Binary,
    /// Any number of labels per note, a sigmoid per label.
    Multilabel,
    /// Frozen encoder, logistic regression on [CLS] features.
    Probe,
    /// A label per word (named entities, PHI): `train ner`.
    Ner,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Classify => "classify",
            TaskKind::Binary => "binary",
            TaskKind::Multilabel => "multilabel",
            TaskKind::Probe => "probe",
            TaskKind::Ner => "ner",
        }
    }
}

/// How notes longer than `max_seq_len` are fed to training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongNotes {
    /// Keep the first window (transformers' `truncation=True`).
    Truncate,
    /// Every window is a training example carrying the note's labels (ClinicalBERT).
    Windows,
}

/// `none`, `balanced` (scikit-learn's rule) or one weight per label in sorted label order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassWeights {
    Named(String),
    Given(Vec<f32>),
}

impl ClassWeights {
    pub fn parse(s: &str) -> Result<ClassWeights> {
        match s {
            "none" | "balanced" => Ok(ClassWeights::Named(s.to_string())),
            list => Ok(ClassWeights::Given(
                list.split(',')
                    .map(|w| w.trim().parse::<f32>().with_context(|| format!("class weight {w:?} is not a number")))
                    .collect::<Result<_>>()?,
            )),
        }
    }

    pub fn is_balanced(&self) -> bool {
        matches!(self, ClassWeights::Named(n) if n == "balanced")
    }
}

/// scikit-learn's inverse regularisation strength `C` for the probe: a number, or `auto` to
/// pick it on the validation split from [`PROBE_C_GRID`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProbeC {
    Auto,
    Value(f64),
}

/// The `C` values `probe_c = "auto"` tries (scored by the run's metric on validation; the
/// smaller `C`, the stronger regularisation, wins a tie).
pub const PROBE_C_GRID: [f64; 7] = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0];

impl ProbeC {
    pub fn parse(s: &str) -> Result<ProbeC> {
        match s.trim() {
            "auto" => Ok(ProbeC::Auto),
            n => n
                .parse::<f64>()
                .ok()
                .filter(|c| c.is_finite() && *c > 0.0)
                .map(ProbeC::Value)
                .with_context(|| format!("probe_c {n:?}: use a positive number or auto")),
        }
    }
}

impl std::fmt::Display for ProbeC {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeC::Auto => f.write_str("auto"),
            ProbeC::Value(c) => write!(f, "{c}"),
        }
    }
}

// In TOML a number (`probe_c = 0.1`) or the string `"auto"`.
impl Serialize for ProbeC {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ProbeC::Auto => s.serialize_str("auto"),
            ProbeC::Value(c) => s.serialize_f64(*c),
        }
    }
}

impl<'de> Deserialize<'de> for ProbeC {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(c) if c.is_finite() && c > 0.0 => Ok(ProbeC::Value(c)),
            Raw::Number(c) => Err(serde::de::Error::custom(format!("probe_c must be positive, got {c}"))),
            Raw::Text(t) => ProbeC::parse(&t).map_err(|e| serde::de::Error::custom(e.to_string())),
        }
    }
}

/// The run's options. Field names are the TOML keys and, with `-` for `_`, the flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    // --- model and data ---
    /// Hugging Face checkpoint directory or hub id (e.g. `dmis-lab/biobert-v1.1`).
    pub base: String,
    /// Hub endpoint for a hub id (default: $HF_ENDPOINT or https://huggingface.co).
    pub hub_endpoint: Option<String>,
    /// Hub revision (branch, tag or commit) for a hub id.
    pub revision: Option<String>,
    pub train: PathBuf,
    pub val: Option<PathBuf>,
    pub test: Option<PathBuf>,
    pub text_col: String,
    pub label_col: String,
    pub id_col: Option<String>,
    /// Column whose rows stay in one split (e.g. a patient id), for the seeded split.
    pub group_col: Option<String>,
    /// Multi-label: what separates labels in the label cell.
    pub label_separator: String,
    /// Binary: which label is the positive outcome (default: the second in sorted order,
    /// so 0/1, false/true, no/yes all work).
    pub positive_label: Option<String>,
    /// Without `val`, the seeded stratified split's shares.
    pub val_ratio: f64,
    pub test_ratio: f64,
    /// Unusable rows become an error instead of a reported skip.
    pub strict: bool,
    pub out: PathBuf,

    // --- PHI scrubbing (before tokenisation) ---
    pub scrub: bool,
    /// A file of names (one per line) that the scrubber replaces too.
    pub scrub_names: Option<PathBuf>,

    // --- recipe ---
    pub epochs: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    /// Batches of similar token lengths (HF Trainer's `group_by_length`): each epoch's seeded
    /// order is cut into mega-batches, each sorted by length, and the steps then shuffled, so
    /// a batch pads less. Off: batches are plain random draws.
    pub group_by_length: bool,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Share of optimiser steps spent warming up; `warmup_steps` wins if set.
    pub warmup_ratio: f64,
    pub warmup_steps: Option<usize>,
    pub max_grad_norm: f64,
    /// Tokens per window, [CLS]/[SEP] included (default 128; 512 for binary).
    pub max_seq_len: Option<usize>,
    /// Tokens shared by consecutive windows (default max_seq_len / 8).
    pub stride: Option<usize>,
    /// Default: windows for binary, truncate otherwise.
    pub long_notes: Option<LongNotes>,
    /// Overrides the checkpoint's hidden and attention dropout.
    pub dropout: Option<f64>,
    pub seed: u64,
    pub class_weights: ClassWeights,
    pub device: String,
    /// f32, or bf16 (CUDA: bf16 forward/backward on f32 master weights).
    pub precision: String,

    // --- evaluation and selection ---
    /// Evaluate every N optimiser steps instead of once per epoch.
    pub eval_steps: Option<usize>,
    /// macro_f1, accuracy, roc_auc, pr_auc or loss (default macro_f1; roc_auc for binary).
    pub metric: Option<String>,
    /// Stop after this many evaluations without a better metric.
    pub patience: Option<usize>,
    /// Save a resumable state every N optimiser steps (and always after each evaluation).
    pub save_steps: Option<usize>,
    /// Binary: choose the decision threshold on validation for this sensitivity.
    pub target_sensitivity: Option<f64>,
    /// Flag predictions whose confidence is below this as uncertain.
    pub min_confidence: Option<f64>,
    /// Binary / multi-label decision threshold unless a target sensitivity picks one.
    pub decision_threshold: f64,
    /// What the classifier layer reads: `cls` (raw [CLS]), `mean` (masked mean of the token
    /// states) or `pooler` (tanh(pooler · [CLS]), BertForSequenceClassification). Default:
    /// `cls` for the probe, `pooler` for fine-tuning.
    pub features: Option<HeadFeatures>,
    /// Probe: scikit-learn's `C` (inverse L2 strength), or `auto` to choose it on validation.
    pub probe_c: ProbeC,
    /// Probe: standardise features first (`make_pipeline(StandardScaler(), LogisticRegression)`),
    /// folded back into the exported head.
    pub probe_standardize: bool,
    /// Multi-class fine-tuning: also fit the frozen-encoder probe (`cls`, C = 1) on the same
    /// splits, so the report can say when it does as well on validation.
    pub baseline_probe: bool,

    // --- embeddings (`train embed`) ---
    /// mnrl (multiple-negatives ranking, in-batch negatives), cosine or contrastive.
    pub loss: String,
    /// MNRL: similarity scale, 1 / temperature (sentence-transformers' 20).
    pub scale: f64,
    /// Contrastive: margin on the cosine distance (sentence-transformers' 0.5).
    pub margin: f64,
    /// mean or cls.
    pub pooling: String,
    pub text1_col: String,
    pub text2_col: String,
    /// Pairs made from labelled rows (`text_col` and this column, values split by
    /// `label_separator`): two rows sharing a value are a positive pair, a row sharing none a
    /// negative.
    pub pairs_from: Option<String>,
    /// With `pairs_from`: each anchor's N most similar rows under the base model that share
    /// none of its values are its negatives (default: one random such row).
    pub hard_negatives: Option<usize>,

    // --- token classification (`train ner`) ---
    /// iob2 or bioes: the tags' scheme, checked on load and used by strict scoring.
    pub tag_scheme: String,
    /// first (the word's first subtoken carries its tag, the rest are ignored) or all (every
    /// subtoken, `B-` continued as `I-`).
    pub label_subtokens: String,
    /// conll, word-jsonl or span-jsonl; default from the extension and first record.
    pub tag_format: Option<String>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            base: String::new(),
            hub_endpoint: None,
            revision: None,
            train: PathBuf::new(),
            val: None,
            test: None,
            text_col: "text".into(),
            label_col: "label".into(),
            id_col: None,
            group_col: None,
            label_separator: "|".into(),
            positive_label: None,
            val_ratio: 0.1,
            test_ratio: 0.1,
            strict: false,
            out: PathBuf::new(),
            scrub: false,
            scrub_names: None,
            epochs: 4,
            batch_size: 16,
            grad_accum: 1,
            group_by_length: true,
            learning_rate: 2e-5,
            weight_decay: 0.01,
            warmup_ratio: 0.1,
            warmup_steps: None,
            max_grad_norm: 1.0,
            max_seq_len: None,
            stride: None,
            long_notes: None,
            dropout: None,
            seed: 42,
            class_weights: ClassWeights::Named("none".into()),
            device: "cpu".into(),
            precision: "f32".into(),
            eval_steps: None,
            metric: None,
            patience: None,
            save_steps: None,
            target_sensitivity: None,
            min_confidence: None,
            decision_threshold: 0.5,
            features: None,
            probe_c: ProbeC::Value(1.0),
            probe_standardize: false,
            baseline_probe: true,
            loss: "mnrl".into(),
            scale: 20.0,
            margin: 0.5,
            pooling: "mean".into(),
            text1_col: "text1".into(),
            text2_col: "text2".into(),
            pairs_from: None,
            hard_negatives: None,
            tag_scheme: "iob2".into(),
            label_subtokens: "first".into(),
            tag_format: None,
        }
    }
}

/// The metric that picks the best checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    MacroF1,
    Accuracy,
    RocAuc,
    PrAuc,
    Loss,
}

impl Metric {
    pub fn parse(s: &str) -> Result<Metric> {
        Ok(match s {
            "macro_f1" => Metric::MacroF1,
            "accuracy" => Metric::Accuracy,
            "roc_auc" | "auroc" => Metric::RocAuc,
            "pr_auc" | "average_precision" => Metric::PrAuc,
            "loss" => Metric::Loss,
            other => bail!("unknown metric {other:?}: use macro_f1, accuracy, roc_auc, pr_auc or loss"),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::MacroF1 => "macro_f1",
            Metric::Accuracy => "accuracy",
            Metric::RocAuc => "roc_auc",
            Metric::PrAuc => "pr_auc",
            Metric::Loss => "loss",
        }
    }

    /// Larger is better for all but the loss.
    pub fn better(self, candidate: f64, best: f64) -> bool {
        match self {
            Metric::Loss => candidate < best,
            _ => candidate > best,
        }
    }

    pub fn worst(self) -> f64 {
        match self {
            Metric::Loss => f64::INFINITY,
            _ => f64::NEG_INFINITY,
        }
    }
}

impl TrainConfig {
    /// `precision` as the model's training steps take it.
    pub fn matmul_precision(&self) -> Result<Precision> {
        Precision::from_name(&self.precision).context("precision must be f32 or bf16")
    }

    /// Reads a TOML config; unknown keys are an error naming the file.
    pub fn from_toml_file(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}: not a valid bedside config", path.display()))
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string(self)?)
    }

    pub fn max_seq_len_for(&self, task: TaskKind) -> usize {
        self.max_seq_len.unwrap_or(if task == TaskKind::Binary { 512 } else { 128 })
    }

    pub fn stride_for(&self, task: TaskKind) -> usize {
        self.stride.unwrap_or(self.max_seq_len_for(task) / 8)
    }

    pub fn long_notes_for(&self, task: TaskKind) -> LongNotes {
        self.long_notes.unwrap_or(if task == TaskKind::Binary { LongNotes::Windows } else { LongNotes::Truncate })
    }

    /// What the head reads: the configured features, else `cls` for the probe (the
    /// scikit-learn recipe on "CLS embeddings") and `pooler` for fine-tuning (transformers').
    pub fn features_for(&self, task: TaskKind) -> HeadFeatures {
        self.features.unwrap_or(if task == TaskKind::Probe { HeadFeatures::Cls } else { HeadFeatures::Pooler })
    }

    pub fn metric_for(&self, task: TaskKind) -> Result<Metric> {
        match &self.metric {
            Some(m) => Metric::parse(m),
            None if task == TaskKind::Binary => Ok(Metric::RocAuc),
            None => Ok(Metric::MacroF1),
        }
    }

    /// Checks the values that no type can: positive sizes, shares, known names.
    pub fn validate(&self) -> Result<()> {
        ensure!(!self.base.is_empty(), "base: give a checkpoint directory or hub id (--base)");
        ensure!(!self.train.as_os_str().is_empty(), "train: give a training file (--train)");
        ensure!(!self.out.as_os_str().is_empty(), "out: give an output directory (--out)");
        ensure!(self.epochs > 0, "epochs must be at least 1");
        ensure!(self.batch_size > 0, "batch_size must be at least 1");
        ensure!(self.grad_accum > 0, "grad_accum must be at least 1");
        ensure!(self.learning_rate > 0.0 && self.learning_rate.is_finite(), "learning_rate must be positive");
        ensure!(self.weight_decay >= 0.0, "weight_decay must not be negative");
        ensure!((0.0..1.0).contains(&self.warmup_ratio), "warmup_ratio must be in [0, 1)");
        ensure!(self.max_grad_norm > 0.0, "max_grad_norm must be positive");
        ensure!(self.max_seq_len.is_none_or(|n| n >= 8), "max_seq_len must be at least 8");
        ensure!(self.dropout.is_none_or(|p| (0.0..1.0).contains(&p)), "dropout must be in [0, 1)");
        ensure!(
            self.val_ratio >= 0.0 && self.test_ratio >= 0.0 && self.val_ratio + self.test_ratio < 1.0,
            "val_ratio and test_ratio must be non-negative and leave rows to train on"
        );
        ensure!(self.eval_steps != Some(0), "eval_steps must be at least 1");
        ensure!(self.save_steps != Some(0), "save_steps must be at least 1");
        ensure!((0.0..=1.0).contains(&self.decision_threshold), "decision_threshold must be in [0, 1]");
        ensure!(self.target_sensitivity.is_none_or(|s| s > 0.0 && s <= 1.0), "target_sensitivity must be in (0, 1]");
        ensure!(self.min_confidence.is_none_or(|c| (0.0..=1.0).contains(&c)), "min_confidence must be in [0, 1]");
        if let ProbeC::Value(c) = self.probe_c {
            ensure!(c > 0.0 && c.is_finite(), "probe_c must be a positive number or auto");
        }
        ensure!(
            matches!(self.loss.as_str(), "mnrl" | "cosine" | "contrastive"),
            "loss: use mnrl, cosine or contrastive"
        );
        ensure!(matches!(self.pooling.as_str(), "mean" | "cls"), "pooling: use mean or cls");
        ensure!(self.scale > 0.0 && self.margin > 0.0, "scale and margin must be positive");
        ensure!(self.pairs_from.as_ref().is_none_or(|c| !c.trim().is_empty()), "pairs_from: give a column name");
        ensure!(self.hard_negatives != Some(0), "hard_negatives must be at least 1");
        ensure!(
            self.hard_negatives.is_none() || self.pairs_from.is_some(),
            "hard_negatives: mining needs labelled rows (pairs_from, --pairs-from)"
        );
        self.matmul_precision()?;
        ensure!(!self.label_separator.is_empty(), "label_separator must not be empty");
        if let ClassWeights::Named(name) = &self.class_weights {
            ensure!(name == "none" || name == "balanced", "class_weights: use none, balanced or a list of numbers");
        }
        if let Some(m) = &self.metric {
            Metric::parse(m)?;
        }
        Ok(())
    }

    /// What must match for `--resume` to continue this run rather than start a different one.
    pub fn same_run_as(&self, other: &TrainConfig) -> bool {
        // Only where it is written may differ: the epoch count sets the learning-rate
        // schedule, so even "train longer" would not give the same weights.
        let normalise = |c: &TrainConfig| TrainConfig { out: PathBuf::new(), ..c.clone() };
        normalise(self) == normalise(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seed_recipe() {
        let c = TrainConfig::default();
        assert_eq!((c.learning_rate, c.weight_decay, c.batch_size, c.epochs), (2e-5, 0.01, 16, 4));
        assert_eq!(c.max_grad_norm, 1.0);
        assert_eq!(c.max_seq_len_for(TaskKind::Classify), 128);
        assert_eq!(c.max_seq_len_for(TaskKind::Binary), 512);
        assert_eq!(c.metric_for(TaskKind::Binary).unwrap(), Metric::RocAuc);
        assert_eq!(c.metric_for(TaskKind::Classify).unwrap(), Metric::MacroF1);
        assert_eq!(c.long_notes_for(TaskKind::Binary), LongNotes::Windows);
    }

    #[test]
    fn toml_round_trips_and_rejects_unknown_keys() {
        let c = TrainConfig {
            base: "dmis-lab/biobert-v1.1".into(),
            class_weights: ClassWeights::Given(vec![1.0, 2.5]),
            eval_steps: Some(50),
            ..Default::default()
        };
        let back: TrainConfig = toml::from_str(&c.to_toml().unwrap()).unwrap();
        assert_eq!(back, c);
        let partial: TrainConfig = toml::from_str("epochs = 2\nclass_weights = \"balanced\"").unwrap();
        assert_eq!(partial.epochs, 2);
        assert!(partial.class_weights.is_balanced());
        assert_eq!(partial.learning_rate, 2e-5);
        let err = toml::from_str::<TrainConfig>("epoch = 2").unwrap_err().to_string();
        assert!(err.contains("epoch"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let base = TrainConfig { base: "b".into(), train: "t.csv".into(), out: "o".into(), ..Default::default() };
        assert!(base.validate().is_ok());
        let bad = TrainConfig { warmup_ratio: 1.5, ..base.clone() };
        assert!(bad.validate().unwrap_err().to_string().contains("warmup_ratio"));
        let bad = TrainConfig { metric: Some("f2".into()), ..base.clone() };
        assert!(bad.validate().unwrap_err().to_string().contains("f2"));
        let bad = TrainConfig { class_weights: ClassWeights::Named("heavy".into()), ..base.clone() };
        assert!(bad.validate().unwrap_err().to_string().contains("class_weights"));
        let bad = TrainConfig { hard_negatives: Some(2), ..base.clone() };
        assert!(bad.validate().unwrap_err().to_string().contains("pairs_from"));
        let bad = TrainConfig { hard_negatives: Some(0), pairs_from: Some("label".into()), ..base };
        assert!(bad.validate().unwrap_err().to_string().contains("hard_negatives"));
    }

    #[test]
    fn probe_keys_read_from_toml_and_flags() {
        let c: TrainConfig =
            toml::from_str("features = \"mean\"\nprobe_c = \"auto\"\nprobe_standardize = true").unwrap();
        assert_eq!((c.features, c.probe_c, c.probe_standardize), (Some(HeadFeatures::Mean), ProbeC::Auto, true));
        let back: TrainConfig = toml::from_str(&c.to_toml().unwrap()).unwrap();
        assert_eq!(back, c);
        let numeric: TrainConfig = toml::from_str("probe_c = 0.5").unwrap();
        assert_eq!(numeric.probe_c, ProbeC::Value(0.5));
        assert_eq!(toml::from_str::<TrainConfig>("probe_c = 2").unwrap().probe_c, ProbeC::Value(2.0));
        assert!(toml::from_str::<TrainConfig>("probe_c = -1.0").is_err());
        assert!(toml::from_str::<TrainConfig>("probe_c = \"often\"").is_err());
        assert!(toml::from_str::<TrainConfig>("features = \"pooled\"").is_err());
        assert_eq!(ProbeC::parse("auto").unwrap(), ProbeC::Auto);
        assert_eq!(ProbeC::parse("0.01").unwrap(), ProbeC::Value(0.01));
        assert!(ProbeC::parse("0").is_err());
        // Defaults: raw [CLS] for the probe, the pooler for fine-tuning.
        let d = TrainConfig::default();
        assert_eq!(d.features_for(TaskKind::Probe), HeadFeatures::Cls);
        assert_eq!(d.features_for(TaskKind::Classify), HeadFeatures::Pooler);
        assert_eq!(c.features_for(TaskKind::Classify), HeadFeatures::Mean);
    }

    #[test]
    fn embedding_pair_keys_read_from_toml() {
        let c: TrainConfig =
            toml::from_str("pairs_from = \"condition\"\nhard_negatives = 3\nlabel_separator = \";\"").unwrap();
        assert_eq!(
            (c.pairs_from.as_deref(), c.hard_negatives, c.label_separator.as_str()),
            (Some("condition"), Some(3), ";")
        );
        let back: TrainConfig = toml::from_str(&c.to_toml().unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(!c.same_run_as(&TrainConfig { hard_negatives: Some(4), ..c.clone() }));
    }

    #[test]
    fn resume_accepts_a_moved_run_but_not_a_new_recipe() {
        let a = TrainConfig { base: "b".into(), ..Default::default() };
        assert!(a.same_run_as(&TrainConfig { out: "elsewhere".into(), ..a.clone() }));
        assert!(!a.same_run_as(&TrainConfig { epochs: 9, ..a.clone() }));
        assert!(!a.same_run_as(&TrainConfig { learning_rate: 1e-4, ..a.clone() }));
    }
}
