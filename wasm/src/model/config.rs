//! `BertConfig`: the encoder's hyper-parameters, read from a Hugging Face `config.json`
//! and stored verbatim (as JSON) in the bundle's manifest.
//!
//! Mirrors `transformers.BertConfig`; `Default` is bert-base-uncased. RoBERTa and
//! XLM-RoBERTa configs have the same fields and graph; their [`Architecture`] (from
//! `model_type`) says where they differ: position ids and head names.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact GELU with erf, what BERT's "gelu" means.
    #[serde(alias = "gelu_python")]
    Gelu,
    /// The tanh approximation ("gelu_new", "gelu_pytorch_tanh").
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluApproximate,
    Relu,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: usize,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub position_embedding_type: String,
    pub model_type: Option<String>,
    pub architectures: Vec<String>,
    /// Classification labels, by id (`id2label` in config.json; keys are stringified ints).
    pub id2label: Option<BTreeMap<String, String>>,
    pub problem_type: Option<String>,
    #[serde(rename = "_name_or_path")]
    pub name_or_path: Option<String>,
}

impl Default for BertConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            position_embedding_type: "absolute".to_string(),
            model_type: Some("bert".to_string()),
            architectures: Vec::new(),
            id2label: None,
            problem_type: None,
            name_or_path: None,
        }
    }
}

/// The encoder families Bedside runs: one graph (`model/bert.rs`), two ways of numbering
/// positions and naming the sequence head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    Bert,
    /// RoBERTa and XLM-RoBERTa (`model_type` "roberta" / "xlm-roberta").
    Roberta,
}

impl Architecture {
    /// From config.json's `model_type` (an empty one, in old BERT configs, means BERT).
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "" | "bert" => Some(Architecture::Bert),
            "roberta" | "xlm-roberta" => Some(Architecture::Roberta),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::Roberta => "roberta",
        }
    }

    /// The prefix `…ForSequenceClassification`/`…ForTokenClassification` put before the
    /// encoder's names.
    pub fn weight_prefix(self) -> &'static str {
        match self {
            Architecture::Bert => "bert.",
            Architecture::Roberta => "roberta.",
        }
    }

    /// Names of a sequence head's layers: the dense+tanh layer before the output (BERT's
    /// pooler; RoBERTa's `classifier.dense`, on the `<s>` state) and the output layer.
    pub fn sequence_head_names(self) -> (&'static str, &'static str) {
        match self {
            Architecture::Bert => ("pooler.dense", "classifier"),
            Architecture::Roberta => ("classifier.dense", "classifier.out_proj"),
        }
    }
}

/// Architectures whose encoder is a plain BERT or RoBERTa with the tensor names we read.
const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "BertModel",
    "BertForSequenceClassification",
    "BertForMaskedLM",
    "BertForPreTraining",
    "BertForTokenClassification",
    "BertForMultipleChoice",
    "BertForQuestionAnswering",
    "BertForNextSentencePrediction",
    "BertLMHeadModel",
    "RobertaModel",
    "RobertaForSequenceClassification",
    "RobertaForTokenClassification",
    "RobertaForMaskedLM",
    "XLMRobertaModel",
    "XLMRobertaForSequenceClassification",
    "XLMRobertaForTokenClassification",
    "XLMRobertaForMaskedLM",
];

