//! Embedding evaluation (issue P3): how well a model's cosine similarities follow gold
//! relatedness, and how well they retrieve the right document.
//!
//! * **Pairs** (`text1`, `text2`, `label` in [0, 1]): Pearson and Spearman correlation of the
//!   cosine with the label (scipy's `pearsonr` / `spearmanr`, average ranks for ties), and the
//!   cosine distributions of related (`label >= related_threshold`) and unrelated pairs:
//!   mean, median, p10/p90 (numpy's linear percentiles) and a histogram over [-1, 1] (numpy's
//!   bins: half-open, the last one closed).
//! * **Retrieval** (queries, corpus, qrels): sentence-transformers' `InformationRetrievalEvaluator`
//!   conventions. Every query is scored against the whole corpus; hits are ranked by
//!   (−cosine, document id), so ties go to the smaller id; queries with no relevant document are
//!   left out of the means. A judgement's score is its gain (binary qrels have gain 1; a score
//!   of 0 means "judged, not relevant"). MRR@10, nDCG@10 (gain / log2(rank + 1), normalised by
//!   the ideal ordering of the query's gains: graded when the qrels have scores, and then equal
//!   to trec_eval's `ndcg_cut_10`; with 0/1 gains exactly sentence-transformers' number),
//!   Recall@1/5/10 (relevant hits in the top k / relevant documents) and MAP@100 (the sum of the
//!   precision at each relevant hit in the top 100, divided by min(100, relevant documents), as
//!   sentence-transformers computes `map@100`).
//!
//! The reference numbers (scipy, numpy, scikit-learn, sentence-transformers' own metric code)
//! are in `trainer/tests/fixtures/embedding/*.json`, written by
//! `models/reference/make_embedding_metric_fixtures.py`; the tests below compare to 1e-9.
//!
//! Loading is strict: a bad row is an error naming the file, the 1-based line and the field,
//! never a skip, because a silently shorter test set changes the numbers. Messages name
//! columns, ids and line numbers, never the text itself.

use super::report::esc;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bedside_runtime::Model;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::table::{self, CellValue, ColumnSpec, TableError, TableSpec};
use crate::data::Format;
use crate::durable::write_file_atomic;

/// Ranks looked at: MRR@10, nDCG@10, Recall@10 and MAP@100.
const MRR_K: usize = 10;
const NDCG_K: usize = 10;
const RECALL_KS: [usize; 3] = [1, 5, 10];
const MAP_K: usize = 100;
/// Texts embedded per call, so a long run can report progress.
const EMBED_CHUNK: usize = 256;

// =============================================================================================
// Errors
// =============================================================================================

#[derive(Debug, thiserror::Error)]
pub enum EmbeddingEvalError {
    // === Files ===
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    /// Reading the table: format, header, row shape, JSON, UTF-8, caps (see `data::table`).
    #[error(transparent)]
    Table(#[from] TableError),

    /// A value that cannot be used: empty text, a label outside [0, 1], a missing field, …
    #[error("{}:{line}: field `{field}`: {message}", path.display())]
    Field { path: PathBuf, line: usize, field: String, message: String },

    // Ids are cell values (they may be record numbers): errors name lines, never ids.
    #[error("{}:{line}: field `{field}`: duplicate id (first on line {first_line})", path.display())]
    DuplicateId { path: PathBuf, line: usize, field: String, id: String, first_line: usize },

    #[error("{}:{line}: field `{field}`: an id that is not in {}", path.display(), known_in.display())]
    UnknownId { path: PathBuf, line: usize, field: String, id: String, known_in: PathBuf },

    #[error(
        "{}:{line}: the same query and document are judged twice (first on line {first_line})",
        path.display()
    )]
    DuplicateJudgement { path: PathBuf, line: usize, query_id: String, doc_id: String, first_line: usize },

    #[error("{}: no rows", path.display())]
    Empty { path: PathBuf },

    // === Metrics ===
    #[error("{what}: {left} values against {right}")]
    LengthMismatch { what: &'static str, left: usize, right: usize },

    #[error("{what}: value {value} at index {index} is not a finite number")]
    NotFinite { what: &'static str, index: usize, value: f64 },

    #[error("retrieval: a query got {got} scores for {expected} documents")]
    ScoreRow { query_id: String, expected: usize, got: usize },

    #[error("retrieval: a judgement names a {which} id that is not in the {which} list")]
    UnknownJudgedId { which: &'static str, id: String },

    #[error("retrieval: no query has a relevant document (a judgement with score > 0)")]
    NoRelevantQuery,

    #[error("histogram: {message}")]
    Histogram { message: String },

    // === Model ===
    #[error("embedding with {model}: {source}")]
    Model { model: String, source: bedside_runtime::Error },
}

type Result<T, E = EmbeddingEvalError> = std::result::Result<T, E>;

// =============================================================================================
// Correlation
// =============================================================================================

fn check_pair_lengths(what: &'static str, x: &[f64], y: &[f64]) -> Result<()> {
    if x.len() != y.len() {
        return Err(EmbeddingEvalError::LengthMismatch { what, left: x.len(), right: y.len() });
    }
    for (index, &value) in x.iter().chain(y).enumerate() {
        if !value.is_finite() {
            return Err(EmbeddingEvalError::NotFinite { what, index: index % x.len().max(1), value });
        }
    }
    Ok(())
}

/// Mean with one correction pass, so values far from zero (1e6 ± 1e-3) keep their digits.
fn mean(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let m = values.iter().sum::<f64>() / n;
    m + values.iter().map(|v| v - m).sum::<f64>() / n
}

/// Pearson's r, computed as scipy's `pearsonr` does (centred, scaled by the largest deviation,
/// normalised, clipped to [-1, 1]). `None` when it is undefined: fewer than two values, or a
/// constant input (scipy returns nan with a warning).
pub fn pearson(x: &[f64], y: &[f64]) -> Result<Option<f64>> {
    check_pair_lengths("pearson", x, y)?;
    if x.len() < 2 || x.iter().all(|&v| v == x[0]) || y.iter().all(|&v| v == y[0]) {
        return Ok(None);
    }
    let centred = |v: &[f64]| {
        let m = mean(v);
        let d: Vec<f64> = v.iter().map(|a| a - m).collect();
        let max = d.iter().fold(0.0f64, |acc, a| acc.max(a.abs()));
        let scaled: Vec<f64> = d.iter().map(|a| a / max).collect();
        let norm = scaled.iter().map(|a| a * a).sum::<f64>().sqrt();
        scaled.into_iter().map(|a| a / norm).collect::<Vec<f64>>()
    };
    let (a, b) = (centred(x), centred(y));
    let r: f64 = a.iter().zip(&b).map(|(p, q)| p * q).sum();
    Ok(Some(r.clamp(-1.0, 1.0)))
}

/// 1-based ranks with ties given the average of the ranks they span (scipy's `rankdata`,
/// method "average").
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold ranks start+1..=end: their mean.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Spearman's rho: Pearson's r of the average ranks (scipy's `spearmanr`). `None` when undefined.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<Option<f64>> {
    check_pair_lengths("spearman", x, y)?;
    pearson(&average_ranks(x), &average_ranks(y))
}

// =============================================================================================
// Distributions
// =============================================================================================

/// Summary of a set of cosines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub min: f64,
    pub max: f64,
}

/// numpy's default (linear) percentile of sorted values, `q` in [0, 100].
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let t = h - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    // numpy's `_lerp`: from the nearer end, so t = 1 gives b exactly.
    if t >= 0.5 {
        b - (b - a) * (1.0 - t)
    } else {
        a + (b - a) * t
    }
}

/// `None` for no values.
pub fn distribution(values: &[f64]) -> Option<Distribution> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(Distribution {
        n: values.len(),
        mean: mean(values),
        median: percentile(&sorted, 50.0),
        p10: percentile(&sorted, 10.0),
        p90: percentile(&sorted, 90.0),
        min: sorted[0],
        max: sorted[sorted.len() - 1],
    })
}

