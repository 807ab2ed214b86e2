//! Flags (clap) and the commands they dispatch to.

mod commands;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use commands::run;

#[derive(Debug, Parser)]
#[command(name = "bedside", version, about = "Fine-tune, export and run biomedical BERT models; notes stay on this machine")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fine-tune a checkpoint on labelled notes.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Turn a Hugging Face checkpoint directory (or a bundle) into a single-file bundle.
    Export(ExportArgs),
    /// Print one embedding per TEXT.
    Embed(EmbedArgs),
    /// Classify notes given as arguments or in a CSV file.
    Classify(ClassifyArgs),
    /// Cosine similarity of the embeddings of two texts.
    Similarity(SimilarityArgs),
    /// Print a bundle's metadata.
    Inspect(InspectArgs),
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Multi-class note classification (softmax), e.g. patient messages → topic.
    Classify(TrainClassifyArgs),
}

#[derive(Debug, Args)]
pub struct TrainClassifyArgs {
    /// Hugging Face checkpoint directory to start from.
    #[arg(long)]
    pub base: PathBuf,
    /// Training notes (CSV, TSV or JSONL). Without --val, it is split 80/10/10 (seeded, stratified).
    #[arg(long)]
    pub train: PathBuf,
    #[arg(long)]
    pub val: Option<PathBuf>,
    #[arg(long)]
    pub test: Option<PathBuf>,
    #[arg(long, default_value = "text")]
    pub text_col: String,
    #[arg(long, default_value = "label")]
    pub label_col: String,
    #[arg(long)]
    pub id_col: Option<String>,
    /// Output directory: best/ (checkpoint), report.json, log.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    #[arg(long, default_value_t = 2e-5)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Share of optimiser steps spent warming up.
    #[arg(long, default_value_t = 0.1)]
    pub warmup_ratio: f64,
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    #[arg(long, default_value_t = 128)]
    pub max_seq_len: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// none, balanced, or comma-separated weights in sorted label order.
    #[arg(long, default_value = "none")]
    pub class_weights: String,
    /// Stop after N epochs without a better validation macro-F1.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Make unusable rows an error instead of a reported skip.
    #[arg(long)]
    pub strict: bool,
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Hugging Face checkpoint directory or an existing bundle.
    #[arg(long)]
    pub model: PathBuf,
    /// Storage of the large matrices: f32, f16, q8_0 or q4_0.
    #[arg(long, default_value = "q8_0")]
    pub quant: String,
    #[arg(long)]
    pub out: PathBuf,
    /// embedding, classification, binary or multilabel (default: from the checkpoint).
    #[arg(long)]
    pub task: Option<String>,
    /// Comma-separated labels in head order (default: the checkpoint's id2label).
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Tokens per window, [CLS]/[SEP] included.
    #[arg(long)]
    pub max_seq_len: Option<usize>,
    /// Tokens shared by consecutive windows of a long note.
    #[arg(long)]
    pub stride: Option<usize>,
    /// cls or mean.
    #[arg(long)]
    pub pooling: Option<String>,
    /// L2-normalise embeddings (true/false).
    #[arg(long)]
    pub normalize: Option<bool>,
    /// clinicalbert, mean or max.
    #[arg(long)]
    pub aggregation: Option<String>,
    /// The ClinicalBERT rule's constant c.
    #[arg(long)]
    pub aggregation_c: Option<f32>,
    /// Binary/multi-label decision threshold.
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Flag predictions below this probability as uncertain.
    #[arg(long)]
    pub min_confidence: Option<f32>,
    /// Lower-case text when the checkpoint ships only vocab.txt (default: tokenizer_config.json, else inferred).
    #[arg(long)]
    pub lowercase: Option<bool>,
    /// Name recorded as the base model.
    #[arg(long)]
    pub base_model: Option<String>,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Bundle file or Hugging Face checkpoint directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Print one JSON array of vectors.
    #[arg(long)]
    pub json: bool,
    #[arg(required = true)]
    pub texts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Bundle file or Hugging Face checkpoint directory with a classification head.
    #[arg(long)]
    pub model: PathBuf,
    /// Print one JSON object per note (JSON Lines).
    #[arg(long)]
    pub json: bool,
    /// CSV file of notes (header row required).
    #[arg(long, conflicts_with = "texts")]
    pub input: Option<PathBuf>,
    /// Column of --input that holds the note text.
    #[arg(long, default_value = "text")]
    pub text_col: String,
    /// Column of --input with an id to echo back (optional).
    #[arg(long, default_value = "id")]
    pub id_col: String,
    #[arg(required_unless_present = "input")]
    pub texts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SimilarityArgs {
    /// Bundle file or Hugging Face checkpoint directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Print {"cosine": …}.
    #[arg(long)]
    pub json: bool,
    pub text_a: String,
    pub text_b: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    pub bundle: PathBuf,
}
