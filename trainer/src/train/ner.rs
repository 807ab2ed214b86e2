//! `bedside train ner`: token classification (named entities, PHI) on the runtime's one
//! encoder with a token head, in the shared training loop (fit.rs).
//!
//! - Data: CoNLL, HF-style JSONL (`tokens`/`ner_tags`) or span JSONL (doccano, Label Studio),
//!   read by `data/tags.rs`. Every example becomes a text with words (byte ranges) and a tag
//!   per word; span files are cut into words by `tags::split_words`, word files are joined
//!   with single spaces.
//! - Labels reach subtokens as in transformers' `run_ner.py`: the first subtoken of a word
//!   takes the word's tag, the others are ignored by the loss (`first`) or take the tag with
//!   `B-` turned into `I-` (`all`, IOB2 only).
//! - Long texts train and predict in windows with stride, as the runtime cuts them; a token
//!   takes its prediction from the window where it is most central
//!   (`pipeline::entities::token_probabilities`, the runtime's own rule), and a word takes its
//!   first subtoken's label.
//! - Selection: validation entity micro-F1 as seqeval computes it (`eval/entities.rs`). The
//!   report gives per-type precision/recall/F1 (default and strict modes), micro/macro, the
//!   token confusion, and two baselines on the same test set: a frozen-encoder logistic
//!   regression on first-subtoken states, and the regex scrubber.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use bedside_runtime::bundle::Task;
use bedside_runtime::checkpoint::{Checkpoint, ServingSettings};
use bedside_runtime::model::{HeadFeatures, Mode, SplitMix64};
use bedside_runtime::pipeline::aggregate::Aggregation;
use bedside_runtime::pipeline::entities::{argmax, token_probabilities, EntityAggregation};
use bedside_runtime::pipeline::scrub::{PhiKind, ScrubOptions, Scrubber};
use bedside_runtime::pipeline::window::{self, Window};
use candle_core::Tensor;
use serde::Serialize;

use super::classifier::{ModelOptions, TrainableClassifier};
use super::config::{TaskKind, TrainConfig};
use super::fit::{fit, Evaluated, Learner, RunControl};
use super::probe::{fit_multiclass, ProbeOptions};
use super::run::{device, save_checkpoint, say_how_bf16_runs};
use crate::data::tags::{self, split_words, TagFormat, TagLoadOptions, TagScheme, TaggedExample};
use crate::durable;
use crate::eval::entities::{entity_report, token_confusion, EntityMode, EntityReport, TokenConfusion};

/// The loss ignores positions with this label ([CLS], [SEP], padding, later subtokens).
const IGNORE: i64 = -1;
/// Windows per forward pass when predicting.
const PREDICT_BATCH: usize = 16;
/// Words the frozen-encoder baseline fits on at most (a seeded sample beyond that).
const BASELINE_MAX_WORDS: usize = 20_000;

/// How word tags reach subtokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubtokenLabels {
    First,
    All,
}

impl std::str::FromStr for SubtokenLabels {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "first" => Ok(SubtokenLabels::First),
            "all" => Ok(SubtokenLabels::All),
            other => bail!("label_subtokens {other:?}: use first or all"),
        }
    }
}

pub fn parse_scheme(s: &str) -> Result<TagScheme> {
    match s.to_ascii_lowercase().as_str() {
        "iob2" | "bio" => Ok(TagScheme::Iob2),
        "bioes" | "iobes" => Ok(TagScheme::Bioes),
        other => bail!("tag_scheme {other:?}: use iob2 or bioes"),
    }
}

/// One tagged text: its words as byte ranges and a tag per word.
#[derive(Debug, Clone)]
pub struct Sentence {
    pub text: String,
    pub words: Vec<(usize, usize)>,
    pub tags: Vec<String>,
    /// 1-based line of the file it came from.
    pub line: usize,
}

