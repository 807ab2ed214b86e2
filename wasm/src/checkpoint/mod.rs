//! Checkpoint: a Hugging Face BERT directory, as users download it, → config, canonical
//! weights, tokenizer JSON and sentence-transformers settings.
//!
//! Weights: `model.safetensors` or `pytorch_model.bin` (PyTorch pickle, zip format).
//! Tokenizer: `tokenizer.json`, or only `vocab.txt` (BioBERT v1.1 ships nothing else), from
//! which an equivalent BERT WordPiece tokenizer is built. Native only: the browser loads
//! bundles, never directories.

mod pickle;
mod tokenizer;

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde_json::Value;

use crate::bundle::{Manifest, Quantization, SpecialTokens, Task, FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::model::{BertConfig, HeadFeatures, Weights};
use crate::pipeline::aggregate::{Aggregation, CLINICALBERT_DEFAULT_C};
use crate::pipeline::entities::EntityAggregation;
use crate::pipeline::pool::Pooling;
use crate::pipeline::scrub::ScrubSettings;
use crate::pipeline::tokenize::check_tokenizer_fits;

pub use pickle::{read_pytorch_checkpoint, read_pytorch_checkpoint_from, MAX_NESTING, MAX_PICKLE_BYTES};
pub use tokenizer::{build_wordpiece_json, vocab_looks_cased};

/// Largest tokenizer.json or vocab.txt read (bert-base's tokenizer.json is ~700 KB; the
/// largest multilingual ones are ~20 MB).
pub const MAX_TOKENIZER_BYTES: u64 = 64 << 20;

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
    /// Token classification: how token labels become entities.
    #[serde(default)]
    pub entity_aggregation: EntityAggregation,
    /// How the training text was scrubbed (`train --scrub`), so that serving scrubs the same
    /// way; absent or null: trained on raw text. Names lists are never stored, only whether
    /// one was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrub: Option<ScrubSettings>,
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
            entity_aggregation: self.entity_aggregation,
            scrub: self.scrub.clone(),
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
    text_from_bytes(path, bytes)
}

