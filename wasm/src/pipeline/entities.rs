//! Entities: per-token label probabilities → entity spans, for token-classification heads.
//!
//! The rules are those of transformers' `TokenClassificationPipeline` and its
//! `aggregation_strategy`, so a Bedside bundle and the Hugging Face pipeline name the same
//! entities with the same spans and scores:
//! - `none`: every token whose best label is not ignored (`O`), under its full tag (`B-NAME`);
//! - `simple`: consecutive tokens grouped by tag (`B-` starts a group; `I-X` continues an `X`
//!   group; an unprefixed label continues one of its own); the group's score is the mean;
//! - `first` / `average` / `max`: tokens are first merged into words (a subword joins the
//!   word before it), the word takes the label of its first token / of its mean
//!   probabilities / of its most confident token, then words are grouped as in `simple`.
//!
//! Long notes run in overlapping windows; each token takes its probabilities from the window
//! where it is most central ([`central_window`]), which has the most context on both sides.
//! Offsets stay UTF-8 byte offsets into the original note throughout.

use serde::{Deserialize, Serialize};

use super::window::Window;

/// How token predictions become entities: transformers' `aggregation_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityAggregation {
    None,
    #[default]
    Simple,
    First,
    Average,
    Max,
}

impl EntityAggregation {
    pub const ALL: [EntityAggregation; 5] = [
        EntityAggregation::None,
        EntityAggregation::Simple,
        EntityAggregation::First,
        EntityAggregation::Average,
        EntityAggregation::Max,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityAggregation::None => "none",
            EntityAggregation::Simple => "simple",
            EntityAggregation::First => "first",
            EntityAggregation::Average => "average",
            EntityAggregation::Max => "max",
        }
    }
}

impl std::str::FromStr for EntityAggregation {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s.to_ascii_lowercase())
            .ok_or_else(|| format!("unknown aggregation {s:?}: use none, simple, first, average or max"))
    }
}

/// One text token with the probabilities its window gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredToken {
    /// Byte range of the note.
    pub start: usize,
    pub end: usize,
    /// Continues the word of the token before it (see `TextTokenizer::is_subword`).
    pub is_subword: bool,
    /// One probability per label.
    pub probabilities: Vec<f32>,
}

/// An entity found in a note: label, UTF-8 byte span into the note, score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entity {
    pub label: String,
    pub start: usize,
    pub end: usize,
    pub score: f32,
}

/// For each of `num_tokens` text tokens, the index of the window (of `windows`, in order)
/// where it is most central: the larger of its distances to the window's two ends is
/// smallest there. Ties keep the earlier window.
pub fn central_window(windows: &[Window], num_tokens: usize) -> Vec<usize> {
    let mut best: Vec<(usize, usize)> = vec![(usize::MAX, 0); num_tokens];
    for (w, window) in windows.iter().enumerate() {
        for p in 0..window.num_tokens {
            let token = window.first_token + p;
            let Some(slot) = best.get_mut(token) else { continue };
            // Context on the poorer side: the token's distance to the nearer window edge.
            let context = p.min(window.num_tokens - 1 - p);
            if slot.0 == usize::MAX || context > slot.1 {
                *slot = (w, context);
            }
        }
    }
    best.into_iter().map(|(w, _)| if w == usize::MAX { 0 } else { w }).collect()
}

/// Each text token's label probabilities: the softmax of its logits in the window where it
/// is most central. `window_logits[w][p]` are window `w`'s logits at position `p` (position
/// 0 is [CLS]/`<s>`), as `windows` were cut from `num_tokens` tokens.
pub fn token_probabilities(windows: &[Window], window_logits: &[Vec<Vec<f32>>], num_tokens: usize) -> Vec<Vec<f32>> {
    let chosen = central_window(windows, num_tokens);
    (0..num_tokens)
        .map(|t| {
            let w = chosen[t];
            let row = windows
                .get(w)
                .and_then(|window| window_logits.get(w)?.get(1 + t.checked_sub(window.first_token)?))
                .map_or(&[][..], Vec::as_slice);
            softmax(row)
        })
        .collect()
}

/// Softmax of one logit row, as transformers' pipeline computes it (max subtracted first).
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = row.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// The index of the largest value (the first of equal ones, as numpy's argmax).
pub fn argmax(p: &[f32]) -> usize {
    p.iter().enumerate().fold(0, |best, (i, &v)| if v > p[best] { i } else { best })
}

/// A token or word with its chosen label, before grouping.
struct Tagged {
    label: usize,
    score: f32,
    start: usize,
    end: usize,
}

