//! Window: splits a tokenized note into overlapping windows that fit the model.
//!
//! Each window is `[CLS] tokens… [SEP]` with at most `max_len` ids, and consecutive windows
//! share `stride` tokens (the same meaning as `stride` in Hugging Face tokenizers'
//! overflowing windows). Every window keeps the byte span of the original text it covers,
//! so a UI can highlight the passage that drove a prediction.

use serde::Serialize;

use super::tokenize::{SpecialIds, Tokens};
use crate::error::{Error, Result};

/// How to cut text into model-sized pieces. Checked when built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    max_len: usize,
    stride: usize,
}

/// [CLS] and [SEP].
const SPECIAL_TOKENS_PER_WINDOW: usize = 2;

impl WindowSpec {
    pub fn new(max_len: usize, stride: usize) -> Result<Self> {
        if max_len <= SPECIAL_TOKENS_PER_WINDOW {
            return Err(Error::Window(format!("max_seq_len {max_len} leaves no room for text")));
        }
        let content = max_len - SPECIAL_TOKENS_PER_WINDOW;
        if stride >= content {
            return Err(Error::Window(format!(
                "stride {stride} must be smaller than the {content} text tokens a window holds"
            )));
        }
        Ok(Self { max_len, stride })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Text tokens per window.
    pub fn content_len(&self) -> usize {
        self.max_len - SPECIAL_TOKENS_PER_WINDOW
    }
}

/// One model input cut from a note.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// Ids with [CLS] and [SEP].
    #[serde(skip)]
    pub ids: Vec<u32>,
    /// Byte range of the original text this window covers.
    pub start: usize,
    pub end: usize,
    /// Range of text tokens (without specials) it holds.
    pub first_token: usize,
    pub num_tokens: usize,
}

fn window_from(tokens: &Tokens, first: usize, last: usize, special: SpecialIds) -> Window {
    let mut ids = Vec::with_capacity(last - first + SPECIAL_TOKENS_PER_WINDOW);
    ids.push(special.cls);
    ids.extend_from_slice(&tokens.ids[first..last]);
    ids.push(special.sep);
    Window {
        ids,
        start: tokens.offsets[first].0,
        end: tokens.offsets[last - 1].1,
        first_token: first,
        num_tokens: last - first,
    }
}

/// All windows of a note, in order. `tokens` must not be empty.
pub fn split(tokens: &Tokens, spec: WindowSpec, special: SpecialIds) -> Vec<Window> {
    let step = spec.content_len() - spec.stride;
    let mut windows = Vec::new();
    let mut first = 0;
    while first < tokens.len() {
        let last = (first + spec.content_len()).min(tokens.len());
        windows.push(window_from(tokens, first, last, special));
        if last == tokens.len() {
            break;
        }
        first += step;
    }
    windows
}

/// Only the first window: what sentence-transformers does with text over the limit.
pub fn truncate(tokens: &Tokens, spec: WindowSpec, special: SpecialIds) -> Window {
    window_from(tokens, 0, spec.content_len().min(tokens.len()), special)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECIAL: SpecialIds = SpecialIds { cls: 101, sep: 102, pad: 0 };

    /// One token per word of `text`, with real byte offsets.
    fn words(text: &str) -> Tokens {
        let mut tokens = Tokens::default();
        let mut pos = 0;
        for (i, word) in text.split(' ').enumerate() {
            tokens.ids.push(1000 + i as u32);
            tokens.offsets.push((pos, pos + word.len()));
            pos += word.len() + 1;
        }
        tokens
    }

    #[test]
    fn windows_overlap_by_stride_and_cover_every_token() {
        let text = "t0 t1 t2 t3 t4 t5 t6 t7 t8 t9";
        let tokens = words(text);
        let spec = WindowSpec::new(6, 1).unwrap(); // 4 text tokens, step 3
        let windows = split(&tokens, spec, SPECIAL);
        let firsts: Vec<_> = windows.iter().map(|w| (w.first_token, w.num_tokens)).collect();
        assert_eq!(firsts, vec![(0, 4), (3, 4), (6, 4)]);
        assert_eq!(&text[windows[1].start..windows[1].end], "t3 t4 t5 t6");
        assert_eq!(&text[windows[2].start..windows[2].end], "t6 t7 t8 t9");
        assert_eq!(windows[0].ids, vec![101, 1000, 1001, 1002, 1003, 102]);
        assert!(windows.iter().all(|w| w.ids.len() <= spec.max_len()));
    }

    #[test]
    fn short_text_is_one_window() {
        let tokens = words("chest pain");
        let windows = split(&tokens, WindowSpec::new(128, 32).unwrap(), SPECIAL);
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].ids.len(), 4);
    }

    #[test]
    fn last_window_is_not_repeated_when_text_ends_exactly() {
        let tokens = words("a b c d e f g");
        // 4 per window, step 3: [0..4] [3..7] — the second reaches the end, stop there.
        let windows = split(&tokens, WindowSpec::new(6, 1).unwrap(), SPECIAL);
        assert_eq!(windows.len(), 2);
    }

    #[test]
    fn truncate_keeps_the_first_window() {
        let text = "a b c d e f g";
        let w = truncate(&words(text), WindowSpec::new(5, 0).unwrap(), SPECIAL);
        assert_eq!(&text[w.start..w.end], "a b c");
    }

    #[test]
    fn spec_rejects_a_stride_that_would_never_advance() {
        assert!(WindowSpec::new(10, 8).is_err());
        assert!(WindowSpec::new(2, 0).is_err());
        assert!(WindowSpec::new(10, 7).is_ok());
    }
}