/// Reads a text file of at most `limit` bytes, refusing a larger one before reading it.
pub(crate) fn read_text_capped(path: &Path, limit: u64) -> Result<String> {
    use std::io::Read;
    let file_error = |e: std::io::Error| Error::File { path: path.to_path_buf(), message: e.to_string() };
    let file = std::fs::File::open(path).map_err(file_error)?;
    let size = file.metadata().map_err(file_error)?.len();
    let too_large = |size: u64| Error::FileTooLarge { path: path.display().to_string(), size, limit };
    if size > limit {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // One byte past the limit catches a file that grew after its size was read.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(file_error)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    text_from_bytes(path, bytes)
}

fn text_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<String> {
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
            read_text_capped(&dir.join("tokenizer.json"), MAX_TOKENIZER_BYTES)?
        } else if dir.join("vocab.txt").is_file() {
            let vocab_path = dir.join("vocab.txt");
            let vocab = read_text_capped(&vocab_path, MAX_TOKENIZER_BYTES)?;
            let lowercase = options
                .lowercase
                .or_else(|| tokenizer_config.as_ref()?.get("do_lower_case")?.as_bool())
                .unwrap_or_else(|| !vocab_looks_cased(&vocab));
            build_wordpiece_json(&vocab, lowercase, &special_tokens, &unk)
                .map_err(|e| Error::Tokenizer(format!("{}: {e}", vocab_path.display())))?
        } else {
            return Err(Error::NoTokenizer { dir: dir.to_path_buf() });
        };
        let tokenizer = tokenizers::Tokenizer::from_bytes(tokenizer_json.as_bytes())
            .map_err(|e| Error::Tokenizer(format!("{}: tokenizer JSON does not load: {e}", dir.display())))?;
        check_tokenizer_fits(&tokenizer, config.vocab_size, &dir.display().to_string())?;

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

    /// The manifest this checkpoint gets by default: a token classifier if config.json
    /// names a `…ForTokenClassification`, else a classifier if it has a classifier head, else
    /// an embedding model; windows as long as the model allows (sentence-transformers' limit
    /// if it sets one).
    pub fn default_manifest(&self, quantization: Quantization) -> Result<Manifest> {
        let token_head = match &self.serving {
            Some(serving) => serving.task == Task::TokenClassification,
            None => self.config.is_token_classifier(),
        };
        let output_layer = if token_head { "classifier" } else { self.config.architecture().sequence_head_names().1 };
        let head_outputs = match self.weights.get_any(&format!("{output_layer}.weight")) {
            Ok(w) => w.dims().first().copied().unwrap_or(0),
            Err(_) => 0,
        };
        let labels = match self.config.labels() {
            Some(labels) if labels.len() == head_outputs => labels,
            _ => (0..head_outputs).map(|i| format!("LABEL_{i}")).collect(),
        };
        let task = match (head_outputs, self.config.problem_type.as_deref()) {
            (0, _) => Task::Embedding,
            _ if token_head => Task::TokenClassification,
            (_, Some("multi_label_classification")) => Task::Multilabel,
            (1, _) => Task::Binary,
            _ => Task::Classification,
        };
        let labels = if task == Task::Binary && labels.len() == 1 {
            vec![format!("not {}", labels[0]), labels[0].clone()]
        } else {
            labels
        };
        let max_seq_len = self.max_seq_length.unwrap_or(512).min(self.config.max_positions());
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
                entity_aggregation: EntityAggregation::default(),
                decision_threshold: 0.5,
                min_confidence: 0.0,
                scrub: None,
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
    if safetensors.is_file() {
        let tensors = candle_core::safetensors::load(&safetensors, &Device::Cpu)
            .map_err(|e| Error::File { path: safetensors.clone(), message: e.to_string() })?;
        Weights::from_checkpoint(tensors)
    } else if pickle.is_file() {
        Weights::from_checkpoint(read_pytorch_checkpoint(&pickle)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/fixtures/tiny-safetensors");

    fn fixture_copy(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bedside-checkpoint-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(FIXTURE).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        dir
    }

    #[test]
    fn checkpoint_tokenizer_must_fit_the_embedding_table() {
        let dir = fixture_copy("vocab");
        Checkpoint::from_dir(&dir).unwrap();
        let config_path = dir.join("config.json");
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        let rows = config["vocab_size"].as_u64().unwrap();
        config["vocab_size"] = (rows - 1).into();
        std::fs::write(&config_path, config.to_string()).unwrap();
        let err = Checkpoint::from_dir(&dir).unwrap_err();
        assert_eq!(err.code(), "tokenizer_vocab", "{err}");
        assert!(matches!(err, Error::TokenizerVocab { vocab_size, .. } if vocab_size as u64 == rows - 1));
    }

    #[test]
    fn oversized_tokenizer_files_are_refused_before_reading() {
        let dir = fixture_copy("large");
        // Sparse: one byte over the limit costs no disk.
        std::fs::File::options()
            .write(true)
            .open(dir.join("tokenizer.json"))
            .unwrap()
            .set_len(MAX_TOKENIZER_BYTES + 1)
            .unwrap();
        let err = Checkpoint::from_dir(&dir).unwrap_err();
        assert_eq!(err.code(), "file_too_large", "{err}");
        assert!(err.to_string().contains("tokenizer.json"), "{err}");

        std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(dir.join("vocab.txt"))
            .unwrap()
            .set_len(MAX_TOKENIZER_BYTES + 1)
            .unwrap();
        let err = Checkpoint::from_dir(&dir).unwrap_err();
        assert_eq!(err.code(), "file_too_large", "{err}");
        assert!(err.to_string().contains("vocab.txt"), "{err}");
    }
}
