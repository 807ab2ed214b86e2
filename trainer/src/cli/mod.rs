//! Flags (clap) and the commands they dispatch to.

mod commands;
mod eval_embed;
mod search;
mod tag;

use std::path::PathBuf;

use bedside_runtime::pipeline::entities::EntityAggregation;
use clap::{Args, Parser, Subcommand};

pub use commands::run;

#[derive(Debug, Parser)]
#[command(
    name = "bedside",
    version,
    about = "Fine-tune, export and run biomedical BERT models; notes stay on this machine"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Refuse any bundle whose checksum is not this one, like Subresource Integrity:
    /// "sha256:<hex>" as `export` and `inspect` print it, or "sha256-<base64>". Applies to
    /// every command that loads a bundle; a checkpoint directory is refused while it is set.
    #[arg(long, global = true, value_name = "CHECKSUM")]
    pub expect_checksum: Option<String>,
    /// CPU threads for training and inference [default: $RAYON_NUM_THREADS, else every core].
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

// Parsed once per process: the size of the training variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fine-tune a checkpoint on labelled notes.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Score a model on labelled notes: report.json, report.html, report.md
    /// (`eval embed`: an embedding model on pairs and retrieval).
    Eval(EvalCommand),
    /// Turn a run, a Hugging Face checkpoint directory or a bundle into a single-file bundle.
    Export(ExportArgs),
    /// Print one embedding per TEXT.
    Embed(EmbedArgs),
    /// Classify notes given as arguments or in a CSV file.
    Classify(ClassifyArgs),
    /// Find entities (names, dates, …) with a token-classification model: labels and byte
    /// spans, never the note text.
    Tag(TagArgs),
    /// De-identify a CSV of notes: each entity a token-classification model finds (and with
    /// --rules, each PHI pattern) replaced by [LABEL]; prints counts per label only.
    Deid(DeidArgs),
    /// Cosine similarity of the embeddings of two texts.
    Similarity(SimilarityArgs),
    /// Print a bundle's metadata.
    Inspect(InspectArgs),
    /// Rank the documents of a corpus (.jsonl, .csv, .txt) by similarity to a query.
    Search(search::SearchArgs),
    /// Serve the web page (www/) on 127.0.0.1, optionally with a bundle at /model.gguf.
    Serve(bedside::serve::ServeArgs),
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Multi-class note classification (softmax), e.g. patient messages → topic.
    Classify(TrainArgs),
    /// Binary outcome (one sigmoid), e.g. 30-day readmission; long notes train as windows
    /// and are scored per note with the ClinicalBERT rule.
    Binary(TrainArgs),
    /// Multi-label (a sigmoid per label), e.g. diagnosis codes; labels split by --label-sep.
    Multilabel(TrainArgs),
    /// Frozen-encoder baseline: logistic regression on [CLS] features.
    Probe(TrainArgs),
    /// Token classification (named entities, PHI): CoNLL, HF JSONL (tokens/ner_tags) or span
    /// JSONL (doccano, Label Studio); entity F1 as seqeval computes it.
    Ner(TrainArgs),
    /// Sentence embeddings from pairs (text1,text2,label), triplets (anchor,positive,negative)
    /// or labelled rows (--pairs-from): MNRL, cosine or contrastive loss.
    Embed(TrainArgs),
}