/// `B-X` → (B, X); `I-X` → (I, X); anything else → (I, itself), as transformers' `get_tag`.
fn split_tag(label: &str) -> (bool, &str) {
    if let Some(rest) = label.strip_prefix("B-") {
        (true, rest)
    } else if let Some(rest) = label.strip_prefix("I-") {
        (false, rest)
    } else {
        (false, label)
    }
}

/// The name a group takes: the text after the first `-` (`B-NAME` → `NAME`; `O` → `O`).
pub fn group_name(label: &str) -> &str {
    label.split_once('-').map_or(label, |(_, rest)| rest)
}

/// Turns scored tokens into entities by `strategy`, dropping entities labelled with any of
/// `ignore` (transformers' `ignore_labels`, by default `["O"]`).
pub fn entities(
    tokens: &[ScoredToken],
    labels: &[String],
    strategy: EntityAggregation,
    ignore: &[String],
) -> Vec<Entity> {
    let label = |i: usize| labels.get(i).map_or("", String::as_str);
    let per_token = || {
        tokens.iter().map(|t| {
            let best = argmax(&t.probabilities);
            Tagged { label: best, score: t.probabilities.get(best).copied().unwrap_or(0.0), start: t.start, end: t.end }
        })
    };
    let items: Vec<Tagged> = match strategy {
        EntityAggregation::None => {
            return per_token()
                .filter(|t| !ignore.iter().any(|i| i == label(t.label)))
                .map(|t| Entity { label: label(t.label).to_string(), start: t.start, end: t.end, score: t.score })
                .collect();
        }
        EntityAggregation::Simple => per_token().collect(),
        EntityAggregation::First | EntityAggregation::Average | EntityAggregation::Max => {
            words(tokens).into_iter().map(|word| aggregate_word(word, strategy)).collect()
        }
    };
    group(&items, &label).into_iter().filter(|e| !ignore.iter().any(|i| *i == e.label)).collect()
}

/// Consecutive tokens of one word: a word starts at every token that is not a subword.
fn words(tokens: &[ScoredToken]) -> Vec<&[ScoredToken]> {
    let mut words = Vec::new();
    let mut start = 0;
    for i in 1..=tokens.len() {
        if i == tokens.len() || !tokens[i].is_subword {
            if start < i {
                words.push(&tokens[start..i]);
            }
            start = i;
        }
    }
    words
}

fn aggregate_word(word: &[ScoredToken], strategy: EntityAggregation) -> Tagged {
    let (start, end) = (word[0].start, word[word.len() - 1].end);
    let chosen = |p: &[f32]| {
        let best = argmax(p);
        Tagged { label: best, score: p.get(best).copied().unwrap_or(0.0), start, end }
    };
    match strategy {
        EntityAggregation::Max => {
            // The token whose best probability is highest (the first such), as Python's max().
            let top = |t: &ScoredToken| t.probabilities.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let best = word.iter().fold(&word[0], |best, t| if top(t) > top(best) { t } else { best });
            chosen(&best.probabilities)
        }
        EntityAggregation::Average => {
            let n = word[0].probabilities.len();
            let mean: Vec<f32> = (0..n)
                .map(|k| {
                    let sum: f64 = word.iter().map(|t| f64::from(t.probabilities.get(k).copied().unwrap_or(0.0))).sum();
                    (sum / word.len() as f64) as f32
                })
                .collect();
            chosen(&mean)
        }
        _ => chosen(&word[0].probabilities),
    }
}