/// Reads a tagging file as sentences. Errors name the file and line, never the text.
pub fn read_sentences(path: &Path, scheme: TagScheme, format: Option<TagFormat>) -> Result<Vec<Sentence>> {
    let options = TagLoadOptions { format, scheme: Some(scheme), ..Default::default() };
    let examples = tags::load_tagged(path, &options)?;
    examples
        .into_iter()
        .map(|example| match example {
            TaggedExample::Words(w) => {
                let mut text = String::new();
                let mut words = Vec::with_capacity(w.tokens.len());
                for token in &w.tokens {
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    words.push((text.len(), text.len() + token.len()));
                    text.push_str(token);
                }
                Ok(Sentence { text, words, tags: w.tags, line: w.line })
            }
            TaggedExample::Spans(s) => {
                let line = s.line;
                let tagged = s.to_words(scheme).map_err(|e| tags::TagError::SpanToWords {
                    path: path.into(),
                    line,
                    entity: e.entity,
                    issue: e.issue,
                })?;
                Ok(Sentence { words: split_words(&s.text), text: s.text, tags: tagged.tags, line })
            }
        })
        .collect()
}

/// Tags in head order: `O` first, then the rest sorted, as seen in training.
pub fn label_list(train: &[Sentence]) -> Vec<String> {
    let mut set: std::collections::BTreeSet<&str> =
        train.iter().flat_map(|s| s.tags.iter().map(String::as_str)).collect();
    let mut labels = Vec::with_capacity(set.len() + 1);
    labels.push("O".to_string());
    set.remove("O");
    labels.extend(set.into_iter().map(str::to_string));
    labels
}

/// A sentence's subtokens: ids, the word each belongs to, windows as the runtime cuts them.
struct Encoded {
    ids: Vec<u32>,
    /// Per subtoken, the index of the word it starts in (`None`: between words).
    word_of: Vec<Option<usize>>,
    windows: Vec<Window>,
}