impl BertConfig {
    /// Parses a Hugging Face `config.json` and checks that Bedside can run it.
    /// `origin` names the file in errors.
    pub fn from_json(json: &str, origin: &str) -> Result<Self> {
        // Parse loosely first so an unsupported model says so, rather than failing on
        // a field (e.g. a `hidden_act` we lack) that only BERT would need.
        let raw: serde_json::Value =
            serde_json::from_str(json).map_err(|e| Error::Json { path: origin.to_string(), message: e.to_string() })?;
        let model_type = raw.get("model_type").and_then(|v| v.as_str()).unwrap_or("").to_string();
        let architectures: Vec<String> = raw
            .get("architectures")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let arch_ok =
            architectures.is_empty() || architectures.iter().any(|a| SUPPORTED_ARCHITECTURES.contains(&a.as_str()));
        if Architecture::from_model_type(&model_type).is_none() || !arch_ok {
            return Err(Error::UnsupportedArchitecture { found: architectures.join(", "), model_type });
        }
        let config: BertConfig = serde_json::from_value(raw)
            .map_err(|e| Error::Json { path: origin.to_string(), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects shapes the encoder cannot run, before any tensor is touched.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(Error::config(field, "must be positive"));
            }
        }
        if Architecture::from_model_type(self.model_type.as_deref().unwrap_or("")).is_none() {
            return Err(Error::config("model_type", "must be bert, roberta or xlm-roberta"));
        }
        if self.max_positions() == 0 {
            return Err(Error::config(
                "max_position_embeddings",
                format!(
                    "{} rows leave no position after RoBERTa's offset {}",
                    self.max_position_embeddings,
                    self.position_offset()
                ),
            ));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::config(
                "num_attention_heads",
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(Error::config(
                "position_embedding_type",
                format!("{:?} is not supported; only \"absolute\"", self.position_embedding_type),
            ));
        }
        Ok(())
    }

    pub fn architecture(&self) -> Architecture {
        // `validate`/`from_json` refused any other model_type.
        Architecture::from_model_type(self.model_type.as_deref().unwrap_or("")).unwrap_or(Architecture::Bert)
    }

    /// Row of the position table the first token reads. RoBERTa numbers positions from
    /// `padding_idx + 1` (its padding takes row `padding_idx`); BERT from 0.
    pub fn position_offset(&self) -> usize {
        match self.architecture() {
            Architecture::Bert => 0,
            Architecture::Roberta => self.pad_token_id + 1,
        }
    }

    /// The longest window the position table allows: 512 for roberta-base's 514 rows.
    pub fn max_positions(&self) -> usize {
        self.max_position_embeddings.saturating_sub(self.position_offset())
    }

    /// Whether a checkpoint names itself a token classifier (`…ForTokenClassification`).
    pub fn is_token_classifier(&self) -> bool {
        self.architectures.iter().any(|a| a.ends_with("ForTokenClassification"))
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Labels in id order, if the checkpoint names them.
    pub fn labels(&self) -> Option<Vec<String>> {
        let map = self.id2label.as_ref()?;
        let mut pairs: Vec<(usize, &String)> =
            map.iter().filter_map(|(k, v)| k.parse().ok().map(|id| (id, v))).collect();
        pairs.sort_by_key(|(id, _)| *id);
        Some(pairs.into_iter().map(|(_, v)| v.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_other_architectures() {
        let err = BertConfig::from_json(r#"{"model_type":"gpt2","architectures":["GPT2LMHeadModel"]}"#, "config.json")
            .unwrap_err();
        assert_eq!(err.code(), "unsupported_architecture");
        assert!(err.to_string().contains("GPT2LMHeadModel"));
    }

    #[test]
    fn accepts_gelu_aliases_and_labels_in_order() {
        let c = BertConfig::from_json(
            r#"{"model_type":"bert","hidden_act":"gelu_new","hidden_size":32,"num_attention_heads":4,
               "id2label":{"1":"b","0":"a","10":"k","2":"c"}}"#,
            "config.json",
        )
        .unwrap();
        assert_eq!(c.hidden_act, Activation::GeluApproximate);
        assert_eq!(c.labels().unwrap(), vec!["a", "b", "c", "k"]);
    }

    #[test]
    fn roberta_numbers_positions_after_padding() {
        let c = BertConfig::from_json(
            r#"{"model_type":"roberta","architectures":["RobertaForTokenClassification"],"pad_token_id":1,
               "max_position_embeddings":514,"type_vocab_size":1}"#,
            "config.json",
        )
        .unwrap();
        assert_eq!(c.architecture(), Architecture::Roberta);
        assert_eq!((c.position_offset(), c.max_positions()), (2, 512));
        assert!(c.is_token_classifier());
        let bert = BertConfig::from_json(r#"{"architectures":["BertModel"]}"#, "c.json").unwrap();
        assert_eq!((bert.architecture(), bert.position_offset(), bert.max_positions()), (Architecture::Bert, 0, 512));
        let err =
            BertConfig::from_json(r#"{"model_type":"roberta","pad_token_id":1,"max_position_embeddings":2}"#, "c.json")
                .unwrap_err();
        assert_eq!(err.code(), "config");
    }

    #[test]
    fn rejects_heads_not_dividing_hidden() {
        let err = BertConfig::from_json(r#"{"hidden_size":30,"num_attention_heads":4}"#, "c.json").unwrap_err();
        assert_eq!(err.code(), "config");
    }
}
