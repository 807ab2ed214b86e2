//! `bedside train embed`: fine-tunes a checkpoint into a sentence encoder, the
//! sentence-transformers way: mean pooling (or [CLS]), L2-normalised output, and one of three
//! losses — multiple-negatives ranking with in-batch negatives (MNRL, the strongest for
//! retrieval), cosine-similarity regression, or the contrastive loss with a margin.
//!
//! Training data is one of (told apart by the file's columns):
//! * **pairs** `text1,text2,label` (0/1 or a similarity in [0, 1]);
//! * **triplets** `anchor,positive,negative`: MNRL ranks the positive above the batch's other
//!   positives and every negative (sentence-transformers' MNRL on (a, p, n)); cosine and
//!   contrastive train (a, p) as 1 and (a, n) as 0;
//! * **labelled rows** (`pairs_from`): rows sharing a value of that column (several per row
//!   with `label_separator`) are positives; the negative of an anchor is a random row sharing
//!   none of its values, or (`hard_negatives` N) the N rows most similar to it under the base
//!   model that share none, mined once before training like sentence-transformers'
//!   `mine_hard_negatives`. In MNRL batches, candidates that share a value with an anchor are
//!   not counted as its negatives. Seeded: the same seed generates the same pairs.
//!
//! The loop is the classifiers' (fit.rs): AdamW with the linear schedule, clipping, gradient
//! accumulation, seeded batch order and dropout, `--resume` from `<out>/state/`. Validation
//! Spearman (cosine vs the gold label) picks the best checkpoint, written as a
//! sentence-transformers directory (modules.json, 1_Pooling, 2_Normalize) so `export`,
//! `embed`, `search` and `eval embed` read it with the right pooling.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::model::{Mode, SplitMix64};
use candle_core::{Device, Tensor, D};
use serde::{Deserialize, Serialize};

use super::classifier::{ModelOptions, TrainableClassifier};
use super::config::TrainConfig;
use super::fit::{fit, Evaluated, Learner, RunControl};
use super::run::{device, say_how_bf16_runs};
use crate::data::{Dataset, DatasetError, LoadOptions, ProblemKind, RowProblem};
use crate::durable;
use crate::eval::embedding::{column_names, load_pairs, load_triplets, spearman, PairsOptions, TRIPLET_COLUMNS};

/// Texts per forward pass when embedding for validation and mining.
const EVAL_BATCH: usize = 64;
/// Anchors per similarity block when mining hard negatives.
const MINE_BLOCK: usize = 64;
/// Added to the MNRL score of an in-batch candidate that shares a value with the anchor: it
/// is not a negative. exp(−1e4) is 0 in f32, and the value stays finite for the backward pass.
const NOT_A_NEGATIVE: f32 = -1e4;
/// Seeds of the generated pairs (+0 training, +1 validation), far from the epoch orders'
/// seed + epoch.
const PAIRS_SEED: u64 = 0x7061_6972_735f_6672;
/// Random draws before a negative is searched for row by row.
const NEGATIVE_TRIES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedLoss {
    Mnrl,
    Cosine,
    Contrastive,
}

impl EmbedLoss {
    pub fn parse(s: &str) -> Result<EmbedLoss> {
        Ok(match s {
            "mnrl" => EmbedLoss::Mnrl,
            "cosine" => EmbedLoss::Cosine,
            "contrastive" => EmbedLoss::Contrastive,
            other => bail!("unknown loss {other:?}: use mnrl, cosine or contrastive"),
        })
    }
}

/// What a data file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `text1,text2,label`.
    Pairs,
    /// `anchor,positive,negative`.
    Triplets,
    /// A text and a value column (`pairs_from`): the pairs are generated.
    Labelled,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Pairs => "pairs",
            Source::Triplets => "triplets",
            Source::Labelled => "labelled rows",
        }
    }
}

/// One training or validation example, as indices into [`Examples::texts`].
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub anchor: usize,
    pub positive: usize,
    /// Texts that should sit further from the anchor than the positive.
    pub negatives: Vec<usize>,
    /// Of the anchor–positive pair: 0/1 or a similarity in [0, 1] (1 for triplets and
    /// generated pairs).
    pub label: f64,
}

/// The examples of one file. Each text is stored (and tokenised) once.
#[derive(Debug, Clone, PartialEq)]
pub struct Examples {
    pub file: PathBuf,
    pub source: Source,
    pub texts: Vec<String>,
    /// The 1-based line of each text.
    pub lines: Vec<usize>,
    /// Labelled rows: each text's values, as sorted ids.
    pub values: Option<Vec<Vec<u32>>>,
    pub examples: Vec<Example>,
}

