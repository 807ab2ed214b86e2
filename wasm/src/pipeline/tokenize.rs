//! Tokenize: note text → WordPiece ids with byte offsets into the original text.
//!
//! Wraps the `tokenizers` crate with the tokenizer JSON stored in the bundle, so native and
//! browser builds split text identically. Special tokens are not added here: windowing adds
//! [CLS]/[SEP] around each window.

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// Token ids of one text and, per token, the byte range of the text it came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
}

impl Tokens {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The ids of the special tokens windowing and padding need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    pub cls: u32,
    pub sep: u32,
    pub pad: u32,
}

#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    special: SpecialIds,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer").field("special", &self.special).finish()
    }
}

impl TextTokenizer {
    /// Loads a `tokenizer.json`; `cls`, `sep`, `pad` are the special tokens' strings.
    pub fn from_json(json: &str, cls: &str, sep: &str, pad: &str) -> Result<Self> {
        // tokenizers 0.22.2 panics (`expect("Helper")`, decoders/mod.rs) on a JSON syntax
        // error inside "decoder" instead of returning an error; checking the syntax first
        // makes it an error in every build (fuzz/regressions/tokenizer_json/).
        serde_json::from_str::<serde::de::IgnoredAny>(json).map_err(|e| {
            Error::Tokenizer(format!("tokenizer JSON is not valid JSON (line {}, column {})", e.line(), e.column()))
        })?;
        let mut inner = Tokenizer::from_bytes(json.as_bytes())
            .map_err(|e| Error::Tokenizer(format!("tokenizer JSON does not load: {e}")))?;
        // The runtime windows and pads itself; a tokenizer.json that truncates (MiniLM's
        // truncates at 128) would silently drop the rest of a long note.
        inner.with_truncation(None).map_err(|e| Error::Tokenizer(format!("cannot disable truncation: {e}")))?;
        inner.with_padding(None);
        let id = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| Error::Tokenizer(format!("special token {token:?} is not in the vocabulary")))
        };
        let special = SpecialIds { cls: id(cls)?, sep: id(sep)?, pad: id(pad)? };
        Ok(Self { inner, special })
    }

    pub fn special_ids(&self) -> SpecialIds {
        self.special
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokenizes `text` without special tokens. `index` names the text in errors.
    pub fn tokenize(&self, text: &str, index: usize) -> Result<Tokens> {
        if text.trim().is_empty() {
            return Err(Error::EmptyText { index });
        }
        let encoding = self.inner.encode(text, false).map_err(|e| Error::Tokenizer(format!("text {index}: {e}")))?;
        let tokens = Tokens { ids: encoding.get_ids().to_vec(), offsets: encoding.get_offsets().to_vec() };
        if tokens.is_empty() {
            // Only control or other characters the normalizer removes.
            return Err(Error::EmptyText { index });
        }
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture's tokenizer.json with a syntax error inside "decoder" (found by
    /// fuzz/fuzz_targets/tokenizer_json.rs): an error, not a panic in the tokenizers crate.
    #[test]
    fn a_syntax_error_in_the_decoder_is_an_error() {
        let json = include_str!("../../../models/fixtures/tiny-classifier/tokenizer.json");
        let at = json.find("\"decoder\"").expect("the fixture has a decoder");
        let broken = format!("{}\"decoder\": {{ \"type\": \"WordPiece\", ^ }},{}", &json[..at], &json[at..]);
        let err = TextTokenizer::from_json(&broken, "[CLS]", "[SEP]", "[PAD]").unwrap_err();
        assert!(matches!(err, Error::Tokenizer(ref m) if m.contains("not valid JSON")), "{err}");
        assert!(TextTokenizer::from_json(json, "[CLS]", "[SEP]", "[PAD]").is_ok());
    }
}