fn encode(model: &TrainableClassifier, sentence: &Sentence, index: usize) -> Result<Option<Encoded>> {
    if sentence.text.trim().is_empty() {
        return Ok(None);
    }
    let tokens = match model.tokenizer().tokenize(&sentence.text, index) {
        Ok(t) => t,
        // Only characters the tokenizer drops: nothing to tag.
        Err(bedside_runtime::Error::EmptyText { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let word_of = tokens
        .offsets
        .iter()
        .map(|&(start, end)| {
            let w = sentence.words.partition_point(|&(_, e)| e <= start);
            sentence.words.get(w).filter(|&&(s, _)| s <= start && start < end.max(start + 1)).map(|_| w)
        })
        .collect();
    let windows = window::split(&tokens, model.window(), model.tokenizer().special_ids());
    Ok(Some(Encoded { ids: tokens.ids, word_of, windows }))
}

/// One training window: ids with specials, a label (or [`IGNORE`]) per position.
struct Item {
    ids: Vec<u32>,
    labels: Vec<i64>,
}

fn training_items(
    model: &TrainableClassifier,
    sentences: &[Sentence],
    labels: &[String],
    subtokens: SubtokenLabels,
) -> Result<Vec<Item>> {
    let index: BTreeMap<&str, i64> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i as i64)).collect();
    let id_of = |tag: &str| index.get(tag).copied();
    let mut items = Vec::new();
    for (n, sentence) in sentences.iter().enumerate() {
        let Some(encoded) = encode(model, sentence, n)? else { continue };
        let mut token_labels = Vec::with_capacity(encoded.ids.len());
        let mut previous = None;
        for word in &encoded.word_of {
            let label = match *word {
                None => IGNORE,
                Some(w) if previous != Some(w) => id_of(&sentence.tags[w]).unwrap_or(IGNORE),
                Some(w) => match subtokens {
                    SubtokenLabels::First => IGNORE,
                    SubtokenLabels::All => {
                        let tag = &sentence.tags[w];
                        let continued = tag.strip_prefix("B-").map_or(tag.clone(), |t| format!("I-{t}"));
                        id_of(&continued).or_else(|| id_of(tag)).unwrap_or(IGNORE)
                    }
                },
            };
            previous = *word;
            token_labels.push(label);
        }
        for w in &encoded.windows {
            let mut window_labels = Vec::with_capacity(w.ids.len());
            window_labels.push(IGNORE);
            window_labels.extend_from_slice(&token_labels[w.first_token..w.first_token + w.num_tokens]);
            window_labels.push(IGNORE);
            items.push(Item { ids: w.ids.clone(), labels: window_labels });
        }
    }
    Ok(items)
}

/// Per sentence, a predicted tag per word: each word takes its first subtoken's label, from
/// the window where that subtoken is most central; a word with no subtoken is `O`.
pub fn predict_tags(
    model: &TrainableClassifier,
    sentences: &[Sentence],
    labels: &[String],
) -> Result<Vec<Vec<String>>> {
    let mut out = Vec::with_capacity(sentences.len());
    for (n, sentence) in sentences.iter().enumerate() {
        let mut tags = vec!["O".to_string(); sentence.words.len()];
        if let Some(encoded) = encode(model, sentence, n)? {
            let mut logits = Vec::with_capacity(encoded.windows.len());
            for batch in encoded.windows.chunks(PREDICT_BATCH) {
                let ids: Vec<&[u32]> = batch.iter().map(|w| w.ids.as_slice()).collect();
                let (batch_logits, _) = model.token_logits(&ids, Mode::Eval)?;
                logits.extend(batch_logits.to_device(&candle_core::Device::Cpu)?.to_vec3::<f32>()?);
            }
            let probabilities = token_probabilities(&encoded.windows, &logits, encoded.ids.len());
            let mut previous = None;
            for (t, word) in encoded.word_of.iter().enumerate() {
                if let Some(w) = *word {
                    if previous != Some(w) {
                        tags[w] = labels[argmax(&probabilities[t]).min(labels.len() - 1)].clone();
                    }
                }
                previous = *word;
            }
        }
        out.push(tags);
    }
    Ok(out)
}

fn gold(sentences: &[Sentence]) -> Vec<Vec<String>> {
    sentences.iter().map(|s| s.tags.clone()).collect()
}

/// Entity scores of `predicted` against `sentences`, in seqeval's default mode and strict mode.
#[derive(Debug, Clone, Serialize)]
pub struct NerScores {
    pub sentences: usize,
    pub words: usize,
    pub default: EntityReport,
    pub strict: EntityReport,
    pub tokens: TokenConfusion,
}

pub fn score(sentences: &[Sentence], predicted: &[Vec<String>], scheme: TagScheme) -> Result<NerScores> {
    let gold = gold(sentences);
    // Predicted tags may be malformed for strict mode only in their prefixes; the head only
    // predicts training tags, which passed the scheme check.
    Ok(NerScores {
        sentences: sentences.len(),
        words: gold.iter().map(Vec::len).sum(),
        default: entity_report(&gold, predicted, EntityMode::Default)?,
        strict: entity_report(&gold, predicted, EntityMode::Strict(scheme))?,
        tokens: token_confusion(&gold, predicted)?,
    })
}

/// The regex scrubber as a tagger: each word a scrubber span overlaps takes the span's kind
/// as its entity type (`DATE`, `PHONE`, …), where that type is one the model learns.
pub fn rule_tags(sentences: &[Sentence], labels: &[String], scheme: TagScheme) -> Vec<Vec<String>> {
    let scrubber = Scrubber::new(ScrubOptions::all());
    let known = |kind: &str| labels.iter().any(|l| l.get(2..) == Some(kind));
    sentences
        .iter()
        .map(|s| {
            let scrubbed = scrubber.scrub(&s.text);
            let mut chunks = Vec::new();
            for r in &scrubbed.replacements {
                let kind = rule_label(r.kind);
                if !known(kind) {
                    continue;
                }
                let first = s.words.partition_point(|&(_, e)| e <= r.original_start);
                let last = s.words.partition_point(|&(st, _)| st < r.original_end);
                if first < last {
                    chunks.push(tags::Chunk { start: first, end: last, kind: kind.to_string() });
                }
            }
            chunks.sort_by_key(|c| c.start);
            chunks.dedup_by(|b, a| b.start < a.end);
            scheme.encode(&chunks, s.words.len())
        })
        .collect()
}

/// The entity type a scrubber kind stands for in PHI data sets.
fn rule_label(kind: PhiKind) -> &'static str {
    match kind {
        PhiKind::Date => "DATE",
        PhiKind::Phone | PhiKind::Fax => "PHONE",
        PhiKind::Email => "EMAIL",
        PhiKind::Url => "URL",
        PhiKind::Mrn => "MRN",
        PhiKind::AgeOver89 => "AGE",
        PhiKind::Name => "NAME",
    }
}

/// The loop's part for token classification.
struct Tagging<'a> {
    ckpt: &'a Checkpoint,
    items: Vec<Item>,
    val: &'a [Sentence],
    labels: &'a [String],
    serving: ServingSettings,
    best_dir: &'a Path,
    on_eval: &'a mut dyn FnMut(&NerEvent),
}

