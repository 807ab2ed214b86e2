//! The browser build's tokenizer: a BERT WordPiece `tokenizer.json` (BertNormalizer,
//! BertPreTokenizer, WordPiece), encoded as the `tokenizers` crate encodes it, ids and byte
//! offsets alike, without the crate.
//!
//! `tokenizers` deserializes every normalizer, pre-tokenizer, model and decoder it knows, and
//! with them regex engines (fancy-regex, regex, aho-corasick) and their Unicode tables: about
//! 1.7 MB of the 3.4 MB wasm build. A Bedside bundle's tokenizer is BERT's, which needs none of
//! that. This follows tokenizers 0.22.2 step by step (normalizers/bert.rs, pre_tokenizers/bert.rs,
//! models/wordpiece, added_vocabulary.rs, and `NormalizedString::transform_range` for the
//! offsets), with the same Unicode crates; `tests::matches_the_tokenizers_crate` checks ids
//! and offsets against the crate on generated text. Natively the runtime keeps `tokenizers`;
//! any other tokenizer kind is refused here with [`Error::Tokenizer`].

use std::collections::HashMap;

use serde::Deserialize;
use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;

use crate::error::{Error, Result};

#[derive(Deserialize)]
struct Json {
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
    normalizer: Option<NormalizerJson>,
    pre_tokenizer: Option<serde_json::Value>,
    model: ModelJson,
}

/// An entry of tokenizer.json's `added_tokens`, as both browser tokenizers read it (BPE
/// ignores `id`: the crate numbers added tokens itself).
#[derive(Deserialize)]
pub(super) struct AddedToken {
    pub id: Option<u32>,
    pub content: String,
    #[serde(default)]
    pub single_word: bool,
    #[serde(default)]
    pub lstrip: bool,
    #[serde(default)]
    pub rstrip: bool,
    #[serde(default = "yes")]
    pub normalized: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct NormalizerJson {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "yes")]
    clean_text: bool,
    #[serde(default = "yes")]
    handle_chinese_chars: bool,
    #[serde(default)]
    strip_accents: Option<bool>,
    #[serde(default = "yes")]
    lowercase: bool,
}

#[derive(Deserialize)]
struct ModelJson {
    #[serde(rename = "type")]
    kind: Option<String>,
    vocab: HashMap<String, u32>,
    #[serde(default = "unk")]
    unk_token: String,
    #[serde(default = "prefix")]
    continuing_subword_prefix: String,
    #[serde(default = "max_chars")]
    max_input_chars_per_word: usize,
}

fn unk() -> String {
    "[UNK]".into()
}

fn prefix() -> String {
    "##".into()
}

fn max_chars() -> usize {
    100
}

/// A BERT WordPiece tokenizer read from `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    /// Added tokens (all matched in the raw text, as `normalized: false` ones are), longest first.
    added: Vec<(String, u32)>,
    unk: String,
    prefix: String,
    max_chars: usize,
    clean_text: bool,
    chinese_chars: bool,
    strip_accents: bool,
    lowercase: bool,
}

fn unsupported(what: String) -> Error {
    Error::Tokenizer(format!(
        "the browser build reads BERT WordPiece tokenizers (BertNormalizer, BertPreTokenizer, WordPiece); {what}"
    ))
}

/// A normalized character and the byte range of the original text it came from.
type Aligned = (char, (usize, usize));