impl Examples {
    fn new(file: &Path, source: Source) -> Examples {
        Examples { file: file.into(), source, texts: Vec::new(), lines: Vec::new(), values: None, examples: Vec::new() }
    }

    fn push_text(&mut self, text: String, line: usize) -> usize {
        self.texts.push(text);
        self.lines.push(line);
        self.texts.len() - 1
    }

    /// Every scored pair (text, text, label): each anchor with its positive and its label,
    /// and with each of its negatives as 0.
    pub fn pairs(&self) -> Vec<(usize, usize, f64)> {
        let mut pairs = Vec::with_capacity(self.examples.len());
        for e in &self.examples {
            pairs.push((e.anchor, e.positive, e.label));
            pairs.extend(e.negatives.iter().map(|&n| (e.anchor, n, 0.0)));
        }
        pairs
    }
}

/// What `train embed` reads: the training examples, the validation examples (scored as
/// pairs) and the rows left out.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedData {
    pub train: Examples,
    pub val: Option<Examples>,
    /// Rows that could not be used (labelled rows only: pairs and triplets files are strict).
    pub problems: Vec<RowProblem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedEpoch {
    pub epoch: usize,
    pub step: usize,
    pub train_loss: f64,
    pub val_spearman: Option<f64>,
    pub samples_per_second: f64,
    pub best: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EmbedReport {
    pub loss: String,
    pub source: Source,
    pub pairs_from: Option<String>,
    pub hard_negatives: Option<usize>,
    /// Training items per epoch: anchors with their positive and negatives (MNRL), or pairs.
    pub train_examples: usize,
    pub val_pairs: usize,
    pub best_epoch: Option<usize>,
    pub val_spearman: Option<f64>,
    pub history: Vec<EmbedEpoch>,
    pub problems: Vec<RowProblem>,
}

pub struct EmbedResult {
    pub best_dir: PathBuf,
    /// `None` when the run stopped at `stop_after_steps` (no report was written).
    pub report: Option<EmbedReport>,
}

impl EmbedResult {
    pub fn interrupted(&self) -> bool {
        self.report.is_none()
    }
}

// =============================================================================================
// Data
// =============================================================================================

/// Reads the training file and the validation file (if any) that `config` names.
pub fn prepare_embed(config: &TrainConfig) -> Result<EmbedData> {
    let mut problems = Vec::new();
    let train = read_examples(&config.train, config, true, &mut problems)?;
    let val = match &config.val {
        Some(path) => Some(read_examples(path, config, false, &mut problems)?),
        None => None,
    };
    Ok(EmbedData { train, val, problems })
}

/// Training with `pairs_from` reads labelled rows; otherwise the columns tell: `anchor`,
/// `positive`, `negative` make triplets, the `pairs_from` column labelled rows, else pairs.
fn source_of(path: &Path, config: &TrainConfig, train: bool) -> Result<Source> {
    if train && config.pairs_from.is_some() {
        return Ok(Source::Labelled);
    }
    let columns = column_names(path, None)?;
    let has = |c: &str| columns.iter().any(|n| n == c);
    Ok(if TRIPLET_COLUMNS.iter().all(|c| has(c)) {
        Source::Triplets
    } else if config.pairs_from.as_deref().is_some_and(|c| has(c) && !has(&config.text1_col)) {
        Source::Labelled
    } else {
        Source::Pairs
    })
}

fn read_examples(path: &Path, config: &TrainConfig, train: bool, problems: &mut Vec<RowProblem>) -> Result<Examples> {
    let set = match source_of(path, config, train)? {
        Source::Pairs => {
            let options = PairsOptions {
                text1_col: config.text1_col.clone(),
                text2_col: config.text2_col.clone(),
                label_col: config.label_col.clone(),
                ..Default::default()
            };
            let mut set = Examples::new(path, Source::Pairs);
            for p in load_pairs(path, &options)? {
                let anchor = set.push_text(p.text1, p.line);
                let positive = set.push_text(p.text2, p.line);
                set.examples.push(Example { anchor, positive, negatives: Vec::new(), label: p.label });
            }
            set
        }
        Source::Triplets => {
            let mut set = Examples::new(path, Source::Triplets);
            for t in load_triplets(path, None)? {
                let anchor = set.push_text(t.anchor, t.line);
                let positive = set.push_text(t.positive, t.line);
                let negative = set.push_text(t.negative, t.line);
                set.examples.push(Example { anchor, positive, negatives: vec![negative], label: 1.0 });
            }
            set
        }
        Source::Labelled => {
            let column = config.pairs_from.as_deref().context("pairs_from")?;
            let seed = config.seed.wrapping_add(PAIRS_SEED).wrapping_add(u64::from(!train));
            labelled_pairs(path, config, column, seed, problems)?
        }
    };
    Ok(set)
}

/// Loads labelled rows with the data loader (text column, `column` as the label, values split
/// by `label_separator`) and pairs them: each usable row is an anchor whose positive is a
/// random row sharing a random one of its values, and whose negative is a random row sharing
/// none. Rows no other row shares a value with are reported (`unpaired`; `strict`: an error).
fn labelled_pairs(
    path: &Path,
    config: &TrainConfig,
    column: &str,
    seed: u64,
    problems: &mut Vec<RowProblem>,
) -> Result<Examples> {
    let options = LoadOptions {
        text_col: config.text_col.clone(),
        label_col: column.to_string(),
        label_separator: Some(config.label_separator.clone()),
        strict: config.strict,
        ..Default::default()
    };
    let mut data = Dataset::load(path, &options).with_context(|| format!("loading {}", path.display()))?;
    let mut found = std::mem::take(&mut data.problems);
    let mut ids: HashMap<String, u32> = HashMap::new();
    let row_values: Vec<Vec<u32>> = data
        .examples
        .iter()
        .map(|e| {
            let mut v: Vec<u32> = e
                .labels
                .iter()
                .map(|l| {
                    let next = ids.len() as u32;
                    *ids.entry(l.clone()).or_insert(next)
                })
                .collect();
            v.sort_unstable();
            v
        })
        .collect();
    let mut rows_with = vec![0usize; ids.len()];
    for &v in row_values.iter().flatten() {
        rows_with[v as usize] += 1;
    }
    let mut set = Examples::new(path, Source::Labelled);
    let mut values = Vec::new();
    for (example, v) in data.examples.into_iter().zip(row_values) {
        if v.iter().all(|&x| rows_with[x as usize] < 2) {
            let problem = RowProblem {
                file: path.into(),
                line: example.line,
                kind: ProblemKind::Unpaired,
                message: format!("no other row shares a value of column `{column}`"),
            };
            if config.strict {
                return Err(DatasetError::Row(problem).into());
            }
            found.push(problem);
            continue;
        }
        set.push_text(example.text, example.line);
        values.push(v);
    }
    found.sort_by_key(|p| p.line);
    problems.extend(found);

    let mut rows_of: Vec<Vec<usize>> = vec![Vec::new(); ids.len()];
    for (row, v) in values.iter().enumerate() {
        for &x in v {
            rows_of[x as usize].push(row);
        }
    }
    let n = values.len();
    ensure!(n >= 2, "{}: {n} usable rows with a value in column `{column}`: pairs need 2 or more", path.display());
    let mut rng = SplitMix64::new(seed);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    for (anchor, v) in values.iter().enumerate() {
        let shared: Vec<u32> = v.iter().copied().filter(|&x| rows_of[x as usize].len() >= 2).collect();
        let rows = &rows_of[shared[rng.below(shared.len())] as usize];
        // Uniform over the value's other rows: `anchor` is in `rows` exactly once.
        let k = rng.below(rows.len() - 1);
        let positive = if rows[k] == anchor { rows[rows.len() - 1] } else { rows[k] };
        let negative = random_negative(anchor, &values, &order, &mut rng);
        set.examples.push(Example { anchor, positive, negatives: negative.into_iter().collect(), label: 1.0 });
    }
    ensure!(
        set.examples.iter().any(|e| !e.negatives.is_empty()),
        "{}: column `{column}`: every usable row shares a value with every other, so there are no negatives",
        path.display()
    );
    set.values = Some(values);
    Ok(set)
}

fn share(a: &[u32], b: &[u32]) -> bool {
    a.iter().any(|x| b.binary_search(x).is_ok())
}

/// A random row sharing none of `anchor`'s values: a few uniform draws, then (when most rows
/// share one) the first such row after a random place in the seeded `order`; `None` when no
/// row can be its negative.
fn random_negative(anchor: usize, values: &[Vec<u32>], order: &[usize], rng: &mut SplitMix64) -> Option<usize> {
    let n = values.len();
    for _ in 0..NEGATIVE_TRIES {
        let j = rng.below(n);
        if !share(&values[anchor], &values[j]) {
            return Some(j);
        }
    }
    let start = rng.below(n);
    (0..n).map(|k| order[(start + k) % n]).find(|&j| !share(&values[anchor], &values[j]))
}

/// Sentence embeddings of `ids` under the current weights, dropout off: [texts, hidden].
fn embed_all(model: &TrainableClassifier, ids: &[Vec<u32>], mean: bool) -> Result<Tensor> {
    let mut chunks = Vec::with_capacity(ids.len().div_ceil(EVAL_BATCH));
    for chunk in ids.chunks(EVAL_BATCH) {
        let batch: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        chunks.push(model.embeddings(&batch, Mode::Eval, mean)?);
    }
    Ok(Tensor::cat(&chunks, 0)?)
}

/// For each example, the `n` texts most similar to its anchor under `model` (dropout off)
/// that share none of the anchor's values and are not the anchor's or the positive's text;
/// ties go to the earlier row. `ids` are the encoded `set.texts`.
pub fn mine_hard_negatives(
    model: &TrainableClassifier,
    set: &Examples,
    ids: &[Vec<u32>],
    n: usize,
    mean: bool,
) -> Result<Vec<Vec<usize>>> {
    let values = set.values.as_ref().context("hard negatives need labelled rows")?;
    let all = embed_all(model, ids, mean)?;
    let all_t = all.t()?.contiguous()?;
    let mut mined = Vec::with_capacity(set.examples.len());
    for block in set.examples.chunks(MINE_BLOCK) {
        let anchors: Vec<u32> = block.iter().map(|e| e.anchor as u32).collect();
        let index = Tensor::from_vec(anchors, block.len(), all.device())?;
        let scores = all.index_select(&index, 0)?.matmul(&all_t)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
        for (e, row) in block.iter().zip(scores) {
            let (anchor_text, positive_text) = (&set.texts[e.anchor], &set.texts[e.positive]);
            let mut best: Vec<(f32, usize)> = Vec::with_capacity(n + 1);
            for (j, &score) in row.iter().enumerate() {
                if !score.is_finite()
                    || (best.len() == n && score <= best[n - 1].0)
                    || share(&values[e.anchor], &values[j])
                    || &set.texts[j] == anchor_text
                    || &set.texts[j] == positive_text
                {
                    continue;
                }
                let at = best.partition_point(|&(s, _)| s >= score);
                best.insert(at, (score, j));
                best.truncate(n);
            }
            mined.push(best.into_iter().map(|(_, j)| j).collect());
        }
    }
    Ok(mined)
}

fn encode_texts(model: &TrainableClassifier, set: &Examples) -> Result<Vec<Vec<u32>>> {
    (set.texts.iter().zip(&set.lines).enumerate())
        .map(|(i, (text, line))| model.encode(text, i).with_context(|| format!("{}:{line}", set.file.display())))
        .collect()
}

/// What one epoch trains on: MNRL learns from positives (label ≥ 0.5) with their negatives,
/// the rest of the batch being negatives too; cosine and contrastive from every pair.
fn training_items(set: &Examples, loss: EmbedLoss) -> Vec<Example> {
    match loss {
        EmbedLoss::Mnrl => set.examples.iter().filter(|e| e.label >= 0.5).cloned().collect(),
        EmbedLoss::Cosine | EmbedLoss::Contrastive => set
            .pairs()
            .into_iter()
            .map(|(anchor, positive, label)| Example { anchor, positive, negatives: Vec::new(), label })
            .collect(),
    }
}

// =============================================================================================
// Training
// =============================================================================================

/// Cosine of each (text1, text2) pair under the current weights, dropout off.
fn pair_cosines(model: &TrainableClassifier, pairs: &[(Vec<u32>, Vec<u32>)], mean: bool) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(EVAL_BATCH) {
        let a: Vec<&[u32]> = chunk.iter().map(|(a, _)| a.as_slice()).collect();
        let b: Vec<&[u32]> = chunk.iter().map(|(_, b)| b.as_slice()).collect();
        let ea = model.embeddings(&a, Mode::Eval, mean)?;
        let eb = model.embeddings(&b, Mode::Eval, mean)?;
        let cos = (ea * eb)?.sum(1)?.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
        out.extend(cos.into_iter().map(f64::from));
    }
    Ok(out)
}