/// `bins + 1` equally spaced edges from `lo` to `hi`, computed as numpy's `linspace`.
pub fn bin_edges(lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let step = (hi - lo) / bins as f64;
    let mut edges: Vec<f64> = (0..=bins).map(|i| i as f64 * step + lo).collect();
    edges[bins] = hi;
    edges
}

/// Counts per bin as `numpy.histogram(values, bins, range=(lo, hi))`: bins are half-open
/// `[e_i, e_i+1)` except the last, which is closed; values outside [lo, hi] are not counted.
pub fn histogram(values: &[f64], bins: usize, lo: f64, hi: f64) -> Result<Vec<usize>> {
    if bins == 0 || !lo.is_finite() || !hi.is_finite() || lo >= hi {
        return Err(EmbeddingEvalError::Histogram { message: format!("{bins} bins over [{lo}, {hi}]") });
    }
    let edges = bin_edges(lo, hi, bins);
    let mut counts = vec![0; bins];
    for &v in values {
        if !(lo..=hi).contains(&v) {
            continue;
        }
        // numpy's fast path, then its correction against the computed edges.
        let mut i = (((v - lo) / (hi - lo)) * bins as f64) as usize;
        if i >= bins {
            i = bins - 1;
        }
        if v < edges[i] {
            i -= 1;
        } else if v >= edges[i + 1] && i != bins - 1 {
            i += 1;
        }
        counts[i] += 1;
    }
    Ok(counts)
}

/// Related and unrelated pairs' cosine counts over the same bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairHistogram {
    pub edges: Vec<f64>,
    pub related: Vec<usize>,
    pub unrelated: Vec<usize>,
}

// =============================================================================================
// Pair metrics
// =============================================================================================

/// How pairs are scored.
#[derive(Debug, Clone, PartialEq)]
pub struct PairMetricOptions {
    /// A pair is related when its label is at least this (0/1 labels: the 1s).
    pub related_threshold: f64,
    /// Histogram bins over [-1, 1].
    pub bins: usize,
}

impl Default for PairMetricOptions {
    fn default() -> Self {
        PairMetricOptions { related_threshold: 0.5, bins: 40 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairMetrics {
    pub n_pairs: usize,
    pub n_related: usize,
    pub n_unrelated: usize,
    pub related_threshold: f64,
    /// Of the cosine with the label; null when undefined (e.g. every label the same).
    pub pearson: Option<f64>,
    pub spearman: Option<f64>,
    pub related: Option<Distribution>,
    pub unrelated: Option<Distribution>,
    pub histogram: PairHistogram,
}

pub fn pair_metrics(cosines: &[f64], labels: &[f64], options: &PairMetricOptions) -> Result<PairMetrics> {
    check_pair_lengths("pairs", cosines, labels)?;
    let (mut related, mut unrelated) = (Vec::new(), Vec::new());
    for (&c, &l) in cosines.iter().zip(labels) {
        // Rounding can put a cosine a hair outside [-1, 1]; it belongs in the end bins.
        let c = c.clamp(-1.0, 1.0);
        if l >= options.related_threshold {
            related.push(c);
        } else {
            unrelated.push(c);
        }
    }
    Ok(PairMetrics {
        n_pairs: cosines.len(),
        n_related: related.len(),
        n_unrelated: unrelated.len(),
        related_threshold: options.related_threshold,
        pearson: pearson(cosines, labels)?,
        spearman: spearman(cosines, labels)?,
        related: distribution(&related),
        unrelated: distribution(&unrelated),
        histogram: PairHistogram {
            edges: bin_edges(-1.0, 1.0, options.bins),
            related: histogram(&related, options.bins, -1.0, 1.0)?,
            unrelated: histogram(&unrelated, options.bins, -1.0, 1.0)?,
        },
    })
}

// =============================================================================================
// Retrieval metrics
// =============================================================================================

/// One qrels row: `doc_id` is relevant to `query_id` with gain `score` (0: judged not relevant).
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub query_id: String,
    pub doc_id: String,
    pub score: f64,
    /// 1-based line in the qrels file (0 when not from a file).
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Relevance {
    /// The qrels have no score column: every judged document has gain 1.
    Binary,
    /// The qrels' scores are the gains.
    Graded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalMetrics {
    /// Queries in the means: those with at least one relevant document.
    pub n_queries: usize,
    /// Queries left out because no document is relevant to them.
    pub n_queries_without_relevant: usize,
    pub n_corpus: usize,
    pub relevance: Relevance,
    #[serde(rename = "mrr@10")]
    pub mrr_at_10: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg_at_10: f64,
    #[serde(rename = "recall@1")]
    pub recall_at_1: f64,
    #[serde(rename = "recall@5")]
    pub recall_at_5: f64,
    #[serde(rename = "recall@10")]
    pub recall_at_10: f64,
    /// sentence-transformers' MAP@100: precision summed over relevant hits in the top 100,
    /// divided by min(100, relevant documents).
    #[serde(rename = "map@100")]
    pub map_at_100: f64,
}

/// The indices of the best `k` documents, best first: by score descending, then by id
/// ascending (sentence-transformers' order, so ties do not depend on corpus order).
pub fn top_k(scores: &[f64], ids: &[String], k: usize) -> Vec<usize> {
    let better = |&a: &usize, &b: &usize| scores[b].total_cmp(&scores[a]).then_with(|| ids[a].cmp(&ids[b]));
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let k = k.min(order.len());
    if k == 0 {
        return Vec::new();
    }
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, better);
        order.truncate(k);
    }
    order.sort_unstable_by(better);
    order
}

fn dcg(gains: impl Iterator<Item = f64>) -> f64 {
    gains.enumerate().map(|(rank, g)| g / ((rank + 2) as f64).log2()).sum()
}

/// Scores every query against the corpus (`score_row(q)` gives query `q`'s score for each
/// document, in `corpus_ids` order) and averages the metrics over the queries with a relevant
/// document.
pub fn retrieval_metrics(
    query_ids: &[String],
    corpus_ids: &[String],
    qrels: &[Judgement],
    relevance: Relevance,
    mut score_row: impl FnMut(usize) -> Vec<f64>,
) -> Result<RetrievalMetrics> {
    let query_index: HashMap<&str, usize> = query_ids.iter().enumerate().map(|(i, q)| (q.as_str(), i)).collect();
    let doc_index: HashMap<&str, usize> = corpus_ids.iter().enumerate().map(|(i, d)| (d.as_str(), i)).collect();
    // Per query: document index → gain, relevant documents only.
    let mut gains: Vec<HashMap<usize, f64>> = vec![HashMap::new(); query_ids.len()];
    for j in qrels {
        let q = *query_index
            .get(j.query_id.as_str())
            .ok_or_else(|| EmbeddingEvalError::UnknownJudgedId { which: "query", id: j.query_id.clone() })?;
        let d = *doc_index
            .get(j.doc_id.as_str())
            .ok_or_else(|| EmbeddingEvalError::UnknownJudgedId { which: "document", id: j.doc_id.clone() })?;
        if !j.score.is_finite() {
            return Err(EmbeddingEvalError::NotFinite { what: "qrels score", index: j.line, value: j.score });
        }
        if j.score > 0.0 {
            gains[q].insert(d, j.score);
        }
    }
    let evaluated: Vec<usize> = (0..query_ids.len()).filter(|&q| !gains[q].is_empty()).collect();
    if evaluated.is_empty() {
        return Err(EmbeddingEvalError::NoRelevantQuery);
    }
    let (mut mrr, mut ndcg, mut map) = (0.0, 0.0, 0.0);
    let mut recall = [0.0; RECALL_KS.len()];
    let deepest = MAP_K.max(MRR_K).max(NDCG_K).max(RECALL_KS[RECALL_KS.len() - 1]);
    for &q in &evaluated {
        let scores = score_row(q);
        if scores.len() != corpus_ids.len() {
            return Err(EmbeddingEvalError::ScoreRow {
                query_id: query_ids[q].clone(),
                expected: corpus_ids.len(),
                got: scores.len(),
            });
        }
        let ranked = top_k(&scores, corpus_ids, deepest);
        let relevant = &gains[q];
        let gain = |rank: usize| ranked.get(rank).and_then(|d| relevant.get(d)).copied().unwrap_or(0.0);
        if let Some(rank) = (0..MRR_K.min(ranked.len())).find(|&r| gain(r) > 0.0) {
            mrr += 1.0 / (rank + 1) as f64;
        }
        let mut ideal: Vec<f64> = relevant.values().copied().collect();
        ideal.sort_by(|a, b| b.total_cmp(a));
        let ideal_dcg = dcg(ideal.into_iter().take(NDCG_K));
        ndcg += dcg((0..NDCG_K.min(ranked.len())).map(gain)) / ideal_dcg;
        for (slot, &k) in recall.iter_mut().zip(&RECALL_KS) {
            let hits = (0..k.min(ranked.len())).filter(|&r| gain(r) > 0.0).count();
            *slot += hits as f64 / relevant.len() as f64;
        }
        let (mut hits, mut precision_sum) = (0usize, 0.0);
        for rank in 0..MAP_K.min(ranked.len()) {
            if gain(rank) > 0.0 {
                hits += 1;
                precision_sum += hits as f64 / (rank + 1) as f64;
            }
        }
        map += precision_sum / MAP_K.min(relevant.len()) as f64;
    }
    let n = evaluated.len() as f64;
    Ok(RetrievalMetrics {
        n_queries: evaluated.len(),
        n_queries_without_relevant: query_ids.len() - evaluated.len(),
        n_corpus: corpus_ids.len(),
        relevance,
        mrr_at_10: mrr / n,
        ndcg_at_10: ndcg / n,
        recall_at_1: recall[0] / n,
        recall_at_5: recall[1] / n,
        recall_at_10: recall[2] / n,
        map_at_100: map / n,
    })
}

// =============================================================================================
// Reading tables (CSV, TSV, JSONL)
// =============================================================================================

/// A column named `name`; when that is the default, also under the usual other spellings
/// (e.g. BEIR's `_id`).
fn column(name: &str, default: &str, aliases: &[&str], spec: fn(&str) -> ColumnSpec) -> ColumnSpec {
    let column = spec(name);
    if name == default {
        column.aliases(aliases)
    } else {
        column
    }
}

/// One data row: 1-based line, and per requested column the field name found and its value
/// (`None` for an optional column the file does not have).
struct Row {
    line: usize,
    cells: Vec<Option<(String, String)>>,
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|source| EmbeddingEvalError::Io { path: path.into(), source })
}

/// The rows of a table's bytes (`data::table`, the first bad row an error); `path` names
/// the table in errors.
fn read_table(path: &Path, bytes: &[u8], format: Format, columns: Vec<ColumnSpec>) -> Result<Vec<Row>> {
    let rows = table::read_all(bytes, format, path, &TableSpec::new(columns))?;
    if rows.is_empty() {
        return Err(EmbeddingEvalError::Empty { path: path.into() });
    }
    Ok(rows
        .into_iter()
        .map(|row| Row {
            line: row.line,
            cells: row
                .cells
                .into_iter()
                .map(|cell| match cell.value {
                    CellValue::Str(value) => Some((cell.column, value)),
                    CellValue::Absent | CellValue::List(_) => None,
                })
                .collect(),
        })
        .collect())
}

fn field_error(path: &Path, line: usize, field: &str, message: impl Into<String>) -> EmbeddingEvalError {
    EmbeddingEvalError::Field { path: path.into(), line, field: field.to_string(), message: message.into() }
}

/// A text cell: refused when empty or only whitespace.
fn text_cell(path: &Path, line: usize, cell: &Option<(String, String)>) -> Result<String> {
    let (field, value) = cell.as_ref().expect("required column");
    if value.trim().is_empty() {
        return Err(field_error(path, line, field, format!("empty text ({} bytes of whitespace)", value.len())));
    }
    Ok(value.clone())
}

/// An id cell, trimmed; refused when empty.
fn id_cell(path: &Path, line: usize, cell: &Option<(String, String)>) -> Result<String> {
    let (field, value) = cell.as_ref().expect("required column");
    let id = value.trim();
    if id.is_empty() {
        return Err(field_error(path, line, field, "empty id"));
    }
    Ok(id.to_string())
}

/// A label or score cell; shown in messages cut to 40 characters (it is a number, not text).
fn number_cell(
    path: &Path,
    line: usize,
    cell: &(String, String),
    range: &str,
    ok: impl Fn(f64) -> bool,
) -> Result<f64> {
    let (field, value) = cell;
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && ok(v) => Ok(v),
        // The cell is described, not shown: a shifted column may put note text here.
        Ok(_) => Err(field_error(path, line, field, format!("must be a number {range}"))),
        Err(_) => Err(field_error(
            path,
            line,
            field,
            format!("must be a number {range}, got {} character(s) of text", value.trim().chars().count()),
        )),
    }
}