impl WordPiece {
    pub fn from_json(json: &str) -> Result<Self> {
        let j: Json =
            serde_json::from_str(json).map_err(|e| Error::Tokenizer(format!("tokenizer JSON does not load: {e}")))?;
        if j.model.kind.as_deref().is_some_and(|k| k != "WordPiece") {
            return Err(unsupported(format!("this one's model is {:?}", j.model.kind.unwrap_or_default())));
        }
        let normalizer = match j.normalizer {
            Some(n) if n.kind == "BertNormalizer" => n,
            Some(n) => return Err(unsupported(format!("this one's normalizer is {:?}", n.kind))),
            None => return Err(unsupported("this one has no normalizer".into())),
        };
        match j.pre_tokenizer.as_ref().and_then(|p| p.get("type")).and_then(|t| t.as_str()) {
            Some("BertPreTokenizer") => {}
            other => return Err(unsupported(format!("this one's pre-tokenizer is {other:?}"))),
        }
        if let Some(t) = j.added_tokens.iter().find(|t| t.normalized || t.single_word || t.lstrip || t.rstrip) {
            return Err(unsupported(format!(
                "added token {:?} is normalized, single_word, lstrip or rstrip (only plain special tokens are read)",
                t.content
            )));
        }
        if !j.model.vocab.contains_key(&j.model.unk_token) {
            return Err(Error::Tokenizer(format!(
                "tokenizer JSON does not load: unk token {:?} is not in the vocabulary",
                j.model.unk_token
            )));
        }
        let mut vocab = j.model.vocab;
        let mut added: Vec<(String, u32)> = j
            .added_tokens
            .into_iter()
            .filter(|t| !t.content.is_empty())
            .enumerate()
            .map(|(i, t)| match t.id {
                Some(id) => Ok((t.content, id)),
                None => Err(Error::Tokenizer(format!("tokenizer JSON does not load: added token {i} has no id"))),
            })
            .collect::<Result<_>>()?;
        for (content, id) in &added {
            vocab.entry(content.clone()).or_insert(*id);
        }
        added.sort_by(|a, b| b.0.len().cmp(&a.0.len()));
        Ok(Self {
            vocab,
            added,
            unk: j.model.unk_token,
            prefix: j.model.continuing_subword_prefix,
            max_chars: j.model.max_input_chars_per_word,
            clean_text: normalizer.clean_text,
            chinese_chars: normalizer.handle_chinese_chars,
            strip_accents: normalizer.strip_accents.unwrap_or(normalizer.lowercase),
            lowercase: normalizer.lowercase,
        })
    }

    /// transformers' subword rule for this tokenizer: WordPiece marks continuations.
    pub fn subword_rule(&self) -> super::subword::SubwordRule {
        let unk = self.vocab.get(&self.unk).copied();
        super::subword::SubwordRule::new(
            self.vocab.iter().map(|(t, &id)| (t.as_str(), id)),
            !self.prefix.is_empty(),
            unk,
        )
    }

    /// The string of token `id`. A scan: nothing on the encoding path needs it, so no
    /// reverse table is built at load.
    #[cfg(test)]
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.vocab.iter().find(|(_, &v)| v == id).map(|(t, _)| t.as_str())
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// Distinct tokens, added ones included (`get_vocab_size(true)`).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The largest id plus one (see `tokenize::tokenizer_id_span`).
    pub fn id_span(&self) -> u64 {
        self.vocab.values().chain(self.added.iter().map(|(_, id)| id)).max().map_or(0, |&id| u64::from(id) + 1)
    }

    /// Ids and original byte offsets of `text`, without special tokens around it.
    pub fn encode(&self, text: &str) -> Result<(Vec<u32>, Vec<(usize, usize)>)> {
        let mut ids = Vec::new();
        let mut offsets = Vec::new();
        let mut start = 0;
        let mut i = 0;
        // Added tokens: leftmost-longest matches in the raw text (aho-corasick's LeftmostLongest).
        while i < text.len() {
            if let Some((content, id)) = self.added.iter().find(|(c, _)| text[i..].starts_with(c.as_str())) {
                self.encode_piece(text, start, i, &mut ids, &mut offsets)?;
                ids.push(*id);
                offsets.push((i, i + content.len()));
                i += content.len();
                start = i;
            } else {
                i += text[i..].chars().next().map_or(1, char::len_utf8);
            }
        }
        self.encode_piece(text, start, text.len(), &mut ids, &mut offsets)?;
        Ok((ids, offsets))
    }