/// The loss of (a, b) pairs of normalised embeddings against their labels.
fn pair_loss(loss: EmbedLoss, a: &Tensor, b: &Tensor, labels: &[f32], config: &TrainConfig) -> Result<Tensor> {
    let cos = (a * b)?.sum(D::Minus1)?;
    let y = Tensor::from_slice(labels, labels.len(), a.device())?;
    match loss {
        EmbedLoss::Cosine => Ok((cos - y)?.sqr()?.mean_all()?),
        // sentence-transformers' ContrastiveLoss on the cosine distance d = 1 − cos:
        // ½·[y·d² + (1 − y)·max(0, margin − d)²].
        EmbedLoss::Contrastive => {
            let d = (cos.neg()? + 1.0)?;
            let positive = (&y * d.sqr()?)?;
            let negative = ((y.neg()? + 1.0)? * (d.neg()? + config.margin)?.relu()?.sqr()?)?;
            Ok(((positive + negative)?.mean_all()? * 0.5)?)
        }
        EmbedLoss::Mnrl => bail!("MNRL ranks candidates; it has no pair loss"),
    }
}

/// An embedding run's part of the shared loop (fit.rs).
struct Embedding<'a> {
    ckpt: &'a Checkpoint,
    config: &'a TrainConfig,
    loss: EmbedLoss,
    mean: bool,
    /// The training texts, encoded, and (labelled rows) their values.
    ids: Vec<Vec<u32>>,
    values: Option<Vec<Vec<u32>>>,
    items: Vec<Example>,
    val_pairs: Vec<(Vec<u32>, Vec<u32>)>,
    val_labels: Vec<f64>,
    best_dir: &'a Path,
    on_eval: &'a mut dyn FnMut(&EmbedEpoch),
}

