//! Tokenize: note text → WordPiece ids with byte offsets into the original text.
//!
//! Wraps the `tokenizers` crate with the tokenizer JSON stored in the bundle, so native and
//! browser builds split text identically. Special tokens are not added here: windowing adds
//! [CLS]/[SEP] around each window. The wasm build encodes BERT WordPiece tokenizers with
//! [`super::wordpiece`] and byte-level BPE ones (RoBERTa, GPT-2) with [`super::bpe`] instead
//! (the same ids and offsets, without the crate's 1.7 MB): [`BrowserTokenizer`].

use tokenizers::Tokenizer;

#[cfg(not(target_arch = "wasm32"))]
type Inner = Tokenizer;
#[cfg(target_arch = "wasm32")]
type Inner = BrowserTokenizer;

use super::subword::SubwordRule;
use crate::error::{Error, Result};

/// Rows of an embedding table a tokenizer can index: its largest token id, added tokens
/// included, plus one. Not the vocabulary's size: ids may have gaps.
pub fn tokenizer_id_span(tokenizer: &Tokenizer) -> u64 {
    let vocab_max = tokenizer.get_vocab(true).into_values().max();
    let added_max = tokenizer.get_added_tokens_decoder().into_keys().max();
    vocab_max.max(added_max).map_or(0, |id| u64::from(id) + 1)
}

/// Checks that every id `tokenizer` can produce indexes a row of an embedding table of
/// `vocab_size` rows; a larger id would index past the table. `source` names the tokenizer
/// (a file or bundle) in the error.
pub fn check_tokenizer_fits(tokenizer: &Tokenizer, vocab_size: usize, source: &str) -> Result<()> {
    check_id_span(tokenizer_id_span(tokenizer), vocab_size, source)
}