/// What a caller sees after each evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct NerEvent {
    pub epoch: usize,
    pub step: usize,
    pub train_loss: f64,
    pub val_f1: f64,
    pub best: bool,
    pub samples_per_second: f64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NerPoint {
    pub epoch: usize,
    pub step: usize,
    pub train_loss: f64,
    pub val_f1: Option<f64>,
}

impl Learner for Tagging<'_> {
    type Point = NerPoint;
    type Scores = ();

    fn items(&self) -> usize {
        self.items.len()
    }

    fn lengths(&self) -> Option<Vec<usize>> {
        Some(self.items.iter().map(|i| i.ids.len()).collect())
    }

    fn loss(&self, model: &TrainableClassifier, batch: &[usize], mode: Mode) -> Result<Option<Tensor>> {
        let ids: Vec<&[u32]> = batch.iter().map(|&i| self.items[i].ids.as_slice()).collect();
        let (logits, _) = model.token_logits(&ids, mode)?;
        let (b, seq, n) = logits.dims3()?;
        let (mut positions, mut targets) = (Vec::new(), Vec::new());
        for (row, &i) in batch.iter().enumerate() {
            for (p, &label) in self.items[i].labels.iter().enumerate() {
                if label != IGNORE {
                    positions.push((row * seq + p) as u32);
                    targets.push(label as u32);
                }
            }
        }
        if positions.is_empty() {
            return Ok(None);
        }
        let flat = logits.reshape((b * seq, n))?;
        let index = Tensor::from_vec(positions, targets.len(), model.device())?;
        let picked = flat.index_select(&index, 0)?;
        Ok(Some(model.loss(&picked, &targets, None)?))
    }

    fn evaluate(&mut self, model: &TrainableClassifier) -> Result<(Option<f64>, ())> {
        let predicted = predict_tags(model, self.val, self.labels)?;
        let report = entity_report(&gold(self.val), &predicted, EntityMode::Default)?;
        Ok((Some(report.micro.f1), ()))
    }

    fn better(&self, candidate: f64, best: f64) -> bool {
        candidate > best
    }

    fn save_best(&self, model: &TrainableClassifier) -> Result<()> {
        save_checkpoint(model, self.ckpt, &self.serving, self.best_dir)
    }

    fn record(&mut self, at: &Evaluated, _: ()) -> Result<(serde_json::Value, NerPoint)> {
        let event = NerEvent {
            epoch: at.epoch,
            step: at.step,
            train_loss: at.train_loss,
            val_f1: at.value.unwrap_or(0.0),
            best: at.best,
            samples_per_second: at.samples_per_second,
        };
        (self.on_eval)(&event);
        let point = NerPoint { epoch: at.epoch, step: at.step, train_loss: at.train_loss, val_f1: at.value };
        Ok((serde_json::to_value(&event)?, point))
    }
}

/// The report `train ner` writes (`report.json`, `report.md`).
#[derive(Debug, Clone, Serialize)]
pub struct NerReport {
    pub base_model: String,
    pub labels: Vec<String>,
    pub scheme: TagScheme,
    pub label_subtokens: SubtokenLabels,
    pub train_sentences: usize,
    pub training_windows: usize,
    pub best_epoch: Option<usize>,
    pub history: Vec<NerPoint>,
    pub validation: NerScores,
    pub test: Option<NerScores>,
    /// Logistic regression on the frozen base encoder's first-subtoken states, scored on the
    /// test split (validation without one).
    pub frozen_encoder_baseline: Option<NerScores>,
    /// The regex scrubber as a tagger on the same split, for the types it knows.
    pub rules_baseline: Option<NerScores>,
}

pub struct NerResult {
    pub best_dir: PathBuf,
    /// `None` when the run stopped at `stop_after_steps`.
    pub report: Option<NerReport>,
}

/// The splits of a `train ner` run.
pub struct NerData {
    pub train: Vec<Sentence>,
    pub val: Vec<Sentence>,
    pub test: Option<Vec<Sentence>>,
}