// =============================================================================================
// Pairs
// =============================================================================================

/// Columns of a pairs file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairsOptions {
    /// Overrides the format implied by the extension.
    pub format: Option<Format>,
    pub text1_col: String,
    pub text2_col: String,
    pub label_col: String,
}

impl Default for PairsOptions {
    fn default() -> Self {
        PairsOptions {
            format: None,
            text1_col: "text1".to_string(),
            text2_col: "text2".to_string(),
            label_col: "label".to_string(),
        }
    }
}

/// Two texts and how related they are: 0/1, or a score in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub line: usize,
    pub text1: String,
    pub text2: String,
    pub label: f64,
}

/// Reads a pairs file (CSV, TSV or JSONL); the first bad row is an error.
pub fn load_pairs(path: &Path, options: &PairsOptions) -> Result<Vec<Pair>> {
    let format = match options.format {
        Some(f) => f,
        None => table::format_of(path, None)?,
    };
    load_pairs_from_bytes(path, &read_file(path)?, format, options)
}

/// [`load_pairs`] on a table's bytes in `format` (`options.format` is not consulted); `path`
/// names the table in errors.
pub fn load_pairs_from_bytes(path: &Path, bytes: &[u8], format: Format, options: &PairsOptions) -> Result<Vec<Pair>> {
    let columns = vec![
        column(&options.text1_col, "text1", &["sentence1"], ColumnSpec::text),
        column(&options.text2_col, "text2", &["sentence2"], ColumnSpec::text),
        column(&options.label_col, "label", &["score"], ColumnSpec::scalar),
    ];
    read_table(path, bytes, format, columns)?
        .into_iter()
        .map(|row| {
            let label = row.cells[2].as_ref().expect("required column");
            Ok(Pair {
                line: row.line,
                text1: text_cell(path, row.line, &row.cells[0])?,
                text2: text_cell(path, row.line, &row.cells[1])?,
                label: number_cell(path, row.line, label, "in [0, 1]", |v| (0.0..=1.0).contains(&v))?,
            })
        })
        .collect()
}

/// An anchor, a text that should sit close to it and one that should not.
#[derive(Debug, Clone, PartialEq)]
pub struct Triplet {
    pub line: usize,
    pub anchor: String,
    pub positive: String,
    pub negative: String,
}

/// The columns of a triplets file (sentence-transformers' names).
pub const TRIPLET_COLUMNS: [&str; 3] = ["anchor", "positive", "negative"];

/// Reads a triplets file (CSV, TSV or JSONL with `anchor`, `positive`, `negative`); the first
/// bad row is an error.
pub fn load_triplets(path: &Path, format: Option<Format>) -> Result<Vec<Triplet>> {
    let format = match format {
        Some(f) => f,
        None => table::format_of(path, None)?,
    };
    load_triplets_from_bytes(path, &read_file(path)?, format)
}

