//! Checkpoint: a Hugging Face BERT directory, as users download it, → config, canonical
//! weights, tokenizer JSON and sentence-transformers settings.
//!
//! Weights: `model.safetensors` or `pytorch_model.bin` (PyTorch pickle, zip format).
//! Tokenizer: `tokenizer.json`, or only `vocab.txt` (BioBERT v1.1 ships nothing else), from
//! which an equivalent BERT WordPiece tokenizer is built. Native only: the browser loads
//! bundles, never directories.

mod tokenizer;

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde_json::Value;

use crate::bundle::{Manifest, Quantization, SpecialTokens, Task, FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::model::{BertConfig, HeadFeatures, Weights};
use crate::pipeline::aggregate::{Aggregation, CLINICALBERT_DEFAULT_C};
use crate::pipeline::pool::Pooling;

pub use tokenizer::{build_wordpiece_json, vocab_looks_cased};

/// What a checkpoint directory holds, ready for the runtime or an export.
#[derive(Debug)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: BertConfig,
    pub weights: Weights,
    pub tokenizer_json: String,
    pub special_tokens: SpecialTokens,
    /// From sentence-transformers' `1_Pooling/config.json`, if present.
    pub pooling: Option<Pooling>,
    /// sentence-transformers pipeline ends with `Normalize`.
    pub normalize: bool,
    /// sentence-transformers' `max_seq_length`, if present.
    pub max_seq_length: Option<usize>,
    /// How `bedside train` meant the model to be served, if it wrote the checkpoint.
    pub serving: Option<ServingSettings>,
}

/// Serving choices a training run makes (task, window, aggregation, the decision threshold
/// chosen on validation), kept under the `bedside` key of config.json so that `export`,
/// `eval` and the browser apply them. transformers ignores the key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServingSettings {
    pub task: Task,
    /// Labels in output order; binary: `[negative, positive]`.
    pub labels: Vec<String>,
    pub max_seq_len: usize,
    pub stride: usize,
    pub aggregation: Aggregation,
    pub decision_threshold: f32,
    pub min_confidence: f32,
    /// What the classifier reads (absent: `pooler`, what runs before the field existed meant).
    #[serde(default)]
    pub head_features: HeadFeatures,
}

impl ServingSettings {
    fn apply(&self, manifest: Manifest) -> Manifest {
        Manifest {
            task: self.task,
            labels: self.labels.clone(),
            max_seq_len: self.max_seq_len,
            stride: self.stride,
            aggregation: self.aggregation,
            decision_threshold: self.decision_threshold,
            min_confidence: self.min_confidence,
            head_features: self.head_features,
            ..manifest
        }
    }
}

/// The key of config.json that holds [`ServingSettings`].
pub const SERVING_KEY: &str = "bedside";

/// Choices a user can make when a directory does not say.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Lower-case text (only used when building a tokenizer from vocab.txt). `None`: read
    /// `tokenizer_config.json`, else infer from the vocabulary's casing.
    pub lowercase: Option<bool>,
}

pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::File { path: path.to_path_buf(), message: e.to_string() })?;
    String::from_utf8(bytes)
        .map_err(|e| Error::NotUtf8 { path: path.display().to_string(), byte_offset: e.utf8_error().valid_up_to() })
}

fn read_json(path: &Path) -> Result<Value> {
    serde_json::from_str(&read_text(path)?)
        .map_err(|e| Error::Json { path: path.display().to_string(), message: e.to_string() })
}

