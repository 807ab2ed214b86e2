//! The runtime's one error type.
//!
//! Variants are grouped by the step of the data path that raises them and carry the
//! file, field or tensor they are about. Messages never contain note text (PHI): only
//! names, lengths, offsets and counts.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // === Checkpoint (Hugging Face directory) ===
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },

    #[error("{path}: not valid JSON: {message}")]
    Json { path: String, message: String },

    #[error("{path}: file is not valid UTF-8 (byte {byte_offset})")]
    NotUtf8 { path: String, byte_offset: usize },

    #[error(
        "unsupported architecture {found:?} (model_type {model_type:?}): Bedside runs BERT encoders \
         (BertModel, BertForSequenceClassification, sentence-transformers BERT)"
    )]
    UnsupportedArchitecture { found: String, model_type: String },

    #[error("config field `{field}`: {message}")]
    Config { field: String, message: String },

    #[error("{dir}: no weights found (looked for model.safetensors and pytorch_model.bin)")]
    NoWeights { dir: PathBuf },

    #[error("{dir}: no tokenizer found (looked for tokenizer.json and vocab.txt)")]
    NoTokenizer { dir: PathBuf },

    #[error("{path}: {size} bytes is over the {limit}-byte limit for this file")]
    FileTooLarge { path: String, size: u64, limit: u64 },

    // === PyTorch checkpoint (pytorch_model.bin) ===
    /// The zip container: not a zip, no `data.pkl`, a storage entry missing or too large.
    #[error("{path}: not a readable PyTorch checkpoint: {message}")]
    CheckpointArchive { path: String, message: String },

    /// The pickle program in `data.pkl`: `offset` is the byte of the failing opcode.
    #[error("{path}: data.pkl byte {offset}: {message}")]
    Pickle { path: String, offset: usize, message: String },

    #[error(
        "{path}: data.pkl byte {offset}: global `{global}` is not allowed (a checkpoint may only \
         rebuild a state dict's tensors)"
    )]
    PickleGlobal { path: String, offset: usize, global: String },

    /// A tensor's shape, strides or offset do not fit its storage, or its storage is missing.
    #[error("{path}: tensor `{tensor}`: {message}")]
    CheckpointTensor { path: String, tensor: String, message: String },

    // === Weights ===
    #[error("tensor `{name}` is missing from the {source_kind}")]
    MissingTensor { name: String, source_kind: &'static str },

    #[error("tensor `{name}` has shape {got:?}, expected {expected:?}")]
    TensorShape { name: String, expected: Vec<usize>, got: Vec<usize> },

    #[error("unknown quantization {0:?}: use one of f32, f16, q8_0, q4_0")]
    UnknownQuantization(String),

    // === Bundle ===
    /// The bytes found are not echoed: a file picked by mistake may be a note.
    #[error("not a Bedside bundle: the file does not start with \"GGUF\" (make bundles with `bedside export`)")]
    WrongMagic,

    #[error("not a Bedside bundle: {0}")]
    BadBundle(String),

    #[error("bundle is truncated or corrupt: {0}")]
    TruncatedBundle(String),

    #[error(
        "bundle format version {found} is not supported (this runtime reads 1 to {supported}); \
         re-export it with `bedside export`"
    )]
    BundleVersion { found: u32, supported: u32 },

    #[error("bundle metadata field `{field}`: {message}")]
    Manifest { field: String, message: String },

    #[error("bundle checksum mismatch: stored {stored}, computed {computed}; the file is damaged, download or export it again")]
    Checksum { stored: String, computed: String },

    #[error(
        "bundle tensor `{name}`: value {index} is not finite (NaN or infinity); the bundle is \
         damaged or was exported from a run that diverged"
    )]
    NonFiniteWeights { name: String, index: usize },

    #[error("bundle pin: {0}")]
    Pin(String),

    #[error("bundle refused: its checksum is {found}, but this page or command is pinned to {expected}")]
    PinMismatch { expected: String, found: String },

    // === Tokenize / window ===
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A token id at or past the embedding table's end would index out of range.
    #[error(
        "{what}: the tokenizer has token ids up to {max_id}, but the model's embedding table has \
         {vocab_size} rows (vocab_size)"
    )]
    TokenizerVocab { what: String, max_id: u32, vocab_size: usize },

    #[error("text {index} is empty")]
    EmptyText { index: usize },

    #[error("window: {0}")]
    Window(String),

    // === Model ===
    #[error("this bundle's task is `{task}`; {operation} needs {needs}")]
    WrongTask { task: String, operation: &'static str, needs: &'static str },

    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),

    // === Search (index, projection) ===
    #[error("id {id:?} is already in the index; remove it first or use another id")]
    DuplicateId { id: String },

    #[error("{what} has {got} dimensions, the index holds {expected}-dimensional vectors (embed with the same model)")]
    DimensionMismatch { what: String, expected: usize, got: usize },

    #[error("{what}: {message}")]
    InvalidVector { what: String, message: String },

    #[error("the index is empty: add documents first")]
    EmptyCorpus,

    #[error("not a usable Bedside index: {0}")]
    BadIndex(String),

    #[error("index format version {found} is not supported (this runtime reads {supported}); build the index again")]
    IndexVersion { found: u32, supported: u32 },

    #[error("`{field}`: {message}")]
    InvalidArgument { field: String, message: String },
    /// The WebGPU backend could not start or failed mid-run (no adapter, limits too small,
    /// out of memory, device lost); the CPU path is the fallback.
    #[error("WebGPU: {0}")]
    Gpu(String),
}