/// Every option of a run. Each can also be set in the --config TOML file (same name with
/// `_` for `-`); a flag wins over the file, the file over the defaults.
#[derive(Debug, Args, Default)]
pub struct TrainArgs {
    /// TOML file with any of the options below.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue an interrupted run in --out from its last saved state.
    #[arg(long)]
    pub resume: bool,
    /// Checkpoint directory or Hugging Face hub id (e.g. dmis-lab/biobert-v1.1).
    #[arg(long)]
    pub base: Option<String>,
    /// Hub endpoint for a hub id (default: $HF_ENDPOINT or https://huggingface.co).
    #[arg(long)]
    pub hub_endpoint: Option<String>,
    /// Hub revision (branch, tag or commit).
    #[arg(long)]
    pub revision: Option<String>,
    /// Training notes (CSV, TSV or JSONL). Without --val it is split (seeded, stratified).
    #[arg(long)]
    pub train: Option<PathBuf>,
    #[arg(long)]
    pub val: Option<PathBuf>,
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// [default: text]
    #[arg(long)]
    pub text_col: Option<String>,
    /// [default: label]
    #[arg(long)]
    pub label_col: Option<String>,
    #[arg(long)]
    pub id_col: Option<String>,
    /// Rows sharing this column's value stay in one split (e.g. a patient id).
    #[arg(long)]
    pub group_col: Option<String>,
    /// Separator of labels in a multi-label cell [default: |].
    #[arg(long)]
    pub label_sep: Option<String>,
    /// Binary: the positive outcome's label [default: the second in sorted order].
    #[arg(long)]
    pub positive_label: Option<String>,
    /// Share of rows for validation when splitting [default: 0.1].
    #[arg(long)]
    pub val_ratio: Option<f64>,
    /// Share of rows for test when splitting [default: 0.1].
    #[arg(long)]
    pub test_ratio: Option<f64>,
    /// Make unusable rows an error instead of a reported skip.
    #[arg(long)]
    pub strict: bool,
    /// Output directory: best/, report.{json,html,md}, log.jsonl, config.toml, state/.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace PHI (dates, phones, faxes, e-mails, URLs, MRN-like ids, ages over 89) before tokenising.
    #[arg(long)]
    pub scrub: bool,
    /// File of names (one per line) to scrub too; implies --scrub.
    #[arg(long)]
    pub scrub_names: Option<PathBuf>,
    /// [default: 4]
    #[arg(long)]
    pub epochs: Option<usize>,
    /// [default: 16]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimiser step [default: 1].
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Batches of random items instead of length-grouped ones (training pads each batch to
    /// its longest item; grouping makes batches of similar lengths, then shuffles them).
    #[arg(long)]
    pub no_group_by_length: bool,
    /// Peak learning rate [default: 2e-5].
    #[arg(long)]
    pub lr: Option<f64>,
    /// [default: 0.01]
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Share of optimiser steps spent warming up [default: 0.1].
    #[arg(long)]
    pub warmup_ratio: Option<f64>,
    /// Warm-up steps (wins over --warmup-ratio).
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// [default: 1.0]
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// Tokens per window [default: 128; binary 512].
    #[arg(long)]
    pub max_seq_len: Option<usize>,
    /// Tokens shared by consecutive windows [default: max-seq-len / 8].
    #[arg(long)]
    pub stride: Option<usize>,
    /// truncate or windows [default: windows for binary, else truncate].
    #[arg(long)]
    pub long_notes: Option<String>,
    /// Hidden and attention dropout [default: the checkpoint's].
    #[arg(long)]
    pub dropout: Option<f64>,
    /// [default: 42]
    #[arg(long)]
    pub seed: Option<u64>,
    /// none, balanced, or comma-separated weights in sorted label order [default: none].
    #[arg(long)]
    pub class_weights: Option<String>,
    /// cpu, cuda, or auto (CUDA when this binary has it and the machine has a GPU, else the CPU) [default: cpu].
    #[arg(long)]
    pub device: Option<String>,
    /// f32 or bf16: matmuls in bf16 as PyTorch autocast, f32 master weights (CUDA; emulated and slower on the CPU) [default: f32].
    #[arg(long)]
    pub precision: Option<String>,
    /// Evaluate every N optimiser steps [default: once per epoch].
    #[arg(long)]
    pub eval_steps: Option<usize>,
    /// Selects the best checkpoint: macro_f1, accuracy, roc_auc, pr_auc or loss [default: macro_f1; binary roc_auc].
    #[arg(long)]
    pub metric: Option<String>,
    /// Stop after N evaluations without a better metric.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Save a resumable state every N optimiser steps (always after each evaluation).
    #[arg(long)]
    pub save_steps: Option<usize>,
    /// Binary: choose the decision threshold on validation for this sensitivity, e.g. 0.9.
    #[arg(long)]
    pub target_sensitivity: Option<f64>,
    /// Flag predictions below this confidence as uncertain.
    #[arg(long)]
    pub min_confidence: Option<f64>,
    /// Binary / multi-label decision threshold [default: 0.5].
    #[arg(long)]
    pub threshold: Option<f64>,
    /// What the classifier layer reads: cls (raw [CLS]), mean (masked mean of the token
    /// states) or pooler (tanh(pooler·[CLS]), as BertForSequenceClassification) [default:
    /// cls for the probe, pooler for fine-tuning].
    #[arg(long)]
    pub features: Option<String>,
    /// Probe: scikit-learn's C (inverse L2 strength), or auto to pick it on validation from
    /// 0.001 … 1000 [default: 1.0].
    #[arg(long)]
    pub probe_c: Option<String>,
    /// Probe: standardise the features first (StandardScaler), folded into the exported head.
    #[arg(long)]
    pub probe_standardize: bool,
    /// Classify: skip the frozen-encoder probe fitted beside fine-tuning for the report.
    #[arg(long)]
    pub no_baseline_probe: bool,
    /// Embed: mnrl (in-batch negatives), cosine or contrastive [default: mnrl].
    #[arg(long)]
    pub loss: Option<String>,
    /// Embed, MNRL: similarity scale = 1 / temperature [default: 20].
    #[arg(long)]
    pub scale: Option<f64>,
    /// Embed, contrastive: margin on the cosine distance [default: 0.5].
    #[arg(long)]
    pub margin: Option<f64>,
    /// Embed: mean or cls [default: mean].
    #[arg(long)]
    pub pooling: Option<String>,
    /// Embed: the pair's first text column [default: text1].
    #[arg(long)]
    pub text1_col: Option<String>,
    /// Embed: the pair's second text column [default: text2].
    #[arg(long)]
    pub text2_col: Option<String>,
    /// Embed: make pairs from labelled rows (--text-col and this column; several values per
    /// row split by --label-sep): rows sharing a value are positives, others negatives.
    #[arg(long)]
    pub pairs_from: Option<String>,
    /// Embed, with --pairs-from: each anchor's N most similar rows under the base model that
    /// share none of its values are its negatives [default: one random such row].
    #[arg(long)]
    pub hard_negatives: Option<usize>,
    /// NER: the tags' scheme, iob2 or bioes [default: iob2].
    #[arg(long)]
    pub tag_scheme: Option<String>,
    /// NER: which subtokens of a word carry its tag: first (the rest are ignored by the loss)
    /// or all (`B-` continued as `I-`) [default: first].
    #[arg(long)]
    pub label_subtokens: Option<String>,
    /// NER: conll, word-jsonl ({"tokens","ner_tags"}) or span-jsonl ({"text","entities"});
    /// default from the extension and the first record.
    #[arg(long)]
    pub tag_format: Option<String>,
}

/// `bedside eval --model … --data …` (classification), or `bedside eval embed …`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalCommand {
    #[command(subcommand)]
    pub command: Option<EvalSubcommand>,
    #[command(flatten)]
    pub args: Option<EvalArgs>,
}