/// A special token in tokenizer_config.json is a string or `{"content": "..."}`.
fn token_string(config: &Value, key: &str) -> Option<String> {
    match config.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl Checkpoint {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_dir_with(dir, &LoadOptions::default())
    }

    pub fn from_dir_with(dir: &Path, options: &LoadOptions) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::File { path: dir.to_path_buf(), message: "not a directory".into() });
        }
        let config_path = dir.join("config.json");
        let config_text = read_text(&config_path)?;
        let config = BertConfig::from_json(&config_text, &config_path.display().to_string())?;
        let serving = serving_settings(&config_text, &config_path)?;
        let weights = load_weights(dir)?;

        let tokenizer_config_path = dir.join("tokenizer_config.json");
        let tokenizer_config =
            if tokenizer_config_path.is_file() { Some(read_json(&tokenizer_config_path)?) } else { None };
        let mut special_tokens = SpecialTokens::default();
        let mut unk = "[UNK]".to_string();
        if let Some(tc) = &tokenizer_config {
            special_tokens.cls = token_string(tc, "cls_token").unwrap_or(special_tokens.cls);
            special_tokens.sep = token_string(tc, "sep_token").unwrap_or(special_tokens.sep);
            special_tokens.pad = token_string(tc, "pad_token").unwrap_or(special_tokens.pad);
            unk = token_string(tc, "unk_token").unwrap_or(unk);
        }

        let tokenizer_json = if dir.join("tokenizer.json").is_file() {
            read_text(&dir.join("tokenizer.json"))?
        } else if dir.join("vocab.txt").is_file() {
            let vocab_path = dir.join("vocab.txt");
            let vocab = read_text(&vocab_path)?;
            let lowercase = options
                .lowercase
                .or_else(|| tokenizer_config.as_ref()?.get("do_lower_case")?.as_bool())
                .unwrap_or_else(|| !vocab_looks_cased(&vocab));
            build_wordpiece_json(&vocab, lowercase, &special_tokens, &unk)
                .map_err(|e| Error::Tokenizer(format!("{}: {e}", vocab_path.display())))?
        } else {
            return Err(Error::NoTokenizer { dir: dir.to_path_buf() });
        };

        let (pooling, normalize, max_seq_length) = sentence_transformers_settings(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            weights,
            tokenizer_json,
            special_tokens,
            pooling,
            normalize,
            max_seq_length,
            serving,
        })
    }

    /// The manifest this checkpoint gets by default: a classifier if it has a `classifier`
    /// head, else an embedding model; windows as long as the model allows (sentence-
    /// transformers' limit if it sets one).
    pub fn default_manifest(&self, quantization: Quantization) -> Result<Manifest> {
        let head_outputs = match self.weights.get_any("classifier.weight") {
            Ok(w) => w.dims().first().copied().unwrap_or(0),
            Err(_) => 0,
        };
        let labels = match self.config.labels() {
            Some(labels) if labels.len() == head_outputs => labels,
            _ => (0..head_outputs).map(|i| format!("LABEL_{i}")).collect(),
        };
        let task = match (head_outputs, self.config.problem_type.as_deref()) {
            (0, _) => Task::Embedding,
            (_, Some("multi_label_classification")) => Task::Multilabel,
            (1, _) => Task::Binary,
            _ => Task::Classification,
        };
        let labels = if task == Task::Binary && labels.len() == 1 {
            vec![format!("not {}", labels[0]), labels[0].clone()]
        } else {
            labels
        };
        let max_seq_len = self.max_seq_length.unwrap_or(512).min(self.config.max_position_embeddings);
        let aggregation = match task {
            Task::Binary | Task::Multilabel => Aggregation::Clinicalbert { c: CLINICALBERT_DEFAULT_C },
            _ => Aggregation::Mean,
        };
        let default_pooling = if task == Task::Embedding { Pooling::Mean } else { Pooling::Cls };
        let manifest =
            Manifest {
                format_version: FORMAT_VERSION,
                task,
                labels,
                head_outputs,
                head_features: HeadFeatures::default(),
                pooling: self.pooling.unwrap_or(default_pooling),
                normalize: self.normalize,
                max_seq_len,
                // An eighth of a window: enough context across a cut, little repeated work.
                stride: max_seq_len / 8,
                aggregation,
                decision_threshold: 0.5,
                min_confidence: 0.0,
                base_model: self.config.name_or_path.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| {
                    self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
                }),
                quantization,
                special_tokens: self.special_tokens.clone(),
                config: self.config.clone(),
                created_by: format!("bedside {}", env!("CARGO_PKG_VERSION")),
            };
        Ok(match &self.serving {
            Some(serving) => serving.apply(manifest),
            None => manifest,
        })
    }
}

fn serving_settings(config_text: &str, path: &Path) -> Result<Option<ServingSettings>> {
    let json = |message: String| Error::Json { path: path.display().to_string(), message };
    let value: Value = serde_json::from_str(config_text).map_err(|e| json(e.to_string()))?;
    match value.get(SERVING_KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| json(format!("{SERVING_KEY}: {e}"))),
    }
}

fn load_weights(dir: &Path) -> Result<Weights> {
    let safetensors = dir.join("model.safetensors");
    let pickle = dir.join("pytorch_model.bin");
    let file_error =
        |path: &Path, e: candle_core::Error| Error::File { path: path.to_path_buf(), message: e.to_string() };
    if safetensors.is_file() {
        let tensors =
            candle_core::safetensors::load(&safetensors, &Device::Cpu).map_err(|e| file_error(&safetensors, e))?;
        Weights::from_checkpoint(tensors)
    } else if pickle.is_file() {
        let tensors = candle_core::pickle::read_all(&pickle).map_err(|e| file_error(&pickle, e))?;
        Weights::from_checkpoint(tensors)
    } else {
        Err(Error::NoWeights { dir: dir.to_path_buf() })
    }
}

/// Pooling, normalisation and max length from a sentence-transformers layout, if any.
fn sentence_transformers_settings(dir: &Path) -> Result<(Option<Pooling>, bool, Option<usize>)> {
    let modules_path = dir.join("modules.json");
    if !modules_path.is_file() {
        return Ok((None, false, None));
    }
    let modules = read_json(&modules_path)?;
    let modules = modules.as_array().cloned().unwrap_or_default();
    let of_type = |suffix: &str| {
        modules.iter().find(|m| m.get("type").and_then(Value::as_str).is_some_and(|t| t.ends_with(suffix)))
    };
    let mut pooling = None;
    if let Some(module) = of_type("models.Pooling") {
        let path = dir.join(module.get("path").and_then(Value::as_str).unwrap_or("1_Pooling")).join("config.json");
        if path.is_file() {
            let config = read_json(&path)?;
            let flag = |k: &str| config.get(k).and_then(Value::as_bool).unwrap_or(false);
            pooling = if flag("pooling_mode_cls_token") {
                Some(Pooling::Cls)
            } else if flag("pooling_mode_mean_tokens") {
                Some(Pooling::Mean)
            } else {
                return Err(Error::Config {
                    field: format!("{}: pooling mode", path.display()),
                    message: "only CLS and mean pooling are supported".into(),
                });
            };
        }
    }
    let normalize = of_type("models.Normalize").is_some();
    let st_config = dir.join("sentence_bert_config.json");
    let max_seq_length = if st_config.is_file() {
        read_json(&st_config)?.get("max_seq_length").and_then(Value::as_u64).map(|n| n as usize)
    } else {
        None
    };
    Ok((pooling, normalize, max_seq_length))
}