impl Embedding<'_> {
    /// MNRL: each anchor's own positive against every other positive of the batch and every
    /// negative (sentence-transformers' MultipleNegativesRankingLoss on (a, p, n…)), similarity
    /// × scale. With labelled rows, candidates sharing a value with the anchor are left out.
    fn ranking_loss(&self, model: &TrainableClassifier, batch: &[usize], mode: Mode) -> Result<Option<Tensor>> {
        let items: Vec<&Example> = batch.iter().map(|&i| &self.items[i]).collect();
        let mut candidates: Vec<usize> = items.iter().map(|e| e.positive).collect();
        candidates.extend(items.iter().flat_map(|e| e.negatives.iter().copied()));
        if candidates.len() < 2 {
            return Ok(None); // one pair and no negative: nothing to rank
        }
        let anchors: Vec<&[u32]> = items.iter().map(|e| self.ids[e.anchor].as_slice()).collect();
        let others: Vec<&[u32]> = candidates.iter().map(|&c| self.ids[c].as_slice()).collect();
        let ea = model.embeddings(&anchors, mode, self.mean)?;
        let ec = model.embeddings(&others, mode, self.mean)?;
        let mut scores = (ea.matmul(&ec.t()?)? * self.config.scale)?;
        if let Some(values) = &self.values {
            let mask: Vec<f32> = items
                .iter()
                .enumerate()
                .flat_map(|(r, e)| {
                    candidates.iter().enumerate().map(move |(c, &t)| {
                        if c != r && share(&values[e.anchor], &values[t]) {
                            NOT_A_NEGATIVE
                        } else {
                            0.0
                        }
                    })
                })
                .collect();
            if mask.iter().any(|&m| m != 0.0) {
                scores = (scores + Tensor::from_vec(mask, (items.len(), candidates.len()), model.device())?)?;
            }
        }
        let targets: Vec<u32> = (0..items.len() as u32).collect();
        Ok(Some(model.loss(&scores, &targets, None)?))
    }
}