/// transformers' `group_entities`: a group continues while the tag stays the same and the
/// next item does not begin with `B-`.
fn group<'a>(items: &[Tagged], label: &impl Fn(usize) -> &'a str) -> Vec<Entity> {
    let mut groups = Vec::new();
    let mut current: Vec<&Tagged> = Vec::new();
    let flush = |current: &mut Vec<&Tagged>, groups: &mut Vec<Entity>| {
        if let (Some(first), Some(last)) = (current.first(), current.last()) {
            let score = current.iter().map(|t| f64::from(t.score)).sum::<f64>() / current.len() as f64;
            groups.push(Entity {
                label: group_name(label(first.label)).to_string(),
                start: first.start,
                end: last.end,
                score: score as f32,
            });
        }
        current.clear();
    };
    for item in items {
        if let Some(last) = current.last() {
            let (begins, tag) = split_tag(label(item.label));
            let (_, last_tag) = split_tag(label(last.label));
            if !(tag == last_tag && !begins) {
                flush(&mut current, &mut groups);
            }
        }
        current.push(item);
    }
    flush(&mut current, &mut groups);
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["O", "B-NAME", "I-NAME", "B-DATE", "I-DATE"].map(String::from).to_vec()
    }

    fn token(start: usize, end: usize, is_subword: bool, best: usize, p: f32) -> ScoredToken {
        let mut probabilities = vec![(1.0 - p) / 4.0; 5];
        probabilities[best] = p;
        ScoredToken { start, end, is_subword, probabilities }
    }

    fn spans(entities: &[Entity]) -> Vec<(&str, usize, usize)> {
        entities.iter().map(|e| (e.label.as_str(), e.start, e.end)).collect()
    }

    // "Jo hn Smith on 3/4": "Jo"+"hn" one word (B-NAME, O), "Smith" I-NAME, "on" O, "3/4" B-DATE.
    fn note() -> Vec<ScoredToken> {
        vec![
            token(0, 2, false, 1, 0.9),
            token(2, 4, true, 0, 0.6),
            token(5, 10, false, 2, 0.8),
            token(11, 13, false, 0, 0.99),
            token(14, 17, false, 3, 0.7),
        ]
    }

    #[test]
    fn strategies_follow_transformers() {
        let o = vec!["O".to_string()];
        let none = entities(&note(), &labels(), EntityAggregation::None, &o);
        assert_eq!(spans(&none), vec![("B-NAME", 0, 2), ("I-NAME", 5, 10), ("B-DATE", 14, 17)]);
        // simple: the subword "hn" is O, so it splits the name in two groups.
        let simple = entities(&note(), &labels(), EntityAggregation::Simple, &o);
        assert_eq!(spans(&simple), vec![("NAME", 0, 2), ("NAME", 5, 10), ("DATE", 14, 17)]);
        // first: "John" takes B-NAME from "Jo", then "Smith" continues it.
        let first = entities(&note(), &labels(), EntityAggregation::First, &o);
        assert_eq!(spans(&first), vec![("NAME", 0, 10), ("DATE", 14, 17)]);
        assert!((first[0].score - (0.9 + 0.8) / 2.0).abs() < 1e-6);
        // max: "Jo" (0.9) beats "hn" (0.6).
        assert_eq!(spans(&entities(&note(), &labels(), EntityAggregation::Max, &o)), spans(&first));
        // average: B-NAME (0.9 + 0.1)/2 = 0.5 beats O (0.025 + 0.6)/2.
        let average = entities(&note(), &labels(), EntityAggregation::Average, &o);
        assert_eq!(spans(&average), spans(&first));
        assert!((average[0].score - ((0.9 + 0.1) / 2.0 + 0.8) / 2.0).abs() < 1e-6, "{average:?}");
        // Nothing ignored: the O group is an entity too.
        let all = entities(&note(), &labels(), EntityAggregation::Simple, &[]);
        assert_eq!(all.iter().filter(|e| e.label == "O").count(), 2);
    }

    #[test]
    fn b_starts_a_new_group_and_unprefixed_labels_group() {
        let labels: Vec<String> = ["O", "B-X", "I-X", "DRUG"].map(String::from).to_vec();
        let tokens = vec![
            token(0, 1, false, 1, 0.9),
            token(2, 3, false, 1, 0.9),
            token(4, 5, false, 2, 0.9),
            token(6, 7, false, 3, 0.9),
            token(8, 9, false, 3, 0.9),
        ];
        let got = entities(&tokens, &labels, EntityAggregation::Simple, &["O".to_string()]);
        assert_eq!(spans(&got), vec![("X", 0, 1), ("X", 2, 5), ("DRUG", 6, 9)]);
    }

    #[test]
    fn each_token_reads_the_window_where_it_is_most_central() {
        let window = |first_token: usize, num_tokens: usize| Window {
            ids: Vec::new(),
            start: 0,
            end: 0,
            first_token,
            num_tokens,
        };
        // Tokens 0..10 in windows [0,6) and [4,10): tokens 4 and 5 are in both.
        let windows = [window(0, 6), window(4, 6)];
        let chosen = central_window(&windows, 10);
        // Token 4: position 4 of 6 in window 0 (context min(4, 1) = 1), position 0 in
        // window 1 (0). Token 5: position 5 (0) and position 1 (1).
        assert_eq!(chosen, vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
        assert_eq!(central_window(&[window(0, 3)], 3), vec![0, 0, 0]);
    }

    #[test]
    fn parses_strategy_names() {
        for s in EntityAggregation::ALL {
            assert_eq!(s.as_str().parse::<EntityAggregation>().unwrap(), s);
        }
        assert!("mean".parse::<EntityAggregation>().is_err());
    }
}