impl Error {
    /// A stable, snake_case code for programs (the JS API exposes it as `error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::File { .. } => "file",
            Error::Json { .. } => "json",
            Error::NotUtf8 { .. } => "not_utf8",
            Error::UnsupportedArchitecture { .. } => "unsupported_architecture",
            Error::Config { .. } => "config",
            Error::NoWeights { .. } => "no_weights",
            Error::NoTokenizer { .. } => "no_tokenizer",
            Error::FileTooLarge { .. } => "file_too_large",
            Error::CheckpointArchive { .. } => "checkpoint_archive",
            Error::Pickle { .. } => "pickle",
            Error::PickleGlobal { .. } => "pickle_global",
            Error::CheckpointTensor { .. } => "checkpoint_tensor",
            Error::MissingTensor { .. } => "missing_tensor",
            Error::TensorShape { .. } => "tensor_shape",
            Error::UnknownQuantization(_) => "unknown_quantization",
            Error::WrongMagic => "bad_magic",
            Error::BadBundle(_) => "bad_bundle",
            Error::TruncatedBundle(_) => "truncated_bundle",
            Error::BundleVersion { .. } => "bundle_version",
            Error::Manifest { .. } => "manifest",
            Error::Checksum { .. } => "checksum_mismatch",
            Error::NonFiniteWeights { .. } => "non_finite_weights",
            Error::Pin(_) => "bad_pin",
            Error::PinMismatch { .. } => "integrity_mismatch",
            Error::Tokenizer(_) => "tokenizer",
            Error::TokenizerVocab { .. } => "tokenizer_vocab",
            Error::EmptyText { .. } => "empty_text",
            Error::Window(_) => "window",
            Error::WrongTask { .. } => "wrong_task",
            Error::Candle(_) => "compute",
            Error::DuplicateId { .. } => "duplicate_id",
            Error::DimensionMismatch { .. } => "dimension_mismatch",
            Error::InvalidVector { .. } => "invalid_vector",
            Error::EmptyCorpus => "empty_corpus",
            Error::BadIndex(_) => "bad_index",
            Error::IndexVersion { .. } => "index_version",
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::Gpu(_) => "gpu",
        }
    }

    pub(crate) fn config(field: &str, message: impl Into<String>) -> Self {
        Error::Config { field: field.to_string(), message: message.into() }
    }

    pub(crate) fn manifest(field: &str, message: impl Into<String>) -> Self {
        Error::Manifest { field: field.to_string(), message: message.into() }
    }
}