impl Learner for Embedding<'_> {
    type Point = EmbedEpoch;
    /// The validation Spearman, when defined.
    type Scores = Option<f64>;

    fn items(&self) -> usize {
        self.items.len()
    }

    /// Random batches always: with MNRL the batch is the set of negatives, and batches of one
    /// length would train a different task than sentence-transformers' random ones.
    fn lengths(&self) -> Option<Vec<usize>> {
        None
    }

    fn loss(&self, model: &TrainableClassifier, batch: &[usize], mode: Mode) -> Result<Option<Tensor>> {
        if self.loss == EmbedLoss::Mnrl {
            return self.ranking_loss(model, batch, mode);
        }
        let a: Vec<&[u32]> = batch.iter().map(|&i| self.ids[self.items[i].anchor].as_slice()).collect();
        let b: Vec<&[u32]> = batch.iter().map(|&i| self.ids[self.items[i].positive].as_slice()).collect();
        let labels: Vec<f32> = batch.iter().map(|&i| self.items[i].label as f32).collect();
        let ea = model.embeddings(&a, mode, self.mean)?;
        let eb = model.embeddings(&b, mode, self.mean)?;
        Ok(Some(pair_loss(self.loss, &ea, &eb, &labels, self.config)?))
    }

    fn evaluate(&mut self, model: &TrainableClassifier) -> Result<(Option<f64>, Option<f64>)> {
        if self.val_pairs.is_empty() {
            return Ok((None, None)); // without validation pairs the latest weights are the best
        }
        let rho = spearman(&pair_cosines(model, &self.val_pairs, self.mean)?, &self.val_labels)?;
        Ok((Some(rho.unwrap_or(f64::NEG_INFINITY)), rho))
    }

    fn better(&self, candidate: f64, best: f64) -> bool {
        candidate > best
    }

    fn save_best(&self, model: &TrainableClassifier) -> Result<()> {
        save_encoder(model, self.ckpt, self.config, self.best_dir)
    }

    fn record(&mut self, at: &Evaluated, val_spearman: Option<f64>) -> Result<(serde_json::Value, EmbedEpoch)> {
        let entry = EmbedEpoch {
            epoch: at.epoch,
            step: at.step,
            train_loss: at.train_loss,
            val_spearman,
            samples_per_second: at.samples_per_second,
            best: at.best,
        };
        (self.on_eval)(&entry);
        Ok((serde_json::to_value(&entry)?, entry))
    }
}