#[derive(Debug, Subcommand)]
pub enum EvalSubcommand {
    /// Score an embedding model: Spearman/Pearson on pairs, MRR/nDCG/Recall/MAP on retrieval.
    Embed(eval_embed::EvalEmbedArgs),
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory (its best/), a checkpoint directory with a head, or a bundle.
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled notes (CSV, TSV or JSONL).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "text")]
    pub text_col: String,
    #[arg(long, default_value = "label")]
    pub label_col: String,
    /// Separator of labels in a multi-label cell.
    #[arg(long, default_value = "|")]
    pub label_sep: String,
    /// Where report.{json,html,md} go [default: <run>/eval-<data name>, or ./eval-<data name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Binary: choose the threshold on this data for the sensitivity (else the model's).
    #[arg(long)]
    pub target_sensitivity: Option<f64>,
    /// Flag predictions below this confidence as uncertain [default: the model's].
    #[arg(long)]
    pub min_confidence: Option<f64>,
    /// Make unusable rows an error instead of a reported skip.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A training run directory (its best/), a Hugging Face checkpoint directory or a bundle.
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled notes for the parity report [default: the run's splits/test.jsonl]; for an
    /// embedding model, a pairs file (text1,text2,label).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Also write a Hugging Face directory (transformers loads it) here.
    #[arg(long)]
    pub hf_out: Option<PathBuf>,
    /// Storage of the large matrices: f32, f16, q8_0 or q4_0.
    #[arg(long, default_value = "q8_0")]
    pub quant: String,
    #[arg(long)]
    pub out: PathBuf,
    /// Print the parity report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
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
    #[command(flatten)]
    pub backend: BackendArgs,
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
    #[command(flatten)]
    pub backend: BackendArgs,
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

/// transformers' `aggregation_strategy`: how token labels become entities.
fn parse_entity_aggregation(s: &str) -> Result<EntityAggregation, String> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// Bundle file or Hugging Face checkpoint directory with a token-classification head.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Print one JSON object per note (JSON Lines): {"entities": [{"label", "start", "end",
    /// "score"}]} with UTF-8 byte offsets, plus "id" with --input.
    #[arg(long)]
    pub json: bool,
    /// none, simple, first, average or max [default: the model's, usually simple].
    #[arg(long, value_parser = parse_entity_aggregation)]
    pub aggregation: Option<EntityAggregation>,
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
pub struct DeidArgs {
    /// Bundle file or Hugging Face checkpoint directory with a token-classification head.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// CSV file of notes (header row required).
    #[arg(long)]
    pub input: PathBuf,
    /// The redacted CSV: the input's columns and rows, the text column de-identified
    /// (replaced atomically: a crash leaves the old file or the whole new one).
    #[arg(long)]
    pub out: PathBuf,
    /// Also replace what the PHI patterns find (dates, phones, faxes, e-mails, URLs, MRN-like
    /// ids, ages over 89), as `train --scrub` does.
    #[arg(long)]
    pub rules: bool,
    /// Column of --input that holds the note text.
    #[arg(long, default_value = "text")]
    pub text_col: String,
    /// Column of --input with the note id used in the audit (optional).
    #[arg(long, default_value = "id")]
    pub id_col: String,
    /// none, simple, first, average or max [default: the model's, usually simple].
    #[arg(long, value_parser = parse_entity_aggregation)]
    pub aggregation: Option<EntityAggregation>,
    /// Also write the counts per label, overall and per note id, as JSON (counts only).
    #[arg(long)]
    pub audit: Option<PathBuf>,
}

/// Where the encoder runs (`embed`, `classify`, `tag`, `deid`, `similarity`, `search`).
#[derive(Debug, Args, Clone)]
pub struct BackendArgs {
    /// auto: WebGPU on a hardware adapter whose limits fit the model, else the CPU;
    /// webgpu: any WebGPU adapter (software ones too) or fail; cpu: the CPU path.
    #[arg(long, default_value = "auto", value_parser = ["auto", "webgpu", "cpu"])]
    pub backend: String,
    /// How the CPU path runs q8_0/q4_0 bundle weights: integer (fast: int8 dot products with
    /// 8-bit block-quantized activations, the same bits as the simd128 browser build), relaxed
    /// (the relaxed-SIMD browser build's bits, Chrome/Edge: q8_0 activations in 7 bits; slower
    /// here) or dequantized (f32, the reference numerics that the WebGPU path computes).
    #[arg(long, default_value = "integer", value_parser = ["integer", "relaxed", "dequantized"])]
    pub quantized_matmul: String,
}

#[derive(Debug, Args)]
pub struct SimilarityArgs {
    /// Bundle file or Hugging Face checkpoint directory.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
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
