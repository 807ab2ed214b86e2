//! Entity-level metrics for token classification (NER), computed as Python `seqeval` 1.2.2 does,
//! plus a token-level confusion matrix.
//!
//! Every number is compared with seqeval's on the cases in
//! `trainer/tests/fixtures/seqeval_reference.json`, written by
//! `models/reference/make_seqeval_fixtures.py` (random and hand-written IOB2/BIOES sequences,
//! malformed ones included, in all three modes).
//!
//! Modes ([`EntityMode`]):
//! * **Default** — seqeval without `mode` (`get_entities`, the lenient conlleval chunking). A chunk
//!   starts at `B`/`S`, at an `I`/`E` after `O`, `E` or `S`, and wherever the type changes; it ends
//!   before `B`/`S`/`O`, after `E`/`S`, and wherever the type changes. So `O I-X` is an entity, and
//!   `B-X I-Y` is two. The prefix is a tag's first character and the type what follows the first
//!   `-` after it (`"_"` when empty: a bare `B` is type `_`).
//! * **Strict(Iob2 | Bioes)** — `mode='strict', scheme=IOB2 | IOBES`: only well-formed chunks
//!   count. IOB2: a chunk is `B-X (I-X)*`; an `I-X` that continues nothing is dropped. BIOES: a chunk
//!   is `S-X` or `B-X (I-X)* E-X`; a `B-X`/`I-X` run that is never closed by `E-X` is dropped. The
//!   type is everything after the prefix with `-` trimmed from both ends.
//!
//! Refused input ([`EntityError::UnsupportedTag`]): in strict mode, like seqeval (which raises), a
//! tag whose first character is not a prefix of the scheme (`E-X`/`S-X` under IOB2, or anything
//! outside `B I E S O`). In default mode, a tag whose first character is not one of `B I E S O`
//! (seqeval only warns there, and its chunker then treats such tags in ways that can join
//! entities across sentences); refusing keeps every entity inside its sentence. An empty tag is
//! refused in both modes (seqeval raises `IndexError`).
//!
//! Scores (seqeval's `classification_report` / `precision_recall_fscore_support`): entities are
//! (sentence, start, end, type) and match only exactly. Per type, precision = correct / predicted,
//! recall = correct / support, F1 = 2·P·R / (P + R). Types are sorted by code point (Python's
//! `sorted`). Micro sums the counts over types; macro is the plain mean over types; weighted
//! weights by support. `zero_division` is seqeval's default `"warn"`: a ratio with a zero
//! denominator is 0 (seqeval also prints a warning; here the counts say when: `predicted == 0` or
//! `support == 0`). Two cases seqeval leaves as NaN are 0 here: the macro average when there is no
//! entity type at all, and token accuracy over zero tokens (seqeval divides by zero).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;

use crate::data::tags::TagScheme;

/// How entities are read from tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityMode {
    /// seqeval's default (conlleval) chunking.
    Default,
    /// seqeval's `mode='strict'` with the given scheme.
    Strict(TagScheme),
}

/// Which side of an evaluation an input error is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Gold,
    Predicted,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Gold => "gold",
            Side::Predicted => "predicted",
        })
    }
}

/// Why entity metrics could not be computed. Tags are named by position only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntityError {
    #[error("{gold} gold sentence(s) but {predicted} predicted")]
    SentenceCountMismatch { gold: usize, predicted: usize },

    #[error("sentence {sentence}: {gold} gold tag(s) but {predicted} predicted")]
    LengthMismatch { sentence: usize, gold: usize, predicted: usize },

    /// `sentence` and `position` are 0-based.
    #[error("{side} sentence {sentence}, tag {position}: the prefix is not one the mode accepts")]
    UnsupportedTag { side: Side, sentence: usize, position: usize },
}

/// One entity: words `start..end` (end exclusive) of sentence `sentence`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Entity {
    pub sentence: usize,
    pub start: usize,
    pub end: usize,
    pub kind: String,
}

/// Scores of one entity type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeScores {
    pub kind: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Gold entities of this type.
    pub support: usize,
    /// Predicted entities of this type.
    pub predicted: usize,
    /// Predicted entities that match a gold one exactly.
    pub correct: usize,
}