/// [`load_triplets`] on a table's bytes; `path` names the table in errors.
pub fn load_triplets_from_bytes(path: &Path, bytes: &[u8], format: Format) -> Result<Vec<Triplet>> {
    let columns = TRIPLET_COLUMNS.iter().map(|c| ColumnSpec::text(c)).collect();
    read_table(path, bytes, format, columns)?
        .into_iter()
        .map(|row| {
            Ok(Triplet {
                line: row.line,
                anchor: text_cell(path, row.line, &row.cells[0])?,
                positive: text_cell(path, row.line, &row.cells[1])?,
                negative: text_cell(path, row.line, &row.cells[2])?,
            })
        })
        .collect()
}

/// The column names of a table: a CSV/TSV header, or the keys of a JSONL file's first object
/// (none when that line is not a JSON object; the loader then reports it). For telling a
/// pairs file from a triplets file or labelled rows.
pub fn column_names(path: &Path, format: Option<Format>) -> Result<Vec<String>> {
    Ok(table::column_names(path, format)?)
}

// =============================================================================================
// Retrieval set
// =============================================================================================

/// Columns of the queries, corpus and qrels files. The defaults also accept BEIR's spellings
/// (`_id`; `query-id`, `corpus-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrievalOptions {
    pub id_col: String,
    pub text_col: String,
    pub query_id_col: String,
    pub doc_id_col: String,
    pub score_col: String,
}

impl Default for RetrievalOptions {
    fn default() -> Self {
        RetrievalOptions {
            id_col: "id".to_string(),
            text_col: "text".to_string(),
            query_id_col: "query_id".to_string(),
            doc_id_col: "doc_id".to_string(),
            score_col: "score".to_string(),
        }
    }
}

/// A query or a corpus document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    pub text: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalSet {
    pub queries: Vec<Document>,
    pub corpus: Vec<Document>,
    pub qrels: Vec<Judgement>,
    pub relevance: Relevance,
}

/// Reads `id,text` rows (CSV, TSV or JSONL); empty texts and repeated ids are errors.
pub fn load_documents(path: &Path, options: &RetrievalOptions) -> Result<Vec<Document>> {
    let format = table::format_of(path, None)?;
    load_documents_from_bytes(path, &read_file(path)?, format, options)
}

/// [`load_documents`] on a table's bytes; `path` names the table in errors.
pub fn load_documents_from_bytes(
    path: &Path,
    bytes: &[u8],
    format: Format,
    options: &RetrievalOptions,
) -> Result<Vec<Document>> {
    let columns =
        vec![column(&options.id_col, "id", &["_id"], ColumnSpec::scalar), ColumnSpec::text(&options.text_col)];
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut documents = Vec::new();
    for row in read_table(path, bytes, format, columns)? {
        let id = id_cell(path, row.line, &row.cells[0])?;
        if let Some(&first) = first_line.get(&id) {
            let field = row.cells[0].as_ref().map(|c| c.0.clone()).unwrap_or_default();
            return Err(EmbeddingEvalError::DuplicateId {
                path: path.into(),
                line: row.line,
                field,
                id,
                first_line: first,
            });
        }
        first_line.insert(id.clone(), row.line);
        documents.push(Document { id, text: text_cell(path, row.line, &row.cells[1])?, line: row.line });
    }
    Ok(documents)
}

/// Reads the qrels (`query_id, doc_id[, score]`; CSV, TSV or JSONL) and checks every id
/// against the queries and the corpus. Without a score column every judgement has gain 1.
pub fn load_qrels(
    path: &Path,
    options: &RetrievalOptions,
    queries: (&Path, &[Document]),
    corpus: (&Path, &[Document]),
) -> Result<(Vec<Judgement>, Relevance)> {
    let format = table::format_of(path, None)?;
    load_qrels_from_bytes(path, &read_file(path)?, format, options, queries, corpus)
}

/// [`load_qrels`] on a table's bytes; `path` names the table in errors.
pub fn load_qrels_from_bytes(
    path: &Path,
    bytes: &[u8],
    format: Format,
    options: &RetrievalOptions,
    queries: (&Path, &[Document]),
    corpus: (&Path, &[Document]),
) -> Result<(Vec<Judgement>, Relevance)> {
    let columns = vec![
        column(&options.query_id_col, "query_id", &["query-id", "qid"], ColumnSpec::scalar),
        column(&options.doc_id_col, "doc_id", &["corpus-id", "corpus_id", "doc-id", "docid"], ColumnSpec::scalar),
        column(&options.score_col, "score", &["relevance"], ColumnSpec::scalar).optional(),
    ];
    let query_ids: std::collections::HashSet<&str> = queries.1.iter().map(|d| d.id.as_str()).collect();
    let doc_ids: std::collections::HashSet<&str> = corpus.1.iter().map(|d| d.id.as_str()).collect();
    let rows = read_table(path, bytes, format, columns)?;
    let relevance = if rows[0].cells[2].is_some() { Relevance::Graded } else { Relevance::Binary };
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut qrels = Vec::with_capacity(rows.len());
    for row in rows {
        let line = row.line;
        let query_id = id_cell(path, line, &row.cells[0])?;
        let doc_id = id_cell(path, line, &row.cells[1])?;
        let unknown = |field: &Option<(String, String)>, id: &str, known_in: &Path| EmbeddingEvalError::UnknownId {
            path: path.into(),
            line,
            field: field.as_ref().map(|c| c.0.clone()).unwrap_or_default(),
            id: id.to_string(),
            known_in: known_in.into(),
        };
        if !query_ids.contains(query_id.as_str()) {
            return Err(unknown(&row.cells[0], &query_id, queries.0));
        }
        if !doc_ids.contains(doc_id.as_str()) {
            return Err(unknown(&row.cells[1], &doc_id, corpus.0));
        }
        let score = match &row.cells[2] {
            Some(cell) => number_cell(path, line, cell, ">= 0", |v| v >= 0.0)?,
            None => 1.0,
        };
        if let Some(&first_line) = seen.get(&(query_id.clone(), doc_id.clone())) {
            return Err(EmbeddingEvalError::DuplicateJudgement {
                path: path.into(),
                line,
                query_id,
                doc_id,
                first_line,
            });
        }
        seen.insert((query_id.clone(), doc_id.clone()), line);
        qrels.push(Judgement { query_id, doc_id, score, line });
    }
    Ok((qrels, relevance))
}

pub fn load_retrieval_set(
    queries: &Path,
    corpus: &Path,
    qrels: &Path,
    options: &RetrievalOptions,
) -> Result<RetrievalSet> {
    let query_docs = load_documents(queries, options)?;
    let corpus_docs = load_documents(corpus, options)?;
    let (judgements, relevance) = load_qrels(qrels, options, (queries, &query_docs), (corpus, &corpus_docs))?;
    Ok(RetrievalSet { queries: query_docs, corpus: corpus_docs, qrels: judgements, relevance })
}

// =============================================================================================
// Evaluating a model
// =============================================================================================

/// One model's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEvaluation {
    /// `model` (the one under test) or `base`.
    pub role: String,
    /// The path given on the command line.
    pub model: String,
    pub pairs: Option<PairMetrics>,
    pub retrieval: Option<RetrievalMetrics>,
    /// Distinct texts embedded.
    pub texts_embedded: usize,
    pub seconds: f64,
}

/// Cosine of two vectors in f64; 0 when either is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        dot / (aa.sqrt() * bb.sqrt())
    }
}

fn unit(v: &[f32]) -> Vec<f64> {
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    if norm == 0.0 {
        return vec![0.0; v.len()];
    }
    v.iter().map(|&x| f64::from(x) / norm).collect()
}