    fn encode_piece(
        &self,
        text: &str,
        start: usize,
        end: usize,
        ids: &mut Vec<u32>,
        offsets: &mut Vec<(usize, usize)>,
    ) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        let chars: Vec<Aligned> =
            text[start..end].char_indices().map(|(i, c)| (c, (start + i, start + i + c.len_utf8()))).collect();
        let chars = self.normalize(chars);
        // BertPreTokenizer: whitespace splits (and goes), punctuation is a word of its own.
        let mut word: Vec<Aligned> = Vec::new();
        for &(c, range) in &chars {
            if c.is_whitespace() {
                self.encode_word(&word, ids, offsets)?;
                word.clear();
            } else if c.is_ascii_punctuation() || c.is_punctuation() {
                self.encode_word(&word, ids, offsets)?;
                word.clear();
                self.encode_word(&[(c, range)], ids, offsets)?;
            } else {
                word.push((c, range));
            }
        }
        self.encode_word(&word, ids, offsets)
    }

    /// BertNormalizer, each step a `transform` of (char, change) pairs as in tokenizers.
    fn normalize(&self, mut chars: Vec<Aligned>) -> Vec<Aligned> {
        if self.clean_text {
            chars = filter(&chars, |c| !(c as usize == 0 || c as usize == 0xfffd || is_control(c)));
            for (c, _) in &mut chars {
                if is_whitespace(*c) {
                    *c = ' ';
                }
            }
        }
        if self.chinese_chars {
            let mut dest = Vec::with_capacity(chars.len());
            for &(c, _) in &chars {
                if is_chinese_char(c) {
                    dest.extend([(' ', 0), (c, 1), (' ', 1)]);
                } else {
                    dest.push((c, 0));
                }
            }
            chars = transform(&chars, dest, 0);
        }
        if self.strip_accents {
            let s: String = chars.iter().map(|&(c, _)| c).collect();
            chars = transform(&chars, s.nfd().collect::<Vec<_>>(), 0);
            chars = filter(&chars, |c| !c.is_mark_nonspacing());
        }
        if self.lowercase {
            let mut dest = Vec::with_capacity(chars.len());
            for &(c, _) in &chars {
                dest.extend(c.to_lowercase().enumerate().map(|(i, l)| (l, isize::from(i > 0))));
            }
            chars = transform(&chars, dest, 0);
        }
        chars
    }

    /// WordPiece: greedy longest-match-first; a word too long or with no split is `unk`.
    fn encode_word(&self, word: &[Aligned], ids: &mut Vec<u32>, offsets: &mut Vec<(usize, usize)>) -> Result<()> {
        if word.is_empty() {
            return Ok(());
        }
        let whole = (word[0].1 .0, word[word.len() - 1].1 .1);
        let unk = || {
            self.vocab
                .get(&self.unk)
                .copied()
                .ok_or_else(|| Error::Tokenizer("the unk token is not in the vocabulary".into()))
        };
        if word.len() > self.max_chars {
            ids.push(unk()?);
            offsets.push(whole);
            return Ok(());
        }
        let s: String = word.iter().map(|&(c, _)| c).collect();
        // The char index of each byte offset of `s` (char boundaries only are used).
        let mut char_at = vec![0usize; s.len() + 1];
        for (k, (b, _)) in s.char_indices().enumerate() {
            char_at[b] = k;
        }
        char_at[s.len()] = word.len();
        let mut pieces = Vec::new();
        let mut start = 0;
        let mut key = String::new();
        while start < s.len() {
            let mut end = s.len();
            let mut found = None;
            while start < end {
                key.clear();
                if start > 0 {
                    key.push_str(&self.prefix);
                }
                key.push_str(&s[start..end]);
                if let Some(&id) = self.vocab.get(&key) {
                    found = Some(id);
                    break;
                }
                end -= s[start..end].chars().next_back().map_or(1, char::len_utf8);
            }
            let Some(id) = found else {
                ids.push(unk()?);
                offsets.push(whole);
                return Ok(());
            };
            pieces.push((id, (word[char_at[start]].1 .0, word[char_at[end] - 1].1 .1)));
            start = end;
        }
        for (id, range) in pieces {
            ids.push(id);
            offsets.push(range);
        }
        Ok(())
    }
}

/// `NormalizedString::transform_range` over the whole string: each `(c, change)` replaces the
/// next source char (change ≤ 0, then skips `-change` more) or is inserted (change > 0,
/// taking the range of the source char before it); `initial_offset` source chars go first.
fn transform(src: &[Aligned], dest: impl IntoIterator<Item = (char, isize)>, initial_offset: usize) -> Vec<Aligned> {
    let mut next = initial_offset;
    let mut out = Vec::with_capacity(src.len());
    for (c, change) in dest {
        if change > 0 {
            let range = if next == 0 { src.first().map_or((0, 0), |&(_, r)| (r.0, r.0)) } else { src[next - 1].1 };
            out.push((c, range));
        } else {
            out.push((c, src[next].1));
            next += 1 + (-change) as usize;
        }
    }
    out
}

/// `NormalizedString::filter`: removed chars count against the kept char before them.
fn filter(src: &[Aligned], keep: impl Fn(char) -> bool) -> Vec<Aligned> {
    let mut dest = Vec::with_capacity(src.len());
    let mut removed = 0isize;
    let mut removed_start = 0usize;
    let mut last = None;
    for &(c, _) in src {
        if keep(c) {
            match last {
                Some(l) => dest.push((l, -removed)),
                None => removed_start = removed as usize,
            }
            last = Some(c);
            removed = 0;
        } else {
            removed += 1;
        }
    }
    if let Some(l) = last {
        dest.push((l, -removed));
    }
    transform(src, dest, removed_start)
}

fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

fn is_chinese_char(c: char) -> bool {
    matches!(
        c as usize,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Vec<&'static str> {
        vec![
            include_str!("../../../models/fixtures/tiny-safetensors/tokenizer.json"),
            include_str!("../../../models/fixtures/tiny-classifier/tokenizer.json"),
        ]
    }

    /// Text from pieces that exercise every step: words in and out of the vocabulary, accents
    /// (composed and not), CJK, controls, odd whitespace, punctuation, special tokens, case
    /// that lowercases to several chars, long words.
    fn generated(seed: u64, vocab: &[&str]) -> String {
        const PIECES: &[&str] = &[
            " ",
            "  ",
            "\t",
            "\n",
            "\r\n",
            "\u{a0}",
            "\u{3000}",
            "\u{2028}",
            ".",
            ",",
            "!",
            "?",
            "-",
            "'",
            "\"",
            "(",
            ")",
            "¿",
            "«",
            "»",
            "—",
            "…",
            "Café",
            "cafe\u{301}",
            "naïve",
            "ÉCOLE",
            "İstanbul",
            "ß",
            "ﬁ",
            "Ǆ",
            "ΣΑΣ",
            "Ω",
            "中文",
            "日本語",
            "한국어",
            "\u{0}",
            "\u{fffd}",
            "\u{200b}",
            "\u{7}",
            "\u{ad}",
            "\u{feff}",
            "a\u{328}\u{301}",
            "\u{301}",
            "क्षि",
            "[CLS]",
            "[SEP]",
            "[MASK]",
            "[PAD]",
            "[UNK]",
            "[cls]",
            "[MASK",
            "x[SEP]y",
            "mg/dL",
            "5.0",
            "12:30",
            "O2",
            "Dr.",
            "e-mail",
            "emoji😀",
            "\u{1F468}\u{200D}\u{1F469}",
            "ℌ",
            "Ⅻ",
            "①",
            "x²",
        ];
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut next = |n: usize| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % n as u64) as usize
        };
        let mut text = String::new();
        for _ in 0..next(40) {
            match next(4) {
                0 => text.push_str(PIECES[next(PIECES.len())]),
                1 => text.push_str(&vocab[next(vocab.len())].replace("##", "")),
                2 => {
                    let w = vocab[next(vocab.len())].replace("##", "");
                    text.push_str(&w.to_uppercase());
                }
                _ => {
                    if next(50) == 0 {
                        text.push_str(&"long".repeat(30));
                    } else {
                        text.push(' ');
                    }
                }
            }
        }
        text
    }

    #[test]
    fn matches_the_tokenizers_crate() {
        for json in fixtures() {
            let ours = WordPiece::from_json(json).unwrap();
            let mut theirs = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
            theirs.with_truncation(None).unwrap();
            theirs.with_padding(None);
            let mut vocab: Vec<&str> = ours.vocab.keys().map(String::as_str).collect();
            vocab.sort();
            assert_eq!(ours.vocab_size(), theirs.get_vocab_size(true));
            for token in ["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", "the", "nope-not-there"] {
                assert_eq!(ours.token_to_id(token), theirs.token_to_id(token), "{token}");
            }
            assert_eq!(ours.id_span(), crate::pipeline::tokenize::tokenizer_id_span(&theirs));
            for seed in 0..3000 {
                let text = generated(seed, &vocab);
                let (ids, offsets) = ours.encode(&text).unwrap();
                let e = theirs.encode(text.as_str(), false).unwrap();
                assert_eq!(ids, e.get_ids(), "ids of {text:?}");
                assert_eq!(offsets, e.get_offsets(), "offsets of {text:?}");
            }
        }
    }

    #[test]
    fn refuses_other_tokenizers() {
        let v: serde_json::Value = serde_json::from_str(fixtures()[0]).unwrap();
        let with = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut j = v.clone();
            change(&mut j);
            j.to_string()
        };
        for bad in [
            with(&|j| j["pre_tokenizer"] = serde_json::json!({"type": "Whitespace"})),
            with(&|j| j["model"]["type"] = "BPE".into()),
            with(&|j| j["normalizer"] = serde_json::json!({"type": "NFC"})),
            with(&|j| j["added_tokens"][0]["lstrip"] = true.into()),
        ] {
            let err = WordPiece::from_json(&bad).unwrap_err();
            assert_eq!(err.code(), "tokenizer");
            assert!(err.to_string().contains("BERT WordPiece"), "{err}");
        }
    }
}