/// An average row (`micro avg`, `macro avg`, `weighted avg`); `support` is the total.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EntityAverages {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// seqeval's `classification_report`: see [`entity_report`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityReport {
    pub mode: EntityMode,
    /// Every type seen in gold or predictions, sorted.
    pub per_type: Vec<TypeScores>,
    /// Also seqeval's `precision_score` / `recall_score` / `f1_score` (default `average='micro'`).
    pub micro: EntityAverages,
    pub macro_avg: EntityAverages,
    pub weighted_avg: EntityAverages,
}

/// Token-level tag counts: `counts[gold][predicted]` over `tags`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenConfusion {
    /// Every tag seen in gold or predictions, sorted.
    pub tags: Vec<String>,
    pub counts: Vec<Vec<usize>>,
    pub n_tokens: usize,
    /// seqeval's `accuracy_score`: matching tags / tokens (0 for no tokens).
    pub accuracy: f64,
}

// ---------------------------------------------------------------------------------------
// Chunking

/// A tag split into its first character and seqeval's type for the mode.
#[derive(Clone, Copy)]
struct Token<'a> {
    prefix: char,
    kind: &'a str,
}

const OUTSIDE: Token<'static> = Token { prefix: 'O', kind: "_" };

/// seqeval's `get_entities` type: after the first `-` that follows the prefix, else everything
/// after the prefix; `_` when empty.
fn default_kind(rest: &str) -> &str {
    let kind = rest.split_once('-').map_or(rest, |(_, kind)| kind);
    if kind.is_empty() {
        "_"
    } else {
        kind
    }
}

/// seqeval's `Token.tag`: everything after the prefix with `-` trimmed; `_` when empty.
fn strict_kind(rest: &str) -> &str {
    let kind = rest.trim_matches('-');
    if kind.is_empty() {
        "_"
    } else {
        kind
    }
}

fn parse(tag: &str, mode: EntityMode) -> Option<Token<'_>> {
    let prefix = tag.chars().next()?;
    let rest = &tag[prefix.len_utf8()..];
    let allowed = match mode {
        EntityMode::Default | EntityMode::Strict(TagScheme::Bioes) => "BIESO",
        EntityMode::Strict(TagScheme::Iob2) => "BIO",
    };
    if !allowed.contains(prefix) {
        return None;
    }
    let kind = match mode {
        EntityMode::Default => default_kind(rest),
        EntityMode::Strict(_) => strict_kind(rest),
    };
    Some(Token { prefix, kind })
}

/// seqeval's `end_of_chunk`: did a chunk end between `prev` and `cur`?
fn default_end(prev: Token, cur: Token) -> bool {
    matches!(prev.prefix, 'E' | 'S')
        || (matches!(prev.prefix, 'B' | 'I') && matches!(cur.prefix, 'B' | 'S' | 'O'))
        || (prev.prefix != 'O' && prev.kind != cur.kind)
}

/// seqeval's `start_of_chunk`: does a chunk start at `cur`?
fn default_start(prev: Token, cur: Token) -> bool {
    matches!(cur.prefix, 'B' | 'S')
        || (matches!(prev.prefix, 'E' | 'S' | 'O') && matches!(cur.prefix, 'E' | 'I'))
        || (cur.prefix != 'O' && prev.kind != cur.kind)
}

/// Default-mode chunks of one sentence, as `get_entities` finds them when the sentence is
/// followed by `O` (seqeval flattens sentences with an `O` after each).
fn default_chunks(tokens: &[Token], sentence: usize, out: &mut Vec<Entity>) {
    // Sentence start: seqeval's previous tag is `O` with type "" (first sentence) or "_" (after
    // the separator); with prefixes limited to B I E S O both give the same chunks.
    let mut prev = Token { prefix: 'O', kind: "" };
    let mut begin = 0;
    for (i, &cur) in tokens.iter().chain(std::iter::once(&OUTSIDE)).enumerate() {
        if default_end(prev, cur) {
            out.push(Entity { sentence, start: begin, end: i, kind: prev.kind.to_string() });
        }
        if default_start(prev, cur) {
            begin = i;
        }
        prev = cur;
    }
}