/// The position of `text` in `texts`, added on first sight: each distinct text is embedded once.
fn intern<'a>(text: &'a str, index: &mut HashMap<&'a str, usize>, texts: &mut Vec<&'a str>) -> usize {
    *index.entry(text).or_insert_with(|| {
        texts.push(text);
        texts.len() - 1
    })
}

/// Embeds every distinct text of the pairs and the retrieval set once, then scores them.
/// `progress(done, total)` is called after each chunk of texts.
pub fn evaluate_model(
    model: &Model,
    role: &str,
    model_name: &str,
    pairs: Option<&[Pair]>,
    retrieval: Option<&RetrievalSet>,
    options: &PairMetricOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ModelEvaluation> {
    let started = std::time::Instant::now();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut texts: Vec<&str> = Vec::new();
    let mut pair_ids: Vec<(usize, usize)> = Vec::new();
    for p in pairs.unwrap_or_default() {
        pair_ids.push((intern(&p.text1, &mut index, &mut texts), intern(&p.text2, &mut index, &mut texts)));
    }
    let (mut query_ids, mut doc_ids) = (Vec::new(), Vec::new());
    if let Some(set) = retrieval {
        query_ids = set.queries.iter().map(|d| intern(&d.text, &mut index, &mut texts)).collect();
        doc_ids = set.corpus.iter().map(|d| intern(&d.text, &mut index, &mut texts)).collect();
    }

    let mut vectors: Vec<Vec<f64>> = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(EMBED_CHUNK) {
        let embedded =
            model.embed(chunk).map_err(|source| EmbeddingEvalError::Model { model: model_name.to_string(), source })?;
        vectors.extend(embedded.iter().map(|v| unit(v)));
        progress(vectors.len(), texts.len());
    }
    let dot = |a: usize, b: usize| vectors[a].iter().zip(&vectors[b]).map(|(x, y)| x * y).sum::<f64>();

    let pair_metrics = match pairs {
        Some(pairs) => {
            let cosines: Vec<f64> = pair_ids.iter().map(|&(a, b)| dot(a, b)).collect();
            let labels: Vec<f64> = pairs.iter().map(|p| p.label).collect();
            Some(pair_metrics(&cosines, &labels, options)?)
        }
        None => None,
    };
    let retrieval_metrics = match retrieval {
        Some(set) => {
            let qids: Vec<String> = set.queries.iter().map(|d| d.id.clone()).collect();
            let dids: Vec<String> = set.corpus.iter().map(|d| d.id.clone()).collect();
            Some(retrieval_metrics(&qids, &dids, &set.qrels, set.relevance, |q| {
                doc_ids.iter().map(|&d| dot(query_ids[q], d)).collect()
            })?)
        }
        None => None,
    };
    Ok(ModelEvaluation {
        role: role.to_string(),
        model: model_name.to_string(),
        pairs: pair_metrics,
        retrieval: retrieval_metrics,
        texts_embedded: texts.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

// =============================================================================================
// Report: report.json and a self-contained report.html
// =============================================================================================

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingReport {
    pub created_by: String,
    pub pairs_file: Option<String>,
    pub queries_file: Option<String>,
    pub corpus_file: Option<String>,
    pub qrels_file: Option<String>,
    /// The model under test first, then the base model when one was given.
    pub models: Vec<ModelEvaluation>,
}

/// The headline numbers in display order: (key, value).
pub fn headline(m: &ModelEvaluation) -> Vec<(&'static str, Option<f64>)> {
    let mut rows = Vec::new();
    if let Some(p) = &m.pairs {
        rows.push(("spearman", p.spearman));
        rows.push(("pearson", p.pearson));
        rows.push(("related median cosine", p.related.as_ref().map(|d| d.median)));
        rows.push(("unrelated median cosine", p.unrelated.as_ref().map(|d| d.median)));
    }
    if let Some(r) = &m.retrieval {
        rows.push(("mrr@10", Some(r.mrr_at_10)));
        rows.push(("ndcg@10", Some(r.ndcg_at_10)));
        rows.push(("recall@1", Some(r.recall_at_1)));
        rows.push(("recall@5", Some(r.recall_at_5)));
        rows.push(("recall@10", Some(r.recall_at_10)));
        rows.push(("map@100", Some(r.map_at_100)));
    }
    rows
}

/// Writes `report.json` and `report.html` into `dir` (created if needed), each atomically.
pub fn write_embedding_report(report: &EmbeddingReport, dir: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(report).expect("the report serialises");
    for (name, bytes) in
        [("report.json", json.into_bytes()), ("report.html", render_embedding_html(report).into_bytes())]
    {
        write_file_atomic(&dir.join(name), &bytes)
            .map_err(|e| EmbeddingEvalError::Io { path: e.path, source: e.source })?;
    }
    Ok(())
}

fn f4(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;color:#1f2933;background:#f7f8fa;margin:0;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:1.5rem}h1{margin:.2rem 0 1rem;font-size:1.6rem}
h2{font-size:1.2rem;margin:1.2rem 0 .6rem;border-bottom:1px solid #d9dee5;padding-bottom:.3rem}
section,header{background:#fff;border-radius:8px;padding:1rem 1.2rem;margin-bottom:1rem;box-shadow:0 1px 2px rgba(0,0,0,.06)}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}dl.meta dt{font-weight:600;color:#52606d}dl.meta dd{margin:0}
table{border-collapse:collapse;margin:.4rem 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d9dee5;padding:.3rem .6rem;text-align:right}th{background:#eef1f5}td.l,th.l{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.hint{color:#616e7c;font-size:.9rem}svg{max-width:100%;height:auto}
footer{color:#616e7c;font-size:.85rem;margin-top:1rem}
";

/// The report as one HTML page with inline CSS and SVG: no scripts, no external references.
pub fn render_embedding_html(r: &EmbeddingReport) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Embedding evaluation: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        esc(r.models.first().map_or("", |m| m.model.as_str()))
    );
    h.push_str("<header>\n<h1>Embedding evaluation</h1>\n<dl class=\"meta\">\n");
    for m in &r.models {
        let _ = writeln!(h, "<dt>Model ({})</dt><dd>{}</dd>", esc(&m.role), esc(&m.model));
    }
    for (name, file) in
        [("Pairs", &r.pairs_file), ("Queries", &r.queries_file), ("Corpus", &r.corpus_file), ("Qrels", &r.qrels_file)]
    {
        if let Some(f) = file {
            let _ = writeln!(h, "<dt>{name}</dt><dd>{}</dd>", esc(f));
        }
    }
    let _ = writeln!(h, "<dt>Created by</dt><dd>{}</dd>\n</dl>\n</header>", esc(&r.created_by));

    h.push_str("<section>\n<h2>Metrics</h2>\n<table>\n<tr><th class=\"l\">Metric</th>");
    for m in &r.models {
        let _ = write!(h, "<th>{}</th>", esc(&m.role));
    }
    if r.models.len() == 2 {
        h.push_str("<th>Δ (model − base)</th>");
    }
    h.push_str("</tr>\n");
    let tables: Vec<Vec<(&str, Option<f64>)>> = r.models.iter().map(headline).collect();
    if let Some(first) = tables.first() {
        for (row, (name, _)) in first.iter().enumerate() {
            let _ = write!(h, "<tr><td class=\"l\">{}</td>", esc(name));
            let values: Vec<Option<f64>> = tables.iter().map(|t| t.get(row).and_then(|c| c.1)).collect();
            for v in &values {
                let _ = write!(h, "<td>{}</td>", f4(*v));
            }
            if let [Some(a), Some(b)] = values[..] {
                let _ = write!(h, "<td>{:+.4}</td>", a - b);
            } else if values.len() == 2 {
                h.push_str("<td>n/a</td>");
            }
            h.push_str("</tr>\n");
        }
    }
    h.push_str("</table>\n");
    if let Some(p) = r.models.first().and_then(|m| m.pairs.as_ref()) {
        let _ = writeln!(
            h,
            "<p class=\"hint\">{} pairs ({} related: label ≥ {}). Spearman and Pearson correlate the cosine with the \
             label (scipy conventions; Spearman uses average ranks for ties).</p>",
            p.n_pairs, p.n_related, p.related_threshold
        );
    }
    if let Some(q) = r.models.first().and_then(|m| m.retrieval.as_ref()) {
        let _ = writeln!(
            h,
            "<p class=\"hint\">{} queries against {} documents ({} relevance{}). Ranked by cosine, ties by document \
             id; MRR@10, nDCG@10, Recall@k and MAP@100 as sentence-transformers' InformationRetrievalEvaluator \
             computes them.</p>",
            q.n_queries,
            q.n_corpus,
            match q.relevance {
                Relevance::Binary => "binary",
                Relevance::Graded => "graded",
            },
            if q.n_queries_without_relevant > 0 {
                format!("; {} queries without a relevant document left out", q.n_queries_without_relevant)
            } else {
                String::new()
            }
        );
    }
    h.push_str("</section>\n");

    if r.models.iter().any(|m| m.pairs.is_some()) {
        h.push_str("<section>\n<h2>Cosine distributions</h2>\n<table>\n<tr><th class=\"l\">Model</th><th class=\"l\">Pairs</th>\
                    <th>n</th><th>Mean</th><th>Median</th><th>p10</th><th>p90</th><th>Min</th><th>Max</th></tr>\n");
        for m in &r.models {
            let Some(p) = &m.pairs else { continue };
            for (name, d) in [("related", &p.related), ("unrelated", &p.unrelated)] {
                let _ = write!(h, "<tr><td class=\"l\">{}</td><td class=\"l\">{name}</td>", esc(&m.role));
                match d {
                    Some(d) => {
                        let _ = writeln!(
                            h,
                            "<td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td></tr>",
                            d.n, d.mean, d.median, d.p10, d.p90, d.min, d.max
                        );
                    }
                    None => h.push_str("<td>0</td><td colspan=\"6\">no pairs</td></tr>\n"),
                }
            }
        }
        h.push_str("</table>\n<div class=\"charts\">\n");
        for m in &r.models {
            if let Some(p) = &m.pairs {
                h.push_str(&histogram_chart(&m.role, p));
            }
        }
        h.push_str(
            "</div>\n<p class=\"hint\">Share of each group's pairs per cosine bin. A model that separates related from \
             unrelated texts puts the two humps far apart.</p>\n</section>\n",
        );
    }
    let _ = write!(
        h,
        "<footer>Created by {}. Every number here is also in report.json.</footer>\n</main>\n</body>\n</html>\n",
        esc(&r.created_by)
    );
    h
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

const RELATED_COLOR: RGBColor = RGBColor(0, 114, 178);
const UNRELATED_COLOR: RGBColor = RGBColor(213, 94, 0);

/// One inline SVG (no `xmlns` URL: the page holds none); a chart that fails becomes a sentence.
fn svg_chart(title: &str, size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> DrawResult) -> String {
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root).and_then(|()| root.present().map_err(Into::into))
    };
    match drawn {
        Ok(()) => svg.replacen(r#" xmlns="http://www.w3.org/2000/svg""#, "", 1).replacen(
            "<svg ",
            &format!("<svg role=\"img\" aria-label=\"{}\" ", esc(title)),
            1,
        ),
        Err(e) => format!("<p class=\"hint\">The {} chart could not be drawn: {}</p>", esc(title), esc(&e.to_string())),
    }
}

/// Related and unrelated cosines of one model, as overlapping bars (share of the group per bin).
fn histogram_chart(role: &str, p: &PairMetrics) -> String {
    let hist = &p.histogram;
    let bins = hist.related.len();
    let share = |counts: &[usize], n: usize| -> Vec<f64> {
        counts.iter().map(|&c| if n == 0 { 0.0 } else { c as f64 / n as f64 }).collect()
    };
    let related = share(&hist.related, p.n_related);
    let unrelated = share(&hist.unrelated, p.n_unrelated);
    // Zoom to the occupied bins, one empty bin either side.
    let occupied = |i: &usize| hist.related[*i] + hist.unrelated[*i] > 0;
    let first = (0..bins).find(occupied).unwrap_or(0).saturating_sub(1);
    let last = ((0..bins).rev().find(occupied).unwrap_or(bins - 1) + 2).min(bins);
    let (x0, x1) = (hist.edges[first], hist.edges[last]);
    let y_max = related.iter().chain(&unrelated).fold(0.0f64, |a, &b| a.max(b)).max(0.01) * 1.15;
    let title = format!("Cosine distributions: {role}");
    svg_chart(&title, (540, 380), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(&title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(52)
            .build_cartesian_2d(x0..x1, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc("Cosine similarity")
            .y_desc("Share of pairs")
            .light_line_style(RGBColor(242, 244, 247))
            .draw()?;
        for (name, shares, n, color) in [
            ("related", &related, p.n_related, RELATED_COLOR),
            ("unrelated", &unrelated, p.n_unrelated, UNRELATED_COLOR),
        ] {
            if n == 0 {
                continue;
            }
            let style = color.mix(0.45).filled();
            let bars = shares
                .iter()
                .enumerate()
                .filter(|(_, &s)| s > 0.0)
                .map(move |(i, &s)| Rectangle::new([(hist.edges[i], 0.0), (hist.edges[i + 1], s)], style));
            chart
                .draw_series(bars)?
                .label(format!("{name} (n = {n})"))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()?;
        Ok(())
    })
}

// =============================================================================================
// Tests
// =============================================================================================

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const TOL: f64 = 1e-9;

    fn close(got: f64, want: f64, what: &str) {
        assert!((got - want).abs() <= TOL, "{what}: got {got}, want {want} (diff {:e})", (got - want).abs());
    }

    fn close_opt(got: Option<f64>, want: &Value, what: &str) {
        match (got, want.as_f64()) {
            (Some(g), Some(w)) => close(g, w, what),
            (None, None) => {}
            _ => panic!("{what}: got {got:?}, want {want}"),
        }
    }

    /// Numbers, or decimal strings where the fixture needs the exact double (serde_json's default
    /// float parsing may be one ulp off; `str::parse` is correctly rounded).
    fn floats(v: &Value) -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap_or_else(|| x.as_str().unwrap().parse().unwrap()))
            .collect()
    }

    fn strings(v: &Value) -> Vec<String> {
        v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn pearson_and_spearman_match_scipy() {
        let fx: Value = serde_json::from_str(include_str!("../../tests/fixtures/embedding/correlation.json")).unwrap();
        let cases = fx["cases"].as_array().unwrap();
        assert!(cases.len() >= 7);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let (x, y) = (floats(&case["x"]), floats(&case["y"]));
            close_opt(pearson(&x, &y).unwrap(), &case["pearson"], &format!("{name} pearson"));
            close_opt(spearman(&x, &y).unwrap(), &case["spearman"], &format!("{name} spearman"));
        }
    }

    #[test]
    fn average_ranks_share_tied_positions() {
        assert_eq!(average_ranks(&[0.5, 0.1, 0.5, 0.9, 0.1]), vec![3.5, 1.5, 3.5, 5.0, 1.5]);
        assert_eq!(average_ranks(&[]), Vec::<f64>::new());
    }

    #[test]
    fn correlation_errors_and_undefined_cases() {
        assert!(matches!(pearson(&[1.0, 2.0], &[1.0]), Err(EmbeddingEvalError::LengthMismatch { .. })));
        assert!(matches!(spearman(&[1.0, f64::NAN], &[1.0, 2.0]), Err(EmbeddingEvalError::NotFinite { .. })));
        assert_eq!(pearson(&[1.0], &[2.0]).unwrap(), None);
        assert_eq!(spearman(&[0.3, 0.3, 0.3], &[0.0, 1.0, 1.0]).unwrap(), None);
        close(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap().unwrap(), 1.0, "perfect");
    }

    fn judgements(v: &Value) -> Vec<Judgement> {
        v.as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, row)| Judgement {
                query_id: row[0].as_str().unwrap().to_string(),
                doc_id: row[1].as_str().unwrap().to_string(),
                score: row[2].as_f64().unwrap(),
                line: i + 2,
            })
            .collect()
    }

    fn check_retrieval(fx: &Value, relevance: Relevance, name: &str) -> RetrievalMetrics {
        let (qids, dids) = (strings(&fx["query_ids"]), strings(&fx["corpus_ids"]));
        let scores: Vec<Vec<f64>> = fx["scores"].as_array().unwrap().iter().map(floats).collect();
        let m = retrieval_metrics(&qids, &dids, &judgements(&fx["qrels"]), relevance, |q| scores[q].clone()).unwrap();
        let e = &fx["expected"];
        assert_eq!(m.n_queries as u64, e["n_queries"].as_u64().unwrap(), "{name} n_queries");
        assert_eq!(m.n_queries + m.n_queries_without_relevant, qids.len());
        let value = serde_json::to_value(&m).unwrap();
        for key in ["mrr@10", "ndcg@10", "recall@1", "recall@5", "recall@10", "map@100"] {
            close(value[key].as_f64().unwrap(), e[key].as_f64().unwrap(), &format!("{name} {key}"));
        }
        m
    }

    #[test]
    fn retrieval_matches_sentence_transformers_with_ties_and_a_query_without_qrels() {
        let fx: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/embedding/retrieval_binary.json")).unwrap();
        let m = check_retrieval(&fx, Relevance::Binary, "binary");
        assert_eq!(m.n_queries_without_relevant, 1);
        assert_eq!(m.n_corpus, 150);
    }

    #[test]
    fn graded_ndcg_matches_sklearn_and_zero_scores_are_not_relevant() {
        let fx: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/embedding/retrieval_graded.json")).unwrap();
        check_retrieval(&fx, Relevance::Graded, "graded");
        // The same qrels with every positive score set to 1: sentence-transformers' binary nDCG.
        let (qids, dids) = (strings(&fx["query_ids"]), strings(&fx["corpus_ids"]));
        let scores: Vec<Vec<f64>> = fx["scores"].as_array().unwrap().iter().map(floats).collect();
        let mut binary = judgements(&fx["qrels"]);
        for j in &mut binary {
            j.score = if j.score > 0.0 { 1.0 } else { 0.0 };
        }
        let m = retrieval_metrics(&qids, &dids, &binary, Relevance::Binary, |q| scores[q].clone()).unwrap();
        close(m.ndcg_at_10, fx["expected"]["ndcg@10_binary"].as_f64().unwrap(), "binary ndcg");
    }

    #[test]
    fn ties_go_to_the_smaller_document_id() {
        let ids: Vec<String> = ["d3", "d1", "d2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(top_k(&[0.5, 0.5, 0.9], &ids, 3), vec![2, 1, 0]);
        assert_eq!(top_k(&[0.5, 0.5, 0.9], &ids, 2), vec![2, 1]);
        let qrels = vec![Judgement { query_id: "q".into(), doc_id: "d3".into(), score: 1.0, line: 0 }];
        let m =
            retrieval_metrics(&["q".to_string()], &ids, &qrels, Relevance::Binary, |_| vec![0.5, 0.5, 0.1]).unwrap();
        close(m.mrr_at_10, 0.5, "tied relevant document ranks second");
        close(m.recall_at_1, 0.0, "recall@1");
    }

    #[test]
    fn retrieval_refuses_bad_input() {
        let ids = vec!["d1".to_string()];
        let q = vec!["q".to_string()];
        let judged = |d: &str, s: f64| vec![Judgement { query_id: "q".into(), doc_id: d.into(), score: s, line: 0 }];
        let none = retrieval_metrics(&q, &ids, &judged("d1", 0.0), Relevance::Graded, |_| vec![0.1]);
        assert!(matches!(none, Err(EmbeddingEvalError::NoRelevantQuery)));
        let unknown = retrieval_metrics(&q, &ids, &judged("d9", 1.0), Relevance::Binary, |_| vec![0.1]);
        assert!(matches!(unknown, Err(EmbeddingEvalError::UnknownJudgedId { which: "document", .. })));
        let short = retrieval_metrics(&q, &ids, &judged("d1", 1.0), Relevance::Binary, |_| vec![]);
        assert!(matches!(short, Err(EmbeddingEvalError::ScoreRow { expected: 1, got: 0, .. })));
    }

    #[test]
    fn distributions_and_histograms_match_numpy() {
        let fx: Value = serde_json::from_str(include_str!("../../tests/fixtures/embedding/distribution.json")).unwrap();
        let bins = fx["bins"].as_u64().unwrap() as usize;
        close(bin_edges(-1.0, 1.0, bins)[11], floats(&fx["cases"][0]["edges"])[11], "edge 11");
        for case in fx["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let values = floats(&case["values"]);
            let d = distribution(&values).unwrap();
            assert_eq!(d.n, values.len());
            for (key, got) in
                [("mean", d.mean), ("median", d.median), ("p10", d.p10), ("p90", d.p90), ("min", d.min), ("max", d.max)]
            {
                close(got, case[key].as_f64().unwrap(), &format!("{name} {key}"));
            }
            let want: Vec<usize> =
                case["histogram"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap() as usize).collect();
            assert_eq!(histogram(&values, bins, -1.0, 1.0).unwrap(), want, "{name} histogram");
            let edges = bin_edges(-1.0, 1.0, bins);
            for (got, want) in edges.iter().zip(floats(&case["edges"])) {
                assert!((got - want).abs() < 1e-15, "{name} edges: {got} vs numpy's {want}");
            }
        }
        assert!(distribution(&[]).is_none());
        assert!(histogram(&[0.0], 0, -1.0, 1.0).is_err());
    }

    #[test]
    fn pair_metrics_split_related_and_unrelated() {
        let cosines = [0.9, 0.8, 0.2, 0.1, 1.0000001];
        let labels = [1.0, 0.6, 0.4, 0.0, 1.0];
        let m = pair_metrics(&cosines, &labels, &PairMetricOptions::default()).unwrap();
        assert_eq!((m.n_pairs, m.n_related, m.n_unrelated), (5, 3, 2));
        assert_eq!(m.histogram.related.iter().sum::<usize>(), 3, "a cosine just above 1 lands in the last bin");
        assert_eq!(m.histogram.related[39], 1);
        close(m.unrelated.as_ref().unwrap().median, 0.15, "unrelated median");
        let constant = pair_metrics(&[0.1, 0.5], &[1.0, 1.0], &PairMetricOptions::default()).unwrap();
        assert_eq!((constant.spearman, constant.pearson, constant.unrelated), (None, None, None));
    }

    fn temp(name: &str, contents: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        fs::write(&path, contents).unwrap();
        (dir, path)
    }

    fn err_text(e: EmbeddingEvalError) -> String {
        e.to_string()
    }

    #[test]
    fn pairs_load_from_csv_tsv_and_jsonl() {
        let (_d, csv) = temp("p.csv", "text1,text2,label\n\"a, b\",c,1\nd,e,0.25\n");
        let pairs = load_pairs(&csv, &PairsOptions::default()).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!((pairs[0].text1.as_str(), pairs[0].label, pairs[1].line), ("a, b", 1.0, 3));
        let (_d, tsv) = temp("p.tsv", "q\td\ty\nx\ty\t0\n");
        let options =
            PairsOptions { text1_col: "q".into(), text2_col: "d".into(), label_col: "y".into(), format: None };
        assert_eq!(load_pairs(&tsv, &options).unwrap()[0].text2, "y");
        let (_d, jsonl) = temp(
            "p.jsonl",
            "{\"text1\":\"a\",\"text2\":\"b\",\"label\":1}\n\n{\"text1\":\"c\",\"text2\":\"d\",\"label\":\"0.5\"}\n",
        );
        let pairs = load_pairs(&jsonl, &PairsOptions::default()).unwrap();
        assert_eq!((pairs[1].line, pairs[1].label), (3, 0.5));
    }

    #[test]
    fn bad_pairs_name_file_line_and_field() {
        let cases = [
            ("p.csv", "text1,text2,label\na,b,1\n , c,0\n", ":3: field `text1`: empty text"),
            ("p.csv", "text1,text2,label\na,b,1\nc,d,1.5\n", ":3: field `label`: must be a number in [0, 1]"),
            ("p.csv", "text1,text2,label\na,b,yes\n", ":2: field `label`"),
            ("p.csv", "text1,text2,label\na,b\n", ":2: row has 2 fields, the header has 3"),
            ("p.csv", "text1,text2\na,b\n", ":1: no column `label` in the header row, which has 2 column(s)"),
            ("p.csv", "text1,text2,label\n", "no rows"),
            ("p.jsonl", "{\"text1\":\"a\",\"text2\":\"b\",\"label\":1}\n{\"text1\":\"a\",", ":2: not valid JSON"),
            ("p.jsonl", "[1,2]\n", ":1: line is JSON but not an object"),
            ("p.jsonl", "{\"text1\":\"a\",\"label\":1}\n", ":1: object has no key `text2`"),
            (
                "p.jsonl",
                "{\"text1\":\"a\",\"text2\":3,\"label\":1}\n",
                ":1: column `text2` is a number, expected a string",
            ),
            (
                "p.jsonl",
                "{\"text1\":\"a\",\"text2\":\"b\",\"label\":null}\n",
                ":1: field `label`: must be a number in [0, 1], got 0 character(s) of text",
            ),
            ("p.txt", "x", "cannot tell the format"),
        ];
        for (name, contents, want) in cases {
            let (_d, path) = temp(name, contents);
            let got = err_text(load_pairs(&path, &PairsOptions::default()).unwrap_err());
            assert!(got.contains(want), "{contents:?}: {got:?} lacks {want:?}");
            assert!(got.contains(name), "{got:?} names the file");
        }
    }

    #[test]
    fn triplets_load_and_columns_tell_the_kind_of_file() {
        let (_d, csv) = temp("t.csv", "anchor,positive,negative\nchest pain,angina,rash\n");
        assert_eq!(column_names(&csv, None).unwrap(), ["anchor", "positive", "negative"]);
        let t = load_triplets(&csv, None).unwrap();
        assert_eq!((t[0].line, t[0].anchor.as_str(), t[0].negative.as_str()), (2, "chest pain", "rash"));
        let (_d, jsonl) = temp("t.jsonl", "\n{\"anchor\":\"a\",\"positive\":\"b\",\"negative\":\" \"}\n");
        let mut keys = column_names(&jsonl, None).unwrap();
        keys.sort();
        assert_eq!(keys, ["anchor", "negative", "positive"]);
        let err = err_text(load_triplets(&jsonl, None).unwrap_err());
        assert!(err.contains("t.jsonl:2: field `negative`: empty text"), "{err}");
        let (_d, bad) = temp("b.jsonl", "not json\n");
        assert!(column_names(&bad, None).unwrap().is_empty());
        let (_d, tsv) = temp("t.tsv", "anchor\tpositive\nx\ty\n");
        let err = err_text(load_triplets(&tsv, None).unwrap_err());
        assert!(err.contains("no column `negative`"), "{err}");
    }

    #[test]
    fn retrieval_set_loads_and_checks_ids() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, s: &str| {
            let p = dir.path().join(name);
            fs::write(&p, s).unwrap();
            p
        };
        let queries = write("q.jsonl", "{\"_id\":\"q1\",\"text\":\"chest pain\"}\n{\"_id\":2,\"text\":\"fever\"}\n");
        let corpus = write("c.csv", "id,text\nd1,angina\nd2,pyrexia\n");
        let qrels = write("qrels.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\n2\td2\t1\n");
        let options = RetrievalOptions::default();
        let set = load_retrieval_set(&queries, &corpus, &qrels, &options).unwrap();
        assert_eq!((set.queries.len(), set.corpus.len(), set.qrels.len()), (2, 2, 2));
        assert_eq!((set.relevance, set.qrels[0].score, set.queries[1].id.as_str()), (Relevance::Graded, 2.0, "2"));
        let binary = write("b.csv", "query_id,doc_id\nq1,d1\n");
        assert_eq!(load_retrieval_set(&queries, &corpus, &binary, &options).unwrap().relevance, Relevance::Binary);

        let cases = [
            ("e1.tsv", "query_id\tdoc_id\nq1\td1\nq9\td2\n", ":3: field `query_id`: an id that is not in"),
            ("e2.tsv", "query_id\tdoc_id\nq1\td7\n", ":2: field `doc_id`: an id that is not in"),
            ("e3.tsv", "query_id\tdoc_id\tscore\nq1\td1\t-1\n", ":2: field `score`: must be a number >= 0"),
            (
                "e4.tsv",
                "query_id\tdoc_id\nq1\td1\nq1\td1\n",
                ":3: the same query and document are judged twice (first on line 2)",
            ),
            ("e5.tsv", "query_id\tdoc_id\n\td1\n", ":2: field `query_id`: empty id"),
        ];
        for (name, contents, want) in cases {
            let path = write(name, contents);
            let got = err_text(load_retrieval_set(&queries, &corpus, &path, &options).unwrap_err());
            assert!(got.contains(want) && got.contains(name), "{name}: {got:?} lacks {want:?}");
        }
        let dup = write("dup.csv", "id,text\nd1,a\nd2,b\nd1,c\n");
        let got = err_text(load_retrieval_set(&queries, &dup, &qrels, &options).unwrap_err());
        assert!(got.contains("dup.csv:4: field `id`: duplicate id (first on line 2)"), "{got}");
        let empty = write("empty.jsonl", "{\"id\":\"q1\",\"text\":\"  \"}\n");
        let got = err_text(load_retrieval_set(&empty, &corpus, &qrels, &options).unwrap_err());
        assert!(got.contains("empty.jsonl:1: field `text`: empty text"), "{got}");
    }

    #[test]
    fn html_report_is_self_contained_and_escaped() {
        let pairs = pair_metrics(&[0.9, 0.7, 0.2, -0.1], &[1.0, 1.0, 0.0, 0.0], &PairMetricOptions::default()).unwrap();
        let eval = |role: &str| ModelEvaluation {
            role: role.into(),
            model: "<runs/a&b>".into(),
            pairs: Some(pairs.clone()),
            retrieval: None,
            texts_embedded: 8,
            seconds: 0.1,
        };
        let report = EmbeddingReport {
            created_by: "test".into(),
            pairs_file: Some("p.csv".into()),
            queries_file: None,
            corpus_file: None,
            qrels_file: None,
            models: vec![eval("model"), eval("base")],
        };
        let html = render_embedding_html(&report);
        assert!(html.contains("&lt;runs/a&amp;b&gt;") && !html.contains("<runs/a"));
        assert_eq!(html.matches("<svg").count(), 2, "one histogram per model");
        assert!(!html.contains("http") && !html.contains("<script"));
        assert!(html.contains("+0.0000"), "the difference column");
        let dir = tempfile::tempdir().unwrap();
        write_embedding_report(&report, dir.path()).unwrap();
        let back: EmbeddingReport =
            serde_json::from_str(&fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
        // Counts and labels exactly; floats to 1e-12 (serde_json's default parsing may be an ulp off).
        assert_eq!(back.models.len(), 2);
        let (a, b) = (back.models[0].pairs.as_ref().unwrap(), pairs);
        assert_eq!(
            (&a.histogram.related, a.n_related, &back.models[1].role),
            (&b.histogram.related, 2, &"base".to_string())
        );
        assert!((a.spearman.unwrap() - b.spearman.unwrap()).abs() < 1e-12);
    }
}