/// Writes the encoder as a sentence-transformers directory, atomically.
fn save_encoder(model: &TrainableClassifier, ckpt: &Checkpoint, config: &TrainConfig, dir: &Path) -> Result<()> {
    durable::replace_dir_atomic(dir, |partial| write_encoder(model, ckpt, config, partial))
}

fn write_encoder(model: &TrainableClassifier, ckpt: &Checkpoint, config: &TrainConfig, partial: &Path) -> Result<()> {
    std::fs::create_dir_all(partial.join("1_Pooling"))?;
    std::fs::create_dir_all(partial.join("2_Normalize"))?;
    let weights = model.snapshot()?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, w) in weights.iter().filter(|(n, _)| !n.starts_with("classifier.")) {
        tensors.insert(name.clone(), w.to_f32()?.contiguous()?);
    }
    candle_core::safetensors::save(&tensors, partial.join("model.safetensors"))?;
    let mut bert_config = serde_json::to_value(model.config())?;
    bert_config["architectures"] = serde_json::json!(["BertModel"]);
    bert_config["model_type"] = serde_json::json!("bert");
    bert_config["id2label"] = serde_json::Value::Null;
    std::fs::write(partial.join("config.json"), serde_json::to_string_pretty(&bert_config)?)?;
    std::fs::write(partial.join("tokenizer.json"), &ckpt.tokenizer_json)?;
    let special = &ckpt.special_tokens;
    let max_len = model.window().max_len();
    let json = |v: serde_json::Value| serde_json::to_string_pretty(&v);
    std::fs::write(
        partial.join("tokenizer_config.json"),
        json(serde_json::json!({"cls_token": special.cls, "sep_token": special.sep, "pad_token": special.pad,
            "tokenizer_class": "BertTokenizerFast", "model_max_length": max_len}))?,
    )?;
    std::fs::write(
        partial.join("modules.json"),
        json(serde_json::json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]))?,
    )?;
    let mean = config.pooling == "mean";
    std::fs::write(
        partial.join("1_Pooling/config.json"),
        json(serde_json::json!({"word_embedding_dimension": model.config().hidden_size,
            "pooling_mode_cls_token": !mean, "pooling_mode_mean_tokens": mean,
            "pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": false}))?,
    )?;
    std::fs::write(
        partial.join("sentence_bert_config.json"),
        json(serde_json::json!({"max_seq_length": max_len, "do_lower_case": false}))?,
    )?;
    Ok(())
}

