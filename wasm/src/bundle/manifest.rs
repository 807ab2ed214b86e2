//! The manifest: everything besides weights and tokenizer that a bundle must carry for the
//! runtime to answer exactly as the trainer intended. Stored as one JSON string in the GGUF
//! metadata (`bedside.manifest`); see models/BUNDLE.md.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{BertConfig, HeadFeatures};
use crate::pipeline::aggregate::Aggregation;
use crate::pipeline::entities::EntityAggregation;
use crate::pipeline::pool::Pooling;
use crate::pipeline::scrub::ScrubSettings;

/// The bundle layout this runtime writes.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest layout it still reads. Version 2 added `head_features`, which a version-1
/// reader would ignore and so score a `cls`/`mean` head on the wrong features; version-1
/// bundles (no field) read as `pooler`, which is what they computed. Version 3 extended the
/// checksum to every metadata key (`general.name` included); older bundles still load, and
/// say that their name is not covered (`ChecksumCoverage`).
pub const OLDEST_READABLE_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Sentence embeddings; no head.
    Embedding,
    /// One label out of several (softmax).
    Classification,
    /// Negative/positive outcome (one sigmoid logit or two softmax logits).
    Binary,
    /// Any number of labels at once (sigmoid per label).
    Multilabel,
    /// A label per token (softmax), grouped into entities: NER, de-identification.
    #[serde(rename = "token-classification")]
    TokenClassification,
}

impl Task {
    pub fn as_str(&self) -> &'static str {
        match self {
            Task::Embedding => "embedding",
            Task::Classification => "classification",
            Task::Binary => "binary",
            Task::Multilabel => "multilabel",
            Task::TokenClassification => "token-classification",
        }
    }
}

impl std::str::FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "embedding" => Ok(Task::Embedding),
            "classification" => Ok(Task::Classification),
            "binary" => Ok(Task::Binary),
            "multilabel" => Ok(Task::Multilabel),
            "token-classification" | "token_classification" | "ner" => Ok(Task::TokenClassification),
            other => Err(format!(
                "unknown task {other:?}: use embedding, classification, binary, multilabel or token-classification"
            )),
        }
    }
}

/// Storage type of the large matrices (linear weights and word embeddings). Biases,
/// LayerNorm and position tables always stay f32: they are small and sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantization {
    F32,
    F16,
    Q8_0,
    Q4_0,
}

impl Quantization {
    pub fn as_str(&self) -> &'static str {
        match self {
            Quantization::F32 => "f32",
            Quantization::F16 => "f16",
            Quantization::Q8_0 => "q8_0",
            Quantization::Q4_0 => "q4_0",
        }
    }
}

impl std::str::FromStr for Quantization {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Quantization::F32),
            "f16" => Ok(Quantization::F16),
            "q8_0" => Ok(Quantization::Q8_0),
            "q4_0" => Ok(Quantization::Q4_0),
            _ => Err(Error::UnknownQuantization(s.to_string())),
        }
    }
}

/// The strings of the special tokens windowing needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    pub cls: String,
    pub sep: String,
    pub pad: String,
}

impl Default for SpecialTokens {
    fn default() -> Self {
        Self { cls: "[CLS]".into(), sep: "[SEP]".into(), pad: "[PAD]".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub task: Task,
    /// Output labels in head order. Binary: `[negative, positive]`. Empty for embeddings.
    pub labels: Vec<String>,
    /// Number of classifier outputs (binary: 1 sigmoid or 2 softmax). 0 for embeddings.
    pub head_outputs: usize,
    /// What the classifier layer reads: pooler (BertForSequenceClassification), raw [CLS]
    /// or the masked mean. Absent in version-1 bundles, which always meant `pooler`.
    #[serde(default)]
    pub head_features: HeadFeatures,
    /// How embeddings are pooled (task `embedding`).
    pub pooling: Pooling,
    /// L2-normalise embeddings.
    pub normalize: bool,
    /// Tokens per window, [CLS] and [SEP] included.
    pub max_seq_len: usize,
    /// Tokens shared by consecutive windows of a long note.
    pub stride: usize,
    pub aggregation: Aggregation,
    /// Token classification: how token labels become entities (transformers'
    /// `aggregation_strategy`). Absent before the task existed.
    #[serde(default)]
    pub entity_aggregation: EntityAggregation,
    /// Binary / multi-label: probability at or above which an output is positive.
    pub decision_threshold: f32,
    /// A prediction whose probability is below this is flagged `uncertain` (0 = never).
    pub min_confidence: f32,
    /// The model was trained on scrubbed text (`train --scrub`): the runtime scrubs each note
    /// the same way (these pattern kinds; never a names list, which the bundle does not hold)
    /// before tokenizing it, and maps every offset it returns back to the original note.
    /// Absent (bundles before the field, models trained on raw text): no scrubbing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrub: Option<ScrubSettings>,
    pub base_model: String,
    pub quantization: Quantization,
    pub special_tokens: SpecialTokens,
    pub config: BertConfig,
    /// Tool and version that wrote the bundle.
    pub created_by: String,
}

/// Refuses a layout this runtime cannot read (newer, or older than it supports).
pub fn check_version(found: u32) -> Result<()> {
    if (OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&found) {
        Ok(())
    } else {
        Err(Error::BundleVersion { found, supported: FORMAT_VERSION })
    }
}

impl Manifest {
    /// Checks that the fields agree with each other and with the model config.
    pub fn validate(&self) -> Result<()> {
        check_version(self.format_version)?;
        self.config.validate()?;
        self.aggregation.validate()?;
        if self.max_seq_len > self.config.max_positions() {
            return Err(Error::manifest(
                "max_seq_len",
                format!(
                    "{} exceeds the model's {} positions (max_position_embeddings {})",
                    self.max_seq_len,
                    self.config.max_positions(),
                    self.config.max_position_embeddings
                ),
            ));
        }
        crate::pipeline::window::WindowSpec::new(self.max_seq_len, self.stride)
            .map_err(|e| Error::manifest("stride", e.to_string()))?;
        for (field, p) in [("decision_threshold", self.decision_threshold), ("min_confidence", self.min_confidence)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::manifest(field, format!("{p} is not a probability in [0, 1]")));
            }
        }
        let n = self.labels.len();
        let outputs_ok = match self.task {
            Task::Embedding => self.head_outputs == 0,
            Task::Classification => n >= 2 && self.head_outputs == n,
            Task::Binary => n == 2 && (self.head_outputs == 1 || self.head_outputs == 2),
            Task::Multilabel => n >= 1 && self.head_outputs == n,
            Task::TokenClassification => n >= 1 && self.head_outputs == n,
        };
        if !outputs_ok {
            return Err(Error::manifest(
                "labels",
                format!("task {} with {} labels cannot have {} head outputs", self.task.as_str(), n, self.head_outputs),
            ));
        }
        if self.task == Task::Classification && matches!(self.aggregation, Aggregation::Clinicalbert { .. }) {
            return Err(Error::manifest(
                "aggregation",
                "the ClinicalBERT rule scores each output on its own; use mean for multi-class softmax",
            ));
        }
        Ok(())
    }
}