/// Ids below `span` must each have an embedding row (`vocab_size` of them).
fn check_id_span(span: u64, vocab_size: usize, source: &str) -> Result<()> {
    if span > vocab_size as u64 {
        return Err(Error::TokenizerVocab { what: source.to_string(), max_id: (span - 1) as u32, vocab_size });
    }
    Ok(())
}

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
    inner: Inner,
    special: SpecialIds,
    subword: SubwordRule,
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
        #[cfg(target_arch = "wasm32")]
        let inner = Inner::from_json(json)?;
        #[cfg(not(target_arch = "wasm32"))]
        let inner = {
            let mut inner = Tokenizer::from_bytes(json.as_bytes())
                .map_err(|e| Error::Tokenizer(format!("tokenizer JSON does not load: {e}")))?;
            // The runtime windows and pads itself; a tokenizer.json that truncates (MiniLM's
            // truncates at 128) would silently drop the rest of a long note.
            inner.with_truncation(None).map_err(|e| Error::Tokenizer(format!("cannot disable truncation: {e}")))?;
            inner.with_padding(None);
            inner
        };
        let id = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| Error::Tokenizer(format!("special token {token:?} is not in the vocabulary")))
        };
        let special = SpecialIds { cls: id(cls)?, sep: id(sep)?, pad: id(pad)? };
        let subword = subword_rule(&inner);
        Ok(Self { inner, special, subword })
    }

    /// Whether token `id`, covering `text[start..end]`, continues the previous token's word
    /// (transformers' rule; see [`SubwordRule`]).
    pub fn is_subword(&self, id: u32, text: &str, start: usize, end: usize) -> bool {
        self.subword.is_subword(id, text, start, end)
    }

    pub fn special_ids(&self) -> SpecialIds {
        self.special
    }

    pub fn vocab_size(&self) -> usize {
        #[cfg(target_arch = "wasm32")]
        return self.inner.vocab_size();
        #[cfg(not(target_arch = "wasm32"))]
        self.inner.get_vocab_size(true)
    }

    /// [`check_tokenizer_fits`] for this tokenizer: every id it makes has an embedding row.
    pub fn check_fits(&self, vocab_size: usize, source: &str) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        let span = self.inner.id_span();
        #[cfg(not(target_arch = "wasm32"))]
        let span = tokenizer_id_span(&self.inner);
        check_id_span(span, vocab_size, source)
    }

    /// Tokenizes `text` without special tokens. `index` names the text in errors.
    pub fn tokenize(&self, text: &str, index: usize) -> Result<Tokens> {
        if text.trim().is_empty() {
            return Err(Error::EmptyText { index });
        }
        #[cfg(target_arch = "wasm32")]
        let tokens = {
            let (ids, offsets) = self.inner.encode(text)?;
            Tokens { ids, offsets }
        };
        #[cfg(not(target_arch = "wasm32"))]
        let tokens = {
            let encoding =
                self.inner.encode(text, false).map_err(|e| Error::Tokenizer(format!("text {index}: {e}")))?;
            Tokens { ids: encoding.get_ids().to_vec(), offsets: encoding.get_offsets().to_vec() }
        };
        if tokens.is_empty() {
            // Only control or other characters the normalizer removes.
            return Err(Error::EmptyText { index });
        }
        Ok(tokens)
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn subword_rule(tokenizer: &Tokenizer) -> SubwordRule {
    use tokenizers::models::ModelWrapper;
    let (prefix, unk) = match tokenizer.get_model() {
        ModelWrapper::WordPiece(wp) => (Some(wp.continuing_subword_prefix.clone()), Some(wp.unk_token.clone())),
        ModelWrapper::BPE(bpe) => (bpe.continuing_subword_prefix.clone(), bpe.unk_token.clone()),
        _ => (None, None),
    };
    let vocab = tokenizer.get_vocab(true);
    let unk = unk.and_then(|u| tokenizer.token_to_id(&u));
    SubwordRule::new(vocab.iter().map(|(t, &id)| (t.as_str(), id)), prefix.is_some_and(|p| !p.is_empty()), unk)
}

#[cfg(target_arch = "wasm32")]
fn subword_rule(inner: &Inner) -> SubwordRule {
    inner.subword_rule()
}

/// The wasm build's tokenizer, picked by the tokenizer JSON's `model.type`: "BPE" (or a
/// model with `merges`) is read as a byte-level BPE, anything else as BERT WordPiece (each
/// refuses what it does not read). Natively only tests build it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[derive(Debug, Clone)]
pub(crate) enum BrowserTokenizer {
    WordPiece(super::wordpiece::WordPiece),
    ByteLevelBpe(Box<super::bpe::ByteLevelBpe>),
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
impl BrowserTokenizer {
    pub fn from_json(json: &str) -> Result<Self> {
        // Only what picks the model; each model reads the JSON itself.
        #[derive(serde::Deserialize)]
        struct Head {
            model: Model,
        }
        #[derive(serde::Deserialize)]
        struct Model {
            #[serde(rename = "type")]
            kind: Option<String>,
            merges: Option<serde::de::IgnoredAny>,
        }
        let head: Head =
            serde_json::from_str(json).map_err(|e| Error::Tokenizer(format!("tokenizer JSON does not load: {e}")))?;
        if head.model.kind.as_deref() == Some("BPE") || (head.model.kind.is_none() && head.model.merges.is_some()) {
            return Ok(Self::ByteLevelBpe(Box::new(super::bpe::ByteLevelBpe::from_json(json)?)));
        }
        Ok(Self::WordPiece(super::wordpiece::WordPiece::from_json(json)?))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match self {
            Self::WordPiece(m) => m.token_to_id(token),
            Self::ByteLevelBpe(m) => m.token_to_id(token),
        }
    }

    /// The vocabulary string of token `id` (as `Tokenizer::id_to_token`: byte-level BPE
    /// strings are in GPT-2's byte-to-char form, `Ġ` for a space).
    #[cfg(test)]
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        match self {
            Self::WordPiece(m) => m.id_to_token(id),
            Self::ByteLevelBpe(m) => m.id_to_token(id),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::WordPiece(m) => m.vocab_size(),
            Self::ByteLevelBpe(m) => m.vocab_size(),
        }
    }

    pub fn id_span(&self) -> u64 {
        match self {
            Self::WordPiece(m) => m.id_span(),
            Self::ByteLevelBpe(m) => m.id_span(),
        }
    }

    pub fn encode(&self, text: &str) -> Result<super::bpe::Encoded> {
        match self {
            Self::WordPiece(m) => m.encode(text),
            Self::ByteLevelBpe(m) => m.encode(text),
        }
    }

    /// transformers' subword rule: WordPiece marks continuations; byte-level BPE does not.
    pub fn subword_rule(&self) -> SubwordRule {
        match self {
            Self::WordPiece(m) => m.subword_rule(),
            Self::ByteLevelBpe(m) => SubwordRule::new(std::iter::empty(), false, m.unk_id()),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokenizers::AddedToken;

    use super::*;

    const FIXTURE: &str = include_str!("../../../models/fixtures/tiny-safetensors/tokenizer.json");

    #[test]
    fn tokenizer_must_fit_the_embedding_table() {
        let mut tokenizer = Tokenizer::from_bytes(FIXTURE.as_bytes()).unwrap();
        let span = tokenizer_id_span(&tokenizer) as usize;
        assert_eq!(span, tokenizer.get_vocab_size(true), "the fixture's ids have no gaps");
        check_tokenizer_fits(&tokenizer, span, "fixture").unwrap();
        let err = check_tokenizer_fits(&tokenizer, span - 1, "fixture/tokenizer.json").unwrap_err();
        assert_eq!(err.code(), "tokenizer_vocab");
        assert!(
            matches!(&err, Error::TokenizerVocab { max_id, vocab_size, .. } if *max_id as usize == span - 1 && *vocab_size == span - 1)
        );
        assert!(err.to_string().contains("fixture/tokenizer.json"), "{err}");

        // An added token takes the next id: one row more is needed.
        tokenizer.add_tokens(&[AddedToken::from("[NEW]", false)]);
        assert_eq!(check_tokenizer_fits(&tokenizer, span, "fixture").unwrap_err().code(), "tokenizer_vocab");
        check_tokenizer_fits(&tokenizer, span + 1, "fixture").unwrap();
    }

    #[test]
    fn id_span_counts_the_largest_id_not_the_entries() {
        let json = r###"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
            "pre_tokenizer":null,"post_processor":null,"decoder":null,
            "model":{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##",
                     "max_input_chars_per_word":100,"vocab":{"[UNK]":0,"a":1,"b":5}}}"###;
        let tokenizer = Tokenizer::from_bytes(json.as_bytes()).unwrap();
        assert_eq!(tokenizer.get_vocab_size(true), 3);
        assert_eq!(tokenizer_id_span(&tokenizer), 6);
        assert!(check_tokenizer_fits(&tokenizer, 3, "gappy").is_err());
        check_tokenizer_fits(&tokenizer, 6, "gappy").unwrap();
    }

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