/// Fine-tunes `ckpt` into a sentence encoder on `data` (from [`prepare_embed`]). Writes
/// `<out>/best/`, `<out>/log.jsonl`, `<out>/report.json`, `<out>/config.toml` and
/// `<out>/state/` (for `control.resume`).
pub fn train_embed(
    ckpt: &Checkpoint,
    config: &TrainConfig,
    mut data: EmbedData,
    control: &RunControl,
    on_eval: &mut dyn FnMut(&EmbedEpoch),
) -> Result<EmbedResult> {
    config.validate()?;
    let loss = EmbedLoss::parse(&config.loss)?;
    let device = device(&config.device)?;
    say_how_bf16_runs(config, &device)?;
    let model_options =
        ModelOptions { dropout: config.dropout, ..ModelOptions::new(config.max_seq_len.unwrap_or(128)) };
    let model = TrainableClassifier::new(ckpt, 1, model_options, config.seed, &device)?;
    let mean = config.pooling == "mean";
    let ids = encode_texts(&model, &data.train)?;
    // Mined before any step (and again, identically, on --resume): the base model's view.
    if let Some(n) = config.hard_negatives {
        let mined = mine_hard_negatives(&model, &data.train, &ids, n, mean)?;
        for (example, negatives) in data.train.examples.iter_mut().zip(mined) {
            example.negatives = negatives;
        }
    }
    let items = training_items(&data.train, loss);
    ensure!(items.len() >= 2, "{}: fewer than 2 usable training examples", data.train.file.display());
    let (mut val_pairs, mut val_labels) = (Vec::new(), Vec::new());
    if let Some(val) = &data.val {
        let val_ids = encode_texts(&model, val)?;
        for (a, b, label) in val.pairs() {
            val_pairs.push((val_ids[a].clone(), val_ids[b].clone()));
            val_labels.push(label);
        }
    }
    let best_dir = config.out.join("best");
    let train_examples = items.len();
    let mut learner = Embedding {
        ckpt,
        config,
        loss,
        mean,
        ids,
        values: data.train.values.take(),
        items,
        val_pairs,
        val_labels,
        best_dir: &best_dir,
        on_eval,
    };
    let Some(state) = fit(&model, config, control, &mut learner)? else {
        return Ok(EmbedResult { best_dir, report: None });
    };
    let report = EmbedReport {
        loss: config.loss.clone(),
        source: data.train.source,
        pairs_from: config.pairs_from.clone(),
        hard_negatives: config.hard_negatives,
        train_examples,
        val_pairs: learner.val_labels.len(),
        best_epoch: state.best_epoch,
        val_spearman: state.history.iter().filter_map(|h| h.val_spearman).reduce(f64::max),
        history: state.history,
        problems: data.problems,
    };
    durable::write_file_atomic(&config.out.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok(EmbedResult { best_dir, report: Some(report) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint::from_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/tiny-safetensors"))
            .unwrap()
    }

    /// Labelled rows: (text, values).
    fn labelled(rows: &[(&str, &[u32])]) -> Examples {
        let mut set = Examples::new(Path::new("rows.csv"), Source::Labelled);
        for (i, (text, _)) in rows.iter().enumerate() {
            set.push_text(text.to_string(), i + 2);
        }
        set.values = Some(rows.iter().map(|(_, v)| v.to_vec()).collect());
        set
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum()
    }

    /// Mean over rows of −log softmax(scale · cos(anchor, candidates))[target], skipping the
    /// candidates `skip(row, candidate)` says.
    fn by_hand(
        e: &[Vec<f32>],
        rows: &[(usize, usize)],
        candidates: &[usize],
        skip: impl Fn(usize, usize) -> bool,
    ) -> f64 {
        let mut total = 0.0;
        for (r, &(anchor, target)) in rows.iter().enumerate() {
            let kept: Vec<usize> =
                candidates.iter().enumerate().filter(|&(c, _)| !skip(r, c)).map(|(_, &t)| t).collect();
            let log_z = kept.iter().map(|&t| (20.0 * dot(&e[anchor], &e[t])).exp()).sum::<f64>().ln();
            total += log_z - 20.0 * dot(&e[anchor], &e[target]);
        }
        total / rows.len() as f64
    }

    #[test]
    fn mnrl_ranks_the_positive_against_the_batch_and_every_negative() {
        let ckpt = checkpoint();
        let model = TrainableClassifier::new(&ckpt, 1, ModelOptions::new(16), 0, &Device::Cpu).unwrap();
        let texts = ["chest pain", "heart pain", "cough", "lung infection", "diabetes", "glucose level"];
        let ids: Vec<Vec<u32>> = texts.iter().enumerate().map(|(i, t)| model.encode(t, i).unwrap()).collect();
        let e: Vec<Vec<f32>> = ids
            .iter()
            .map(|x| model.embeddings(&[x], Mode::Eval, true).unwrap().flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        let config = TrainConfig::default();
        let best = PathBuf::new();
        let mut quiet = |_: &EmbedEpoch| {};
        let mut learner = Embedding {
            ckpt: &ckpt,
            config: &config,
            loss: EmbedLoss::Mnrl,
            mean: true,
            ids,
            values: None,
            items: vec![
                Example { anchor: 0, positive: 1, negatives: vec![4], label: 1.0 },
                Example { anchor: 2, positive: 3, negatives: vec![5], label: 1.0 },
            ],
            val_pairs: Vec::new(),
            val_labels: Vec::new(),
            best_dir: &best,
            on_eval: &mut quiet,
        };
        let loss = |l: &Embedding| l.loss(&model, &[0, 1], Mode::Eval).unwrap().unwrap().to_scalar::<f32>().unwrap();
        let rows = [(0, 1), (2, 3)];
        let candidates = [1, 3, 4, 5];
        let want = by_hand(&e, &rows, &candidates, |_, _| false);
        assert!((f64::from(loss(&learner)) - want).abs() < 1e-4, "{} vs {want}", loss(&learner));
        let without_negatives = by_hand(&e, &rows, &candidates[..2], |_, _| false);
        assert!((want - without_negatives).abs() > 1e-3, "the negatives changed nothing");

        // Labelled rows: "glucose level" (another anchor's negative) shares chest pain's value,
        // so it is not a negative of chest pain; the own positive always stays.
        learner.values = Some(vec![vec![0], vec![0], vec![1], vec![1], vec![2], vec![0, 2]]);
        let masked = by_hand(&e, &rows, &candidates, |r, c| r == 0 && c == 3);
        assert!((f64::from(loss(&learner)) - masked).abs() < 1e-4, "{} vs {masked}", loss(&learner));

        // One pair and no negative: nothing to rank.
        learner.items.truncate(1);
        learner.items[0].negatives.clear();
        assert!(learner.loss(&model, &[0], Mode::Eval).unwrap().is_none());
    }

    #[test]
    fn hard_negatives_are_the_most_similar_rows_sharing_no_value() {
        let ckpt = checkpoint();
        let model = TrainableClassifier::new(&ckpt, 1, ModelOptions::new(16), 0, &Device::Cpu).unwrap();
        let mut set = labelled(&[
            ("chest pain", &[0]),
            ("heart pain", &[0]),
            ("cardiac murmur", &[0, 1]),
            ("cough and fever", &[1]),
            ("lung infection", &[1]),
            ("diabetes", &[2]),
            ("blood sugar glucose", &[2]),
            ("heart pain", &[2]),
            ("chest pain and glucose", &[2, 0]),
        ]);
        set.examples =
            (0..9).map(|i| Example { anchor: i, positive: (i + 1) % 9, negatives: vec![], label: 1.0 }).collect();
        let ids = encode_texts(&model, &set).unwrap();
        let mined = mine_hard_negatives(&model, &set, &ids, 3, true).unwrap();
        let all = embed_all(&model, &ids, true).unwrap().to_vec2::<f32>().unwrap();
        let values = set.values.as_ref().unwrap();
        for (e, got) in set.examples.iter().zip(&mined) {
            let mut want: Vec<usize> = (0..9)
                .filter(|&j| !share(&values[e.anchor], &values[j]))
                .filter(|&j| set.texts[j] != set.texts[e.anchor] && set.texts[j] != set.texts[e.positive])
                .collect();
            want.sort_by(|&a, &b| {
                dot(&all[e.anchor], &all[b]).total_cmp(&dot(&all[e.anchor], &all[a])).then(a.cmp(&b))
            });
            want.truncate(3);
            assert_eq!(got, &want, "anchor {}", e.anchor);
        }
        // Row 1 ("heart pain", value 0): row 7 has the same text under another value, and
        // rows 0, 2 and 8 share value 0: only 3, 4, 5 and 6 are left, ranked.
        assert!(mined[1].iter().all(|j| [3, 4, 5, 6].contains(j)), "{:?}", mined[1]);
        assert_eq!(mined[1].len(), 3);
    }

    #[test]
    fn random_negatives_share_no_value_and_are_none_when_none_can() {
        let values = vec![vec![0], vec![0], vec![0, 1], vec![1], vec![2]];
        let mut order: Vec<usize> = (0..5).collect();
        let mut rng = SplitMix64::new(3);
        rng.shuffle(&mut order);
        for anchor in 0..5 {
            for _ in 0..20 {
                let j = random_negative(anchor, &values, &order, &mut rng).unwrap();
                assert!(!share(&values[anchor], &values[j]), "{anchor} → {j}");
            }
        }
        let everyone = vec![vec![0], vec![0, 1], vec![0]];
        assert_eq!(random_negative(1, &everyone, &[0, 1, 2], &mut rng), None);
    }
}