/// seqeval's `Token.is_start` for the scheme.
fn strict_start(scheme: TagScheme, cur: Token) -> bool {
    match scheme {
        TagScheme::Iob2 => cur.prefix == 'B',
        TagScheme::Bioes => matches!(cur.prefix, 'B' | 'S'),
    }
}

/// seqeval's `Token.is_inside`.
fn strict_inside(scheme: TagScheme, prev: Token, cur: Token) -> bool {
    let continues = match scheme {
        TagScheme::Iob2 => cur.prefix == 'I',
        TagScheme::Bioes => matches!(cur.prefix, 'I' | 'E'),
    };
    matches!(prev.prefix, 'B' | 'I') && continues && prev.kind == cur.kind
}

/// seqeval's `Token.is_end`: is `prev` the last word of a chunk, given the next word `cur`?
fn strict_end(scheme: TagScheme, prev: Token, cur: Token) -> bool {
    match scheme {
        TagScheme::Iob2 => match (prev.prefix, cur.prefix) {
            ('I' | 'B', 'O' | 'B') => true,
            ('I' | 'B', 'I') => prev.kind != cur.kind,
            _ => false,
        },
        TagScheme::Bioes => matches!(prev.prefix, 'S' | 'E'),
    }
}

/// Strict-mode chunks of one sentence (seqeval's `Tokens.entities`).
fn strict_chunks(scheme: TagScheme, tokens: &[Token], sentence: usize, out: &mut Vec<Entity>) {
    let ext: Vec<Token> = tokens.iter().copied().chain(std::iter::once(OUTSIDE)).collect();
    let mut i = 0;
    while i < ext.len() {
        if strict_start(scheme, ext[i]) {
            let mut end = i + 1;
            // The trailing `O` is never inside a chunk, so this stops before running off `ext`.
            while end < ext.len() && strict_inside(scheme, ext[end - 1], ext[end]) {
                end += 1;
            }
            if end < ext.len() && strict_end(scheme, ext[end - 1], ext[end]) {
                out.push(Entity { sentence, start: i, end, kind: ext[i].kind.to_string() });
            }
            i = end;
        } else {
            i += 1;
        }
    }
}

fn chunk_sentence<S: AsRef<str>>(
    tags: &[S],
    sentence: usize,
    mode: EntityMode,
    side: Side,
    out: &mut Vec<Entity>,
) -> Result<(), EntityError> {
    let tokens = tags
        .iter()
        .enumerate()
        .map(|(position, tag)| {
            parse(tag.as_ref(), mode).ok_or(EntityError::UnsupportedTag { side, sentence, position })
        })
        .collect::<Result<Vec<_>, _>>()?;
    match mode {
        EntityMode::Default => default_chunks(&tokens, sentence, out),
        EntityMode::Strict(scheme) => strict_chunks(scheme, &tokens, sentence, out),
    }
    Ok(())
}

