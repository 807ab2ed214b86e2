//! The browser build's byte-level BPE tokenizer (GPT-2 / RoBERTa `tokenizer.json`: ByteLevel
//! pre-tokenizer, BPE model), encoded as the `tokenizers` crate encodes it, ids and byte offsets
//! alike, without the crate.
//!
//! This follows tokenizers 0.22.2 step by step: `added_vocabulary.rs` (added tokens matched
//! leftmost-longest, `normalized: false` ones in the raw text first, then the `normalized: true`
//! ones in what is left; `lstrip` takes the whitespace before a match, and the matched text,
//! whitespace included, is the token's string), `pre_tokenizers/byte_level.rs` (a space
//! prepended to each piece that does not start with one, GPT-2's split regex, each UTF-8 byte
//! mapped to a printable char), `models/bpe` (`merge_word`, `Word::merge_all`: the lowest-ranked
//! pair first, leftmost on ties) and `process_offsets` (RobertaProcessing's or ByteLevel's
//! `trim_offsets`, which runs even without special tokens: each token's offsets lose the bytes
//! of the leading/trailing `Ġ` or whitespace chars of its string, except the one prefix space
//! of a token starting the text when `add_prefix_space`). A token of part of a multi-byte char
//! gets the whole char's offsets, as in the crate.
//!
//! The split regex: `\s+(?!\S)` needs a look-ahead the `regex` crate lacks (tokenizers uses
//! fancy-regex, which delegates the classes to the same `regex-syntax` tables); here the
//! pattern ends in a plain `\s+`, and a whitespace run that a non-space follows gives its last
//! char back to the next piece, which is what the look-ahead does.
//!
//! `tests::matches_the_tokenizers_crate` checks ids and offsets against the crate on generated
//! text. Anything else (normalizers, other pre-tokenizers or post-processors, dropout, byte
//! fallback, subword prefixes, `single_word`/`rstrip` added tokens) is refused with
//! [`Error::Tokenizer`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use regex::Regex;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Token ids and, per token, the byte range of the text it came from.
pub type Encoded = (Vec<u32>, Vec<(usize, usize)>);

/// GPT-2's pre-tokenizer regex without the look-ahead (see the module doc).
const SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

use super::wordpiece::AddedToken as AddedJson;

#[derive(Deserialize)]
struct Json {
    version: Option<String>,
    #[serde(default)]
    added_tokens: Vec<AddedJson>,
    normalizer: Option<serde_json::Value>,
    pre_tokenizer: Option<serde_json::Value>,
    post_processor: Option<serde_json::Value>,
    model: ModelJson,
}

#[derive(Deserialize)]
struct ModelJson {
    #[serde(rename = "type")]
    kind: Option<String>,
    vocab: HashMap<String, u32>,
    merges: MergesJson,
    dropout: Option<f64>,
    unk_token: Option<String>,
    continuing_subword_prefix: Option<String>,
    end_of_word_suffix: Option<String>,
    fuse_unk: Option<bool>,
    byte_fallback: Option<bool>,
    ignore_merges: Option<bool>,
}

/// `[["a", "b"], …]` or the older `["a b", …]` (as tokenizers reads them: pairs first).
#[derive(Deserialize)]
#[serde(untagged)]
enum MergesJson {
    Pairs(Vec<(String, String)>),
    Strings(Vec<String>),
}

#[derive(Debug, Clone)]
struct Added {
    content: String,
    id: u32,
    lstrip: bool,
}

/// How offsets are trimmed after encoding (`process_offsets`), if they are.
#[derive(Debug, Clone, Copy)]
struct Trim {
    add_prefix_space: bool,
}

/// A byte-level BPE tokenizer read from `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct ByteLevelBpe {
    /// The model's vocabulary (added tokens not included).
    vocab: HashMap<String, u32>,
    vocab_r: HashMap<u32, String>,
    /// (left id, right id) → (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// The vocabulary id of each byte's char, if it has one.
    byte_ids: [Option<u32>; 256],
    byte_chars: [char; 256],
    /// Added tokens matched in the raw text, then (`normalized: true`) in the pieces left; each
    /// list longest first.
    raw_added: Vec<Added>,
    normalized_added: Vec<Added>,
    /// Every added token's id by content, and content by id (they come before the model's).
    added_ids: HashMap<String, u32>,
    #[cfg_attr(not(test), allow(dead_code))] // read by the parity tests only
    added_r: HashMap<u32, String>,
    add_prefix_space: bool,
    split: Option<Regex>,
    trim: Option<Trim>,
    unk: Option<String>,
    fuse_unk: bool,
    ignore_merges: bool,
}