/// Reads `config.train`, `config.val` (or a seeded `val_ratio` share of train) and `config.test`.
pub fn prepare_ner(config: &TrainConfig) -> Result<NerData> {
    let scheme = parse_scheme(&config.tag_scheme)?;
    let format = config.tag_format.as_deref().map(str::parse::<TagFormat>).transpose()?;
    let read =
        |path: &Path| read_sentences(path, scheme, format).with_context(|| format!("loading {}", path.display()));
    let mut train = read(&config.train)?;
    let val = match &config.val {
        Some(path) => read(path)?,
        None => {
            // A seeded share of the training sentences.
            let mut rng = SplitMix64::new(config.seed ^ 0x6e65_725f_7661_6c00);
            let mut order: Vec<usize> = (0..train.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            let n_val = ((train.len() as f64) * config.val_ratio).round().max(1.0) as usize;
            let mut is_val = vec![false; train.len()];
            order.iter().take(n_val.min(train.len().saturating_sub(1))).for_each(|&i| is_val[i] = true);
            let mut keep = Vec::new();
            let mut val = Vec::new();
            for (s, v) in train.drain(..).zip(is_val) {
                if v {
                    val.push(s)
                } else {
                    keep.push(s)
                }
            }
            train = keep;
            val
        }
    };
    let test = config.test.as_deref().map(read).transpose()?;
    ensure!(!train.is_empty(), "{}: no tagged sentences", config.train.display());
    ensure!(!val.is_empty(), "the validation set is empty");
    Ok(NerData { train, val, test })
}

/// Fine-tunes `ckpt` with a token head on `data`; writes `<out>/best/` (a transformers
/// `…ForTokenClassification` directory that `bedside export` bundles), `<out>/log.jsonl`,
/// `<out>/state/` and `<out>/report.{json,md}`.
pub fn train_ner(
    ckpt: &Checkpoint,
    data: &NerData,
    config: &TrainConfig,
    control: &RunControl,
    on_eval: &mut dyn FnMut(&NerEvent),
) -> Result<NerResult> {
    config.validate()?;
    let scheme = parse_scheme(&config.tag_scheme)?;
    let subtokens: SubtokenLabels = config.label_subtokens.parse()?;
    ensure!(
        !(subtokens == SubtokenLabels::All && scheme == TagScheme::Bioes),
        "label_subtokens all: continuation subtokens take I- tags, which is IOB2; use first with BIOES"
    );
    let labels = label_list(&data.train);
    ensure!(labels.len() >= 2, "the training tags name no entity type");
    let device = device(&config.device)?;
    say_how_bf16_runs(config, &device)?;
    let options = ModelOptions {
        max_seq_len: config.max_seq_len_for(TaskKind::Ner),
        stride: config.stride_for(TaskKind::Ner),
        dropout: config.dropout,
        features: HeadFeatures::default(),
        token_head: true,
    };
    let model = TrainableClassifier::new(ckpt, labels.len(), options, config.seed, &device)?;
    let items = training_items(&model, &data.train, &labels, subtokens)?;
    ensure!(!items.is_empty(), "no training window has a labelled token");
    let serving = ServingSettings {
        task: Task::TokenClassification,
        labels: labels.clone(),
        max_seq_len: model.window().max_len(),
        stride: model.window().stride(),
        aggregation: Aggregation::Mean,
        decision_threshold: 0.5,
        min_confidence: 0.0,
        head_features: HeadFeatures::default(),
        // Trained on first subtokens, a word is what its first subtoken says.
        entity_aggregation: match subtokens {
            SubtokenLabels::First => EntityAggregation::First,
            SubtokenLabels::All => EntityAggregation::Average,
        },
        // Tagged sentences are trained on as written (scrubbing would move the labelled
        // spans), so serving reads raw text too.
        scrub: None,
    };
    // The baseline, on the encoder before it moves.
    let baseline_split = data.test.as_deref().unwrap_or(&data.val);
    let frozen = frozen_baseline(&model, &data.train, &labels, baseline_split, scheme, config.seed)?;
    let best_dir = config.out.join("best");
    let n_items = items.len();
    let mut learner = Tagging { ckpt, items, val: &data.val, labels: &labels, serving, best_dir: &best_dir, on_eval };
    let Some(state) = fit(&model, config, control, &mut learner)? else {
        return Ok(NerResult { best_dir, report: None });
    };

    let best = Checkpoint::from_dir(&best_dir).with_context(|| format!("reading {}", best_dir.display()))?;
    let trained = TrainableClassifier::from_trained(&best, options, &device)?;
    let validation = score(&data.val, &predict_tags(&trained, &data.val, &labels)?, scheme)?;
    let test = match &data.test {
        Some(test) => Some(score(test, &predict_tags(&trained, test, &labels)?, scheme)?),
        None => None,
    };
    let rules = rule_tags(baseline_split, &labels, scheme);
    let rules_baseline =
        rules.iter().any(|s| s.iter().any(|t| t != "O")).then(|| score(baseline_split, &rules, scheme));
    let report = NerReport {
        base_model: config.base.clone(),
        labels,
        scheme,
        label_subtokens: subtokens,
        train_sentences: data.train.len(),
        training_windows: n_items,
        best_epoch: state.best_epoch,
        history: state.history,
        validation,
        test,
        frozen_encoder_baseline: frozen,
        rules_baseline: rules_baseline.transpose()?,
    };
    durable::write_file_atomic(&config.out.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    durable::write_file_atomic(&config.out.join("report.md"), render_markdown(&report).as_bytes())?;
    Ok(NerResult { best_dir, report: Some(report) })
}

/// Logistic regression (C = 1) on the frozen encoder's first-subtoken states of up to
/// [`BASELINE_MAX_WORDS`] training words, put in the token head and scored on `split`.
fn frozen_baseline(
    model: &TrainableClassifier,
    train: &[Sentence],
    labels: &[String],
    split: &[Sentence],
    scheme: TagScheme,
    seed: u64,
) -> Result<Option<NerScores>> {
    let index: BTreeMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    // Sentences in a seeded order until enough words are collected.
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = SplitMix64::new(seed ^ 0x6261_7365);
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for &n in &order {
        if y.len() >= BASELINE_MAX_WORDS {
            break;
        }
        let sentence = &train[n];
        let Some(encoded) = encode(model, sentence, n)? else { continue };
        for w in &encoded.windows {
            let states = model.hidden_states(&[w.ids.as_slice()])?.squeeze(0)?.to_device(&candle_core::Device::Cpu)?;
            let states = states.to_vec2::<f32>()?;
            let mut previous = if w.first_token == 0 { None } else { encoded.word_of[w.first_token - 1] };
            for p in 0..w.num_tokens {
                let t = w.first_token + p;
                if let Some(word) = encoded.word_of[t] {
                    if previous != Some(word) {
                        if let Some(&label) = index.get(sentence.tags[word].as_str()) {
                            x.push(states[1 + p].clone());
                            y.push(label);
                        }
                    }
                }
                previous = encoded.word_of[t];
            }
        }
    }
    let distinct: std::collections::BTreeSet<usize> = y.iter().copied().collect();
    if distinct.len() < 2 {
        return Ok(None);
    }
    let probe = fit_multiclass(&x, &y, labels.len(), &ProbeOptions::default())?;
    let h = probe.weight.first().map_or(0, Vec::len);
    let weight = Tensor::from_vec(probe.weight.concat(), (labels.len(), h), &candle_core::Device::Cpu)?;
    let bias = Tensor::from_vec(probe.bias.clone(), labels.len(), &candle_core::Device::Cpu)?;
    model.set_head(&weight, &bias)?;
    let predicted = predict_tags(model, split, labels)?;
    Ok(Some(score(split, &predicted, scheme)?))
}

fn render_markdown(r: &NerReport) -> String {
    let mut md = format!(
        "# Token classification report\n\nBase model: `{}`. Scheme {:?}, subtoken labels {:?}. {} training sentences in {} windows; best epoch {}.\n\n",
        r.base_model,
        r.scheme,
        r.label_subtokens,
        r.train_sentences,
        r.training_windows,
        r.best_epoch.map_or("-".into(), |e| e.to_string())
    );
    let mut section = |title: &str, s: &NerScores| {
        md.push_str(&format!(
            "## {title}\n\n{} sentences, {} words. Entity micro-F1 {:.4} (strict {:.4}), macro-F1 {:.4}; token accuracy {:.4}.\n\n| type | precision | recall | F1 | support |\n|---|---|---|---|---|\n",
            s.sentences, s.words, s.default.micro.f1, s.strict.micro.f1, s.default.macro_avg.f1, s.tokens.accuracy
        ));
        for t in &s.default.per_type {
            md.push_str(&format!(
                "| {} | {:.4} | {:.4} | {:.4} | {} |\n",
                t.kind, t.precision, t.recall, t.f1, t.support
            ));
        }
        md.push('\n');
    };
    section("Validation", &r.validation);
    if let Some(t) = &r.test {
        section("Test", t);
    }
    if let Some(b) = &r.frozen_encoder_baseline {
        section("Baseline: frozen encoder + logistic regression", b);
    }
    if let Some(b) = &r.rules_baseline {
        section("Baseline: regex scrubber", b);
    }
    md
}