/// The entities of `sentences` in `mode`, sentence by sentence, each sentence's by start.
/// Errors name `side`.
pub fn extract_entities<S: AsRef<str>, T: AsRef<[S]>>(
    sentences: &[T],
    mode: EntityMode,
    side: Side,
) -> Result<Vec<Entity>, EntityError> {
    let mut out = Vec::new();
    for (sentence, tags) in sentences.iter().enumerate() {
        chunk_sentence(tags.as_ref(), sentence, mode, side, &mut out)?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Scores

fn check_shapes<S: AsRef<str>, T: AsRef<[S]>>(gold: &[T], predicted: &[T]) -> Result<(), EntityError> {
    if gold.len() != predicted.len() {
        return Err(EntityError::SentenceCountMismatch { gold: gold.len(), predicted: predicted.len() });
    }
    for (sentence, (g, p)) in gold.iter().zip(predicted).enumerate() {
        let (gold, predicted) = (g.as_ref().len(), p.as_ref().len());
        if gold != predicted {
            return Err(EntityError::LengthMismatch { sentence, gold, predicted });
        }
    }
    Ok(())
}

/// `num / den`, 0 when `den` is 0 (seqeval's `zero_division="warn"`).
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// F1 from precision and recall, as seqeval computes it (0 when both are 0).
fn f1(precision: f64, recall: f64) -> f64 {
    let denom = precision + recall;
    if denom == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / denom
    }
}

/// seqeval's `classification_report(output_dict=True)` for `gold` and `predicted` sentences in
/// `mode`. See the module doc for the conventions.
pub fn entity_report<S: AsRef<str>, T: AsRef<[S]>>(
    gold: &[T],
    predicted: &[T],
    mode: EntityMode,
) -> Result<EntityReport, EntityError> {
    check_shapes(gold, predicted)?;
    let gold_entities = extract_entities(gold, mode, Side::Gold)?;
    let pred_entities = extract_entities(predicted, mode, Side::Predicted)?;
    let mut by_type: BTreeMap<&str, (HashSet<&Entity>, HashSet<&Entity>)> = BTreeMap::new();
    for e in &gold_entities {
        by_type.entry(e.kind.as_str()).or_default().0.insert(e);
    }
    for e in &pred_entities {
        by_type.entry(e.kind.as_str()).or_default().1.insert(e);
    }
    let per_type: Vec<TypeScores> = by_type
        .iter()
        .map(|(kind, (g, p))| {
            let correct = g.intersection(p).count();
            let (precision, recall) = (ratio(correct, p.len()), ratio(correct, g.len()));
            TypeScores {
                kind: kind.to_string(),
                precision,
                recall,
                f1: f1(precision, recall),
                support: g.len(),
                predicted: p.len(),
                correct,
            }
        })
        .collect();

    let support: usize = per_type.iter().map(|t| t.support).sum();
    let predicted_total: usize = per_type.iter().map(|t| t.predicted).sum();
    let correct: usize = per_type.iter().map(|t| t.correct).sum();
    let (p, r) = (ratio(correct, predicted_total), ratio(correct, support));
    let micro = EntityAverages { precision: p, recall: r, f1: f1(p, r), support };

    let n = per_type.len();
    let mean = |f: fn(&TypeScores) -> f64| if n == 0 { 0.0 } else { per_type.iter().map(f).sum::<f64>() / n as f64 };
    let macro_avg =
        EntityAverages { precision: mean(|t| t.precision), recall: mean(|t| t.recall), f1: mean(|t| t.f1), support };

    // No gold entity at all: seqeval returns the zero_division value (0) for every weighted score.
    let weighted = |f: fn(&TypeScores) -> f64| {
        if support == 0 {
            0.0
        } else {
            per_type.iter().map(|t| f(t) * t.support as f64).sum::<f64>() / support as f64
        }
    };
    let weighted_avg = EntityAverages {
        precision: weighted(|t| t.precision),
        recall: weighted(|t| t.recall),
        f1: weighted(|t| t.f1),
        support,
    };
    Ok(EntityReport { mode, per_type, micro, macro_avg, weighted_avg })
}

/// Token-level confusion matrix and accuracy over all sentences.
pub fn token_confusion<S: AsRef<str>, T: AsRef<[S]>>(
    gold: &[T],
    predicted: &[T],
) -> Result<TokenConfusion, EntityError> {
    check_shapes(gold, predicted)?;
    let pairs = || gold.iter().zip(predicted).flat_map(|(g, p)| g.as_ref().iter().zip(p.as_ref()));
    let tags: Vec<String> = pairs()
        .flat_map(|(g, p)| [g.as_ref(), p.as_ref()])
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .map(str::to_string)
        .collect();
    let index = |tag: &str| tags.binary_search_by(|t| t.as_str().cmp(tag)).expect("tag collected above");
    let mut counts = vec![vec![0; tags.len()]; tags.len()];
    let (mut n_tokens, mut matching) = (0, 0);
    for (g, p) in pairs() {
        let (g, p) = (g.as_ref(), p.as_ref());
        counts[index(g)][index(p)] += 1;
        n_tokens += 1;
        matching += usize::from(g == p);
    }
    Ok(TokenConfusion { tags, counts, n_tokens, accuracy: ratio(matching, n_tokens) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const TOLERANCE: f64 = 1e-9;

    fn sentences(v: &Value) -> Vec<Vec<String>> {
        serde_json::from_value(v.clone()).expect("sentences")
    }

    /// seqeval's NaN (written as null) is 0 here; see the module doc.
    fn close(got: f64, want: &Value, what: &str) {
        let want = want.as_f64().unwrap_or(0.0);
        assert!((got - want).abs() <= TOLERANCE, "{what}: got {got}, seqeval {want}");
    }

    fn check_entities(got: &[Entity], want: &Value, what: &str) {
        let want: Vec<Entity> = want
            .as_array()
            .expect("entity list")
            .iter()
            .map(|e| Entity {
                sentence: e[0].as_u64().unwrap() as usize,
                kind: e[1].as_str().unwrap().to_string(),
                start: e[2].as_u64().unwrap() as usize,
                end: e[3].as_u64().unwrap() as usize,
            })
            .collect();
        assert_eq!(got, want, "{what}");
    }

    fn check_avg(got: &EntityAverages, want: &Value, what: &str) {
        close(got.precision, &want["precision"], &format!("{what} precision"));
        close(got.recall, &want["recall"], &format!("{what} recall"));
        close(got.f1, &want["f1"], &format!("{what} f1"));
        assert_eq!(got.support as u64, want["support"].as_u64().unwrap(), "{what} support");
    }

    fn check_mode(gold: &[Vec<String>], pred: &[Vec<String>], mode: EntityMode, want: &Value, name: &str) {
        let what = format!("{name} {mode:?}");
        if want.get("error").is_some() {
            let err = entity_report(gold, pred, mode).expect_err(&what);
            assert!(matches!(err, EntityError::UnsupportedTag { .. }), "{what}: {err:?}");
            return;
        }
        let report = entity_report(gold, pred, mode).unwrap_or_else(|e| panic!("{what}: {e}"));
        check_entities(&extract_entities(gold, mode, Side::Gold).unwrap(), &want["gold_entities"], &what);
        check_entities(&extract_entities(pred, mode, Side::Predicted).unwrap(), &want["pred_entities"], &what);
        let rows = want["report"].as_object().unwrap();
        let types: Vec<&str> = rows.keys().map(String::as_str).filter(|k| !k.ends_with(" avg")).collect();
        let mut sorted = types.clone();
        sorted.sort_unstable();
        let got: Vec<&str> = report.per_type.iter().map(|t| t.kind.as_str()).collect();
        assert_eq!(got, sorted, "{what}: types");
        for t in &report.per_type {
            let row = &rows[&t.kind];
            let avg = EntityAverages { precision: t.precision, recall: t.recall, f1: t.f1, support: t.support };
            check_avg(&avg, row, &format!("{what} {}", t.kind));
        }
        if !rows.is_empty() {
            check_avg(&report.micro, &rows["micro avg"], &format!("{what} micro"));
            check_avg(&report.macro_avg, &rows["macro avg"], &format!("{what} macro"));
            check_avg(&report.weighted_avg, &rows["weighted avg"], &format!("{what} weighted"));
        }
        close(report.micro.precision, &want["precision"], &format!("{what} precision_score"));
        close(report.micro.recall, &want["recall"], &format!("{what} recall_score"));
        close(report.micro.f1, &want["f1"], &format!("{what} f1_score"));
    }

    #[test]
    fn matches_seqeval_on_every_fixture_case() {
        let fixture: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/seqeval_reference.json")).expect("fixture");
        let cases = fixture["cases"].as_array().unwrap();
        assert!(cases.len() >= 200, "{} cases", cases.len());
        let (mut strict_checked, mut refused) = (0, 0);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let (gold, pred) = (sentences(&case["gold"]), sentences(&case["pred"]));
            check_mode(&gold, &pred, EntityMode::Default, &case["default"], name);
            for (key, scheme) in [("strict_iob2", TagScheme::Iob2), ("strict_bioes", TagScheme::Bioes)] {
                check_mode(&gold, &pred, EntityMode::Strict(scheme), &case[key], name);
                if case[key].get("error").is_some() {
                    refused += 1;
                } else {
                    strict_checked += 1;
                }
            }
            let confusion = token_confusion(&gold, &pred).unwrap();
            close(confusion.accuracy, &case["accuracy"], &format!("{name} accuracy"));
        }
        // The fixture must exercise both strict outcomes.
        assert!(strict_checked > 100 && refused > 50, "{strict_checked} checked, {refused} refused");
    }

    fn s(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn default_mode_is_lenient_and_strict_drops_malformed_chunks() {
        let tags = [s(&["O", "I-X", "I-X", "B-X", "I-Y"])];
        let kinds = |mode| -> Vec<(usize, usize, String)> {
            extract_entities(&tags, mode, Side::Gold).unwrap().into_iter().map(|e| (e.start, e.end, e.kind)).collect()
        };
        assert_eq!(kinds(EntityMode::Default), [(1, 3, "X".into()), (3, 4, "X".into()), (4, 5, "Y".into())]);
        assert_eq!(kinds(EntityMode::Strict(TagScheme::Iob2)), [(3, 4, "X".to_string())]);
        // Under BIOES nothing here is closed by E- or S-.
        assert!(kinds(EntityMode::Strict(TagScheme::Bioes)).is_empty());
    }

    #[test]
    fn refused_tags_are_named_by_side_and_position_only() {
        let gold = [s(&["B-X", "O"])];
        let pred = [s(&["B-X", "E-X"])];
        let err = entity_report(&gold, &pred, EntityMode::Strict(TagScheme::Iob2)).unwrap_err();
        assert_eq!(err, EntityError::UnsupportedTag { side: Side::Predicted, sentence: 0, position: 1 });
        let secret = [s(&["ZEBRAFISH", "O"])];
        let err = entity_report(&secret, &gold, EntityMode::Default).unwrap_err();
        assert_eq!(err, EntityError::UnsupportedTag { side: Side::Gold, sentence: 0, position: 0 });
        assert!(!err.to_string().contains("ZEBRA"), "{err}");
        let err = entity_report(&[s(&[""])], &[s(&["O"])], EntityMode::Default).unwrap_err();
        assert!(matches!(err, EntityError::UnsupportedTag { position: 0, .. }));
    }

    #[test]
    fn shape_errors() {
        let err = entity_report(&[s(&["O"])], &[s(&["O"]), s(&[])], EntityMode::Default).unwrap_err();
        assert_eq!(err, EntityError::SentenceCountMismatch { gold: 1, predicted: 2 });
        let err = token_confusion(&[s(&["O"]), s(&["O"])], &[s(&["O"]), s(&[])]).unwrap_err();
        assert_eq!(err, EntityError::LengthMismatch { sentence: 1, gold: 1, predicted: 0 });
    }

    #[test]
    fn token_confusion_counts_gold_by_predicted() {
        let gold = [s(&["B-X", "I-X", "O"]), s(&["O"])];
        let pred = [s(&["B-X", "O", "O"]), s(&["B-Y"])];
        let c = token_confusion(&gold, &pred).unwrap();
        assert_eq!(c.tags, ["B-X", "B-Y", "I-X", "O"]);
        assert_eq!(c.counts, [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 1]]);
        assert_eq!((c.n_tokens, c.accuracy), (4, 0.5));
        let empty: [Vec<String>; 0] = [];
        assert_eq!(token_confusion(&empty, &empty).unwrap().accuracy, 0.0);
    }

    #[test]
    fn zero_division_is_zero() {
        let gold = [s(&["B-X", "O"])];
        let pred = [s(&["O", "B-Y"])];
        let r = entity_report(&gold, &pred, EntityMode::Default).unwrap();
        let x = &r.per_type[0];
        assert_eq!((x.kind.as_str(), x.predicted, x.precision, x.recall, x.f1), ("X", 0, 0.0, 0.0, 0.0));
        let y = &r.per_type[1];
        assert_eq!((y.kind.as_str(), y.support, y.precision, y.recall), ("Y", 0, 0.0, 0.0));
        let none = entity_report(&[s(&["O"])], &[s(&["O"])], EntityMode::Default).unwrap();
        assert!(none.per_type.is_empty());
        assert_eq!((none.macro_avg.f1, none.weighted_avg.f1, none.micro.f1), (0.0, 0.0, 0.0));
    }
}