fn unsupported(what: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!(
        "the browser build reads byte-level BPE tokenizers (ByteLevel pre-tokenizer, BPE model, no normalizer); {what}"
    ))
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("tokenizer JSON does not load: {what}"))
}

/// GPT-2's byte → char table (`bytes_char`): printable Latin-1 bytes map to themselves, the
/// others to U+0100 onwards in byte order.
fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('\0')
        };
    }
    table
}

/// A bool field of a pre-tokenizer or post-processor object; `default` when absent.
fn flag(v: &serde_json::Value, key: &str, default: Option<bool>, what: &str) -> Result<bool> {
    match v.get(key) {
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        None => default.ok_or_else(|| bad(format!("{what} has no {key:?}"))),
        Some(_) => Err(bad(format!("{what}'s {key:?} is not a boolean"))),
    }
}

fn kind(v: &serde_json::Value) -> Option<&str> {
    v.get("type").and_then(|t| t.as_str())
}

impl ByteLevelBpe {
    pub fn from_json(json: &str) -> Result<Self> {
        let j: Json = serde_json::from_str(json).map_err(bad)?;
        if j.version.as_deref().is_some_and(|v| v != "1.0") {
            return Err(bad("unknown tokenizer version"));
        }
        let m = j.model;
        if m.kind.as_deref().is_some_and(|k| k != "BPE") {
            return Err(unsupported(format!("this one's model is {:?}", m.kind.unwrap_or_default())));
        }
        if let Some(n) = &j.normalizer {
            return Err(unsupported(format!("this one has a normalizer ({:?})", kind(n).unwrap_or("?"))));
        }
        let pre = j.pre_tokenizer.ok_or_else(|| unsupported("this one has no pre-tokenizer"))?;
        if kind(&pre) != Some("ByteLevel") {
            return Err(unsupported(format!("this one's pre-tokenizer is {:?}", kind(&pre).unwrap_or("?"))));
        }
        let add_prefix_space = flag(&pre, "add_prefix_space", None, "the ByteLevel pre-tokenizer")?;
        let use_regex = flag(&pre, "use_regex", Some(true), "the ByteLevel pre-tokenizer")?;
        let trim = match &j.post_processor {
            None => None,
            Some(p) if matches!(kind(p), Some("RobertaProcessing" | "ByteLevel")) => {
                let what = "the post-processor";
                let trim_offsets = flag(p, "trim_offsets", None, what)?;
                let add_prefix_space = flag(p, "add_prefix_space", None, what)?;
                trim_offsets.then_some(Trim { add_prefix_space })
            }
            Some(p) => return Err(unsupported(format!("this one's post-processor is {:?}", kind(p).unwrap_or("?")))),
        };
        if m.dropout.is_some_and(|d| d != 0.0) {
            return Err(unsupported("this one has BPE dropout"));
        }
        if m.byte_fallback == Some(true) {
            return Err(unsupported("this one has byte_fallback"));
        }
        if m.continuing_subword_prefix.as_deref().is_some_and(|s| !s.is_empty())
            || m.end_of_word_suffix.as_deref().is_some_and(|s| !s.is_empty())
        {
            return Err(unsupported("this one has a continuing_subword_prefix or end_of_word_suffix"));
        }

        let vocab = m.vocab;
        let merge_list: Vec<(String, String)> = match m.merges {
            MergesJson::Pairs(pairs) => pairs,
            MergesJson::Strings(lines) => {
                let mut pairs = Vec::with_capacity(lines.len());
                for (rank, line) in lines.into_iter().filter(|l| !l.starts_with("#version")).enumerate() {
                    let mut parts = line.split(' ');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some(a), Some(b), None) => pairs.push((a.to_string(), b.to_string())),
                        _ => return Err(bad(format!("merge {} is not two tokens separated by a space", rank + 1))),
                    }
                }
                pairs
            }
        };
        // Later duplicates replace earlier ones (tokenizers collects into a map, too).
        let mut merges = HashMap::with_capacity(merge_list.len());
        let mut merged = String::new();
        for (rank, (a, b)) in merge_list.iter().enumerate() {
            merged.clear();
            merged.push_str(a);
            merged.push_str(b);
            let (Some(&a), Some(&b), Some(&new)) = (vocab.get(a), vocab.get(b), vocab.get(&merged)) else {
                return Err(bad(format!("merge {} names a token that is not in the vocabulary", rank + 1)));
            };
            let rank = u32::try_from(rank).map_err(|_| bad("too many merges"))?;
            merges.insert((a, b), (rank, new));
        }
        let vocab_r: HashMap<u32, String> = vocab.iter().map(|(t, &id)| (id, t.clone())).collect();
        let chars = byte_chars();
        let mut byte_ids = [None; 256];
        let mut buf = [0u8; 4];
        for (b, id) in byte_ids.iter_mut().enumerate() {
            *id = vocab.get(&*chars[b].encode_utf8(&mut buf)).copied();
        }

        // Added tokens as `AddedVocabulary::add_tokens` numbers them: the model's id if the
        // model has the token, else the next id after the model's vocabulary (the JSON's "id"
        // fields are not read, as in tokenizers).
        let mut next_id = u32::try_from(vocab.len()).map_err(|_| bad("the vocabulary is too large"))?;
        let (mut raw_added, mut normalized_added) = (Vec::new(), Vec::new());
        let mut added_ids = HashMap::new();
        let mut added_r = HashMap::new();
        for t in j.added_tokens {
            if t.single_word || t.rstrip {
                return Err(unsupported("an added token is single_word or rstrip (lstrip is read)"));
            }
            if t.content.is_empty() {
                continue;
            }
            if added_ids.contains_key(&t.content) {
                return Err(unsupported("an added token is listed twice"));
            }
            let id = match vocab.get(&t.content) {
                Some(&id) => id,
                None => {
                    let id = next_id;
                    next_id = next_id.checked_add(1).ok_or_else(|| bad("too many added tokens"))?;
                    id
                }
            };
            added_ids.insert(t.content.clone(), id);
            added_r.entry(id).or_insert_with(|| t.content.clone());
            let added = Added { content: t.content, id, lstrip: t.lstrip };
            if t.normalized {
                normalized_added.push(added)
            } else {
                raw_added.push(added)
            }
        }
        raw_added.sort_by_key(|t| Reverse(t.content.len()));
        normalized_added.sort_by_key(|t| Reverse(t.content.len()));

        let split = if use_regex {
            Some(Regex::new(SPLIT).map_err(|e| Error::Tokenizer(format!("the split regex does not compile: {e}")))?)
        } else {
            None
        };
        Ok(Self {
            vocab,
            vocab_r,
            merges,
            byte_ids,
            byte_chars: chars,
            raw_added,
            normalized_added,
            added_ids,
            added_r,
            add_prefix_space,
            split,
            trim,
            unk: m.unk_token,
            fuse_unk: m.fuse_unk.unwrap_or(false),
            ignore_merges: m.ignore_merges.unwrap_or(false),
        })
    }

    /// An added token's id, else the model's (as `Tokenizer::token_to_id`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.added_ids.get(token).or_else(|| self.vocab.get(token)).copied()
    }

    /// The string of token `id`: an added token's content, else the model's vocabulary entry.
    #[cfg(test)]
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.added_r.get(&id).or_else(|| self.vocab_r.get(&id)).map(String::as_str)
    }

    /// The model's unknown token's id, if it has one in the vocabulary.
    pub fn unk_id(&self) -> Option<u32> {
        self.unk.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// Distinct tokens, added ones included (`get_vocab_size(true)`).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len() + self.added_ids.keys().filter(|t| !self.vocab.contains_key(*t)).count()
    }

    /// The largest id plus one (see `tokenize::tokenizer_id_span`).
    pub fn id_span(&self) -> u64 {
        self.vocab.values().chain(self.added_ids.values()).max().map_or(0, |&id| u64::from(id) + 1)
    }

    /// Ids and original byte offsets of `text`, without special tokens around it.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        // (id, offsets, whether the token's string is the text at `offsets` — an added token's).
        let mut tokens: Vec<(u32, (usize, usize), bool)> = Vec::new();
        for (raw, raw_match) in find_added(text, 0, text.len(), &self.raw_added) {
            if let Some(id) = raw_match {
                tokens.push((id, raw, true));
                continue;
            }
            for (piece, matched) in find_added(text, raw.0, raw.1, &self.normalized_added) {
                match matched {
                    Some(id) => tokens.push((id, piece, true)),
                    None => self.encode_piece(text, piece, &mut tokens)?,
                }
            }
        }
        let mut ids = Vec::with_capacity(tokens.len());
        let mut offsets = Vec::with_capacity(tokens.len());
        for (i, (id, mut range, is_added)) in tokens.into_iter().enumerate() {
            if let Some(trim) = self.trim {
                let token =
                    if is_added { Some(&text[range.0..range.1]) } else { self.vocab_r.get(&id).map(String::as_str) };
                range = trim_offsets(token.unwrap_or(""), range, i, trim);
            }
            ids.push(id);
            offsets.push(range);
        }
        Ok((ids, offsets))
    }

    /// Pre-tokenizes and encodes `text[range]`, a piece without added tokens.
    fn encode_piece(
        &self,
        text: &str,
        range: (usize, usize),
        tokens: &mut Vec<(u32, (usize, usize), bool)>,
    ) -> Result<()> {
        let mut chars: Vec<(char, (usize, usize))> = text[range.0..range.1]
            .char_indices()
            .map(|(i, c)| (c, (range.0 + i, range.0 + i + c.len_utf8())))
            .collect();
        let Some(&(first, first_range)) = chars.first() else {
            return Ok(());
        };
        if self.add_prefix_space && first != ' ' {
            // `NormalizedString::prepend`: the space takes the first char's offsets.
            chars.insert(0, (' ', first_range));
        }
        let Some(split) = &self.split else {
            return self.encode_word(&chars, tokens);
        };
        let normalized: String = chars.iter().map(|&(c, _)| c).collect();
        // Pieces cover the text in order (`SplitDelimiterBehavior::Isolated`); `char_at` is
        // the char index of byte `at`.
        let (mut at, mut char_at) = (0, 0);
        while at < normalized.len() {
            let (start, mut end) =
                split.find_at(&normalized, at).map_or((normalized.len(), normalized.len()), |m| (m.start(), m.end()));
            let matched = &normalized[start..end];
            // `\s+(?!\S)`: a run of 2+ whitespace chars before a non-space leaves it its last.
            if end < normalized.len() && matched.chars().all(char::is_whitespace) {
                if let Some((last, _)) = matched.char_indices().next_back().filter(|&(i, _)| i > 0) {
                    end = start + last;
                }
            }
            // Text the regex skips (none: every char is \s, \p{L}, \p{N} or neither), then the match.
            for (from, to) in [(at, start), (start, end)] {
                let n = normalized[from..to].chars().count();
                self.encode_word(&chars[char_at..char_at + n], tokens)?;
                char_at += n;
            }
            at = end;
        }
        Ok(())
    }

    /// The BPE model on one pre-token (`BPE::merge_word` and `Word::merge_all`).
    fn encode_word(
        &self,
        word: &[(char, (usize, usize))],
        tokens: &mut Vec<(u32, (usize, usize), bool)>,
    ) -> Result<()> {
        if word.is_empty() {
            return Ok(());
        }
        let chars = &self.byte_chars;
        // The byte-level string, one char per UTF-8 byte; each of its bytes keeps the offsets
        // of the original char it came from.
        let mut mapped = String::new();
        let mut align: Vec<(usize, usize)> = Vec::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4];
        for &(c, range) in word {
            for &b in c.encode_utf8(&mut buf).as_bytes() {
                let m = chars[b as usize];
                mapped.push(m);
                align.extend(std::iter::repeat_n(range, m.len_utf8()));
                bytes.push(b);
            }
        }
        let to_offsets = |start: usize, end: usize| (align[start].0, align[end - 1].1);
        if self.ignore_merges {
            if let Some(&id) = self.vocab.get(&mapped) {
                tokens.push((id, to_offsets(0, mapped.len()), false));
                return Ok(());
            }
        }
        let mut symbols: Vec<Symbol> = Vec::with_capacity(bytes.len());
        let mut unk: Option<(u32, usize)> = None;
        let unk_id = || {
            let token = self.unk.as_deref().unwrap_or_default();
            self.vocab
                .get(token)
                .copied()
                .ok_or_else(|| Error::Tokenizer("the unk token is not in the vocabulary".into()))
        };
        for &b in &bytes {
            let len = chars[b as usize].len_utf8();
            if let Some(id) = self.byte_ids[b as usize] {
                if let Some((unk_id, unk_len)) = unk.take() {
                    push_symbol(&mut symbols, unk_id, unk_len);
                }
                push_symbol(&mut symbols, id, len);
            } else if self.unk.is_some() {
                unk = match unk {
                    Some((id, unk_len)) if self.fuse_unk => Some((id, unk_len + len)),
                    Some((id, unk_len)) => {
                        push_symbol(&mut symbols, id, unk_len);
                        Some((unk_id()?, len))
                    }
                    None => Some((unk_id()?, len)),
                };
            }
            // No unk token: the byte is dropped (and later offsets shift, as in tokenizers).
        }
        if let Some((unk_id, unk_len)) = unk {
            push_symbol(&mut symbols, unk_id, unk_len);
        }
        self.merge_all(&mut symbols);
        let mut at = 0;
        for s in symbols.iter().filter(|s| s.len > 0) {
            tokens.push((s.id, to_offsets(at, at + s.len), false));
            at += s.len;
        }
        Ok(())
    }

    /// `Word::merge_all` without dropout: the lowest-ranked pair first, leftmost on ties.
    fn merge_all(&self, symbols: &mut [Symbol]) {
        let mut queue: BinaryHeap<Reverse<(u32, usize, u32)>> = symbols
            .windows(2)
            .enumerate()
            .filter_map(|(pos, w)| self.merges.get(&(w[0].id, w[1].id)).map(|&(rank, new)| Reverse((rank, pos, new))))
            .collect();
        while let Some(Reverse((_, pos, new_id))) = queue.pop() {
            let Some(next) = symbols[pos].next.filter(|_| symbols[pos].len > 0) else { continue };
            let right = symbols[next];
            if self.merges.get(&(symbols[pos].id, right.id)).is_none_or(|&(_, id)| id != new_id) {
                continue; // an expired entry
            }
            symbols[pos].id = new_id;
            symbols[pos].len += right.len;
            symbols[pos].next = right.next;
            symbols[next].len = 0;
            if let Some(after) = right.next {
                symbols[after].prev = Some(pos);
            }
            if let Some(prev) = symbols[pos].prev {
                if let Some(&(rank, new)) = self.merges.get(&(symbols[prev].id, symbols[pos].id)) {
                    queue.push(Reverse((rank, prev, new)));
                }
            }
            if let Some(after) = symbols[pos].next {
                if let Some(&(rank, new)) = self.merges.get(&(symbols[pos].id, symbols[after].id)) {
                    queue.push(Reverse((rank, pos, new)));
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    id: u32,
    prev: Option<usize>,
    next: Option<usize>,
    /// Bytes of the byte-level string; 0 once merged into the symbol before it.
    len: usize,
}

fn push_symbol(symbols: &mut Vec<Symbol>, id: u32, len: usize) {
    let n = symbols.len();
    if let Some(last) = symbols.last_mut() {
        last.next = Some(n);
    }
    symbols.push(Symbol { id, prev: n.checked_sub(1), next: None, len });
}

/// `AddedVocabulary::find_matches` on `text[start..end]`: the pieces in order, each with the
/// id of the added token it is, if it is one. Leftmost-longest matches; `lstrip` takes the
/// whitespace before a match (not past the previous one) into it.
fn find_added(text: &str, start: usize, end: usize, added: &[Added]) -> Vec<((usize, usize), Option<u32>)> {
    let mut pieces = Vec::new();
    let mut done = start;
    let mut i = start;
    while i < end {
        let rest = &text[i..end];
        let Some(t) = added.iter().find(|t| rest.starts_with(t.content.as_str())) else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        let mut from = i;
        if t.lstrip {
            let before = &text[start..i];
            let kept = before.trim_end_matches(char::is_whitespace).len();
            from = (start + kept).max(done);
        }
        if done < from {
            pieces.push(((done, from), None));
        }
        pieces.push(((from, i + t.content.len()), Some(t.id)));
        i += t.content.len();
        done = i;
    }
    if done < end || start == end {
        pieces.push(((done, end), None));
    }
    pieces
}

/// `process_offsets` for the token at index `i` with string `token`.
fn trim_offsets(token: &str, (mut start, mut end): (usize, usize), i: usize, trim: Trim) -> (usize, usize) {
    let space = |c: &char| *c == '\u{120}' || c.is_whitespace();
    let mut leading = token.chars().take_while(space).count();
    let trailing = token.chars().rev().take_while(space).count();
    if leading > 0 {
        if (i == 0 || start == 0) && trim.add_prefix_space && leading == 1 {
            leading = 0;
        }
        start = (start + leading).min(end);
    }
    if trailing > 0 && end >= trailing {
        end = (end - trailing).max(start);
    }
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte-level BPE tokenizer.json in the repository.
    fn fixtures() -> Vec<(&'static str, &'static str)> {
        vec![
            ("tiny-roberta-ner", include_str!("../../../models/fixtures/tiny-roberta-ner/tokenizer.json")),
            ("bpe-add-prefix-space", include_str!("../../tests/fixtures/bpe-add-prefix-space/tokenizer.json")),
        ]
    }

    /// The text of a vocabulary entry (its byte-level chars back to bytes), if it is UTF-8.
    fn decoded(token: &str) -> Option<String> {
        let chars = byte_chars();
        let bytes: Option<Vec<u8>> =
            token.chars().map(|c| chars.iter().position(|&b| b == c).map(|b| b as u8)).collect();
        String::from_utf8(bytes?).ok()
    }

    /// Text from pieces that exercise every step: words in and out of the vocabulary,
    /// contractions, runs of spaces, tabs and newlines (the regex's look-ahead), accents
    /// (composed and combining), CJK, emoji (multi-byte chars split into byte tokens), numbers
    /// next to letters, added tokens (with and without the whitespace `<mask>` strips),
    /// leading and trailing whitespace.
    fn generated(seed: u64, words: &[String]) -> String {
        const PIECES: &[&str] = &[
            " ",
            "  ",
            "   ",
            "\t",
            "\n",
            "\r\n",
            " \n ",
            "\u{a0}",
            "\u{3000}",
            "\u{2028}",
            "\u{85}",
            ".",
            ",",
            "!",
            "?",
            "-",
            "'",
            "\"",
            "(",
            ")",
            "...",
            "—",
            "don't",
            "it's",
            "we'll",
            "they're",
            "I've",
            "I'm",
            "she'd",
            "'S",
            "'ll've",
            "O'Brien",
            "Café",
            "cafe\u{301}",
            "naïve",
            "ÉCOLE",
            "Zoë",
            "ß",
            "ﬁ",
            "\u{301}",
            "a\u{328}\u{301}",
            "क्षि",
            "中文",
            "東京",
            "日本語",
            "한국어",
            "😀",
            "👍🏽",
            "\u{1F468}\u{200D}\u{1F469}",
            "emoji😀x",
            "5",
            "38.5",
            "120/80",
            "7.2%",
            "COVID-19",
            "HbA1c",
            "2mg",
            "x²",
            "①",
            "Ⅻ",
            "٣",
            "ℌ",
            "\u{0}",
            "\u{7}",
            "\u{fffd}",
            "\u{200b}",
            "\u{feff}",
            "<s>",
            "</s>",
            "<pad>",
            "<unk>",
            "<mask>",
            " <mask>",
            "  <mask>",
            "\t<mask> ",
            "<mas",
            "<<s>>",
            "x<mask>y",
            "<s><mask>",
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
            match next(5) {
                0 | 1 => text.push_str(PIECES[next(PIECES.len())]),
                2 => text.push_str(&words[next(words.len())]),
                3 => text.push_str(&words[next(words.len())].to_uppercase()),
                _ => text.push(' '),
            }
        }
        text
    }

    #[test]
    fn matches_the_tokenizers_crate() {
        for (name, json) in fixtures() {
            let ours = ByteLevelBpe::from_json(json).unwrap();
            let theirs = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
            let mut words: Vec<String> = ours.vocab.keys().filter_map(|t| decoded(t)).collect();
            words.sort();
            assert_eq!(ours.vocab_size(), theirs.get_vocab_size(true), "{name}");
            assert_eq!(ours.id_span(), crate::pipeline::tokenize::tokenizer_id_span(&theirs), "{name}");
            for token in ["<s>", "</s>", "<pad>", "<unk>", "<mask>", "Ġthe", "the", "nope-not-there"] {
                assert_eq!(ours.token_to_id(token), theirs.token_to_id(token), "{name}: {token}");
            }
            for id in 0..ours.id_span() as u32 + 2 {
                assert_eq!(ours.id_to_token(id).map(str::to_string), theirs.id_to_token(id), "{name}: {id}");
            }
            for seed in 0..3000 {
                let text = generated(seed, &words);
                let (ids, offsets) = ours.encode(&text).unwrap();
                let e = theirs.encode(text.as_str(), false).unwrap();
                assert_eq!(ids, e.get_ids(), "{name}: ids of {text:?}");
                assert_eq!(offsets, e.get_offsets(), "{name}: offsets of {text:?}");
            }
        }
    }

    /// The same fixtures with the other settings this reads: the pre-tokenizer's
    /// add_prefix_space flipped, no regex, no post-processor, the ByteLevel post-processor,
    /// trim_offsets off, the other merges form, ignore_merges.
    #[test]
    fn matches_the_tokenizers_crate_on_variants() {
        for (name, json) in fixtures() {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            let aps = v["pre_tokenizer"]["add_prefix_space"].as_bool().unwrap();
            type Change = Box<dyn Fn(&mut serde_json::Value)>;
            let variants: Vec<(&str, Change)> = vec![
                ("add_prefix_space flipped", Box::new(move |j| j["pre_tokenizer"]["add_prefix_space"] = (!aps).into())),
                ("no regex", Box::new(|j| j["pre_tokenizer"]["use_regex"] = false.into())),
                ("no post-processor", Box::new(|j| j["post_processor"] = serde_json::Value::Null)),
                (
                    "ByteLevel post-processor",
                    Box::new(
                        move |j| j["post_processor"] = serde_json::json!({"type": "ByteLevel", "add_prefix_space": !aps, "trim_offsets": true, "use_regex": true}),
                    ),
                ),
                ("no trim", Box::new(|j| j["post_processor"]["trim_offsets"] = false.into())),
                (
                    "merges as the other form",
                    Box::new(|j| {
                        let merges: Vec<serde_json::Value> = j["model"]["merges"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|m| match m {
                                serde_json::Value::String(s) => s.split(' ').collect::<Vec<_>>().into(),
                                pair => pair
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .map(|t| t.as_str().unwrap())
                                    .collect::<Vec<_>>()
                                    .join(" ")
                                    .into(),
                            })
                            .collect();
                        j["model"]["merges"] = merges.into();
                    }),
                ),
                ("ignore_merges", Box::new(|j| j["model"]["ignore_merges"] = true.into())),
                ("mask normalized", Box::new(|j| j["added_tokens"][4]["normalized"] = true.into())),
            ];
            for (what, change) in variants {
                let mut j = v.clone();
                change(&mut j);
                let json = j.to_string();
                let ours = ByteLevelBpe::from_json(&json).unwrap();
                let theirs = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
                let mut words: Vec<String> = ours.vocab.keys().filter_map(|t| decoded(t)).collect();
                words.sort();
                for seed in 0..250 {
                    let text = generated(seed + 10_000, &words);
                    let (ids, offsets) = ours.encode(&text).unwrap();
                    let e = theirs.encode(text.as_str(), false).unwrap();
                    assert_eq!(ids, e.get_ids(), "{name}, {what}: ids of {text:?}");
                    assert_eq!(offsets, e.get_offsets(), "{name}, {what}: offsets of {text:?}");
                }
            }
        }
    }

    fn roberta() -> serde_json::Value {
        serde_json::from_str(fixtures()[0].1).unwrap()
    }

    fn with(change: &dyn Fn(&mut serde_json::Value)) -> String {
        let mut j = roberta();
        change(&mut j);
        j.to_string()
    }

    #[test]
    fn refuses_what_it_does_not_read() {
        for bad in [
            with(&|j| j["normalizer"] = serde_json::json!({"type": "NFC"})),
            with(&|j| j["pre_tokenizer"] = serde_json::json!({"type": "Whitespace"})),
            with(&|j| j["pre_tokenizer"] = serde_json::Value::Null),
            with(&|j| j["post_processor"] = serde_json::json!({"type": "TemplateProcessing"})),
            with(&|j| j["model"]["type"] = "Unigram".into()),
            with(&|j| j["model"]["dropout"] = 0.1.into()),
            with(&|j| j["model"]["byte_fallback"] = true.into()),
            with(&|j| j["model"]["continuing_subword_prefix"] = "##".into()),
            with(&|j| j["model"]["end_of_word_suffix"] = "</w>".into()),
            with(&|j| j["added_tokens"][4]["rstrip"] = true.into()),
            with(&|j| j["added_tokens"][0]["single_word"] = true.into()),
            with(&|j| j["added_tokens"][1]["content"] = "<s>".into()),
        ] {
            let err = ByteLevelBpe::from_json(&bad).unwrap_err();
            assert_eq!(err.code(), "tokenizer");
            assert!(err.to_string().contains("byte-level BPE"), "{err}");
        }
    }

    /// Broken or hostile JSON: errors, never panics, and no token text in the messages.
    #[test]
    fn hostile_json_is_an_error() {
        let huge = format!(
            r#"{{"model":{{"type":"BPE","vocab":{{"a":0}},"merges":["a a"{}]}}}}"#,
            ", \"a a\"".repeat(100_000)
        );
        for bad in [
            String::new(),
            "[]".into(),
            r#"{"model": 5}"#.into(),
            r#"{"model": {"type": "BPE"}}"#.into(),
            r#"{"model": {"type": "BPE", "vocab": [], "merges": []}}"#.into(),
            r#"{"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}}"#.into(),
            r#"{"model": {"type": "BPE", "vocab": {"a": 4294967296}, "merges": []}}"#.into(),
            r#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}}"#.into(),
            r#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [5]}}"#.into(),
            huge,
            with(&|j| j["model"]["merges"][0] = serde_json::json!(["secret", "x"])),
            with(&|j| j["model"]["merges"][0] = "secret x".into()),
            with(&|j| j["model"]["merges"][0] = "a b c".into()),
            with(&|j| j["model"]["merges"][0] = serde_json::json!(["Ġ", "secret"])),
            with(&|j| j["model"]["vocab"] = serde_json::json!({"Ġ": 0, "a": 1, "b": 2})),
            with(&|j| j["pre_tokenizer"]["add_prefix_space"] = "yes".into()),
            with(&|j| j["pre_tokenizer"].as_object_mut().unwrap().remove("add_prefix_space").map(drop).unwrap()),
            with(&|j| j["post_processor"]["trim_offsets"] = serde_json::Value::Null),
            with(&|j| j["added_tokens"] = serde_json::json!([{"content": 7}])),
            with(&|j| j["version"] = "2.0".into()),
        ] {
            let err = ByteLevelBpe::from_json(&bad).unwrap_err();
            assert_eq!(err.code(), "tokenizer");
            assert!(!err.to_string().contains("secret"), "{err}");
            // The dispatch gives the same kind of error.
            assert!(crate::pipeline::tokenize::BrowserTokenizer::from_json(&bad).is_err());
        }
    }

    /// What the tokenizers crate reads without a complaint, read the same way: no unk token
    /// and bytes missing from the vocabulary (dropped, with the crate's shifted offsets); an
    /// unk token (fused or not); vocab ids with gaps; added tokens the model lacks.
    #[test]
    fn odd_vocabularies_match_the_crate() {
        let odd = [
            with(&|j| {
                let vocab = j["model"]["vocab"].as_object_mut().unwrap();
                vocab.retain(|t, _| !["Ã", "©", "ä", "Ġ"].contains(&t.as_str()));
                j["model"]["merges"] = serde_json::json!([]);
            }),
            with(&|j| {
                j["model"]["vocab"].as_object_mut().unwrap().retain(|t, _| t != "©" && t != "ä" && t != "Ġ");
                j["model"]["merges"] = serde_json::json!([]);
                j["model"]["unk_token"] = "<unk>".into();
                j["model"]["fuse_unk"] = true.into();
            }),
            with(&|j| {
                j["model"]["vocab"].as_object_mut().unwrap().retain(|t, _| t != "©" && t != "ä" && t != "Ġ");
                j["model"]["merges"] = serde_json::json!([]);
                j["model"]["unk_token"] = "<unk>".into();
            }),
            with(&|j| {
                j["model"]["vocab"].as_object_mut().unwrap().retain(|t, _| !t.starts_with('<'));
                j["model"]["vocab"]["Ġzz"] = 100_000.into();
                j["added_tokens"].as_array_mut().unwrap().push(serde_json::json!({"id": 9, "content": "[NEW]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false}));
            }),
        ];
        for json in odd {
            let ours = ByteLevelBpe::from_json(&json).unwrap();
            let theirs = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
            assert_eq!(ours.vocab_size(), theirs.get_vocab_size(true));
            assert_eq!(ours.id_span(), crate::pipeline::tokenize::tokenizer_id_span(&theirs));
            for token in ["<s>", "<mask>", "[NEW]", "Ġzz"] {
                assert_eq!(ours.token_to_id(token), theirs.token_to_id(token), "{token}");
            }
            for text in ["Café ©ä x", "  Ää ©© [NEW]<mask> done", "zz <s> zz\t\tzz", "©"] {
                let (ids, offsets) = ours.encode(text).unwrap();
                let e = theirs.encode(text, false).unwrap();
                assert_eq!(ids, e.get_ids(), "ids of {text:?}");
                assert_eq!(offsets, e.get_offsets(), "offsets of {text:?}");
            }
        }
        // An unk token the vocabulary lacks is an error once it is needed, as in the crate.
        let json = with(&|j| {
            j["model"]["vocab"].as_object_mut().unwrap().retain(|t, _| t != "©" && t != "<unk>");
            j["model"]["unk_token"] = "<unk>".into();
            j["added_tokens"].as_array_mut().unwrap().retain(|t| t["content"] != "<unk>");
        });
        let ours = ByteLevelBpe::from_json(&json).unwrap();
        assert!(ours.encode("abc").is_ok());
        assert_eq!(ours.encode("a©").unwrap_err().code(), "tokenizer");
        assert!(tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap().encode("a©", false).is_err());
    }

    #[test]
    fn the_browser_tokenizer_picks_the_model() {
        use crate::pipeline::tokenize::BrowserTokenizer;
        let (_, json) = fixtures()[0];
        let theirs = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
        let ours = BrowserTokenizer::from_json(json).unwrap();
        assert!(matches!(ours, BrowserTokenizer::ByteLevelBpe(_)));
        let text = "Mr. O'Brien's chest pain  <mask> resolved.";
        let e = theirs.encode(text, false).unwrap();
        assert_eq!(ours.encode(text).unwrap(), (e.get_ids().to_vec(), e.get_offsets().to_vec()));
        assert_eq!(ours.id_to_token(e.get_ids()[1]), theirs.id_to_token(e.get_ids()[1]).as_deref());

        let json = include_str!("../../../models/fixtures/tiny-classifier/tokenizer.json");
        let theirs = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
        let ours = BrowserTokenizer::from_json(json).unwrap();
        assert!(matches!(ours, BrowserTokenizer::WordPiece(..)));
        assert_eq!(ours.vocab_size(), theirs.get_vocab_size(true));
        for id in 0..ours.id_span() as u32 + 2 {
            assert_eq!(ours.id_to_token(id).map(str::to_string), theirs.id_to_token(id), "{id}");
        }
    }
}
