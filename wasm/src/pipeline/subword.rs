//! Subword: whether a token continues the word of the token before it, the way transformers'
//! token-classification pipeline decides it (`gather_pre_entities`), so that the `first`,
//! `average` and `max` aggregations merge the same tokens into words.
//!
//! - Tokenizers whose model marks continuations (WordPiece's `##`, a BPE with a
//!   `continuing_subword_prefix`): a token is a subword when its vocabulary string and the
//!   text it covers differ in length (in characters, as Python counts them).
//! - Others (byte-level BPE, Unigram): a token is a subword when it does not start the text
//!   and neither the character before it nor its first character is a space.
//! - The unknown token is never a subword.

use std::collections::HashMap;

/// What [`SubwordRule::is_subword`] needs from a tokenizer, read once at load.
#[derive(Debug, Clone, Default)]
pub struct SubwordRule {
    /// Per id, its vocabulary string's length in characters, for tokenizers that mark
    /// continuations; `None` selects the space heuristic. A map, not a table indexed by id:
    /// ids come from the tokenizer file, and a table would be as long as the largest one.
    token_chars: Option<HashMap<u32, u32>>,
    unk: Option<u32>,
}

impl SubwordRule {
    /// `vocab`: every (token string, id), added tokens included; `marks_continuations`:
    /// whether the model has a continuing-subword prefix.
    pub fn new<'a>(
        vocab: impl IntoIterator<Item = (&'a str, u32)>,
        marks_continuations: bool,
        unk: Option<u32>,
    ) -> Self {
        let token_chars = marks_continuations
            .then(|| vocab.into_iter().map(|(token, id)| (id, token.chars().count() as u32)).collect());
        Self { token_chars, unk }
    }

    /// Whether the token `id` covering `text[start..end]` continues the previous token's word.
    pub fn is_subword(&self, id: u32, text: &str, start: usize, end: usize) -> bool {
        if Some(id) == self.unk {
            return false;
        }
        match &self.token_chars {
            Some(chars) => {
                let covered = text.get(start..end).map_or(0, |s| s.chars().count() as u32);
                chars.get(&id).is_some_and(|&n| n != covered)
            }
            None => {
                if start == 0 {
                    return false;
                }
                let before = text.get(..start).and_then(|s| s.chars().next_back());
                let first = text.get(start..).and_then(|s| s.chars().next());
                before != Some(' ') && first != Some(' ')
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wordpiece_marks_by_length_and_bpe_by_spaces() {
        let wp = SubwordRule::new([("[UNK]", 0), ("hyper", 1), ("##tension", 2)], true, Some(0));
        let text = "hypertension x";
        assert!(!wp.is_subword(1, text, 0, 5));
        assert!(wp.is_subword(2, text, 5, 12));
        assert!(!wp.is_subword(0, text, 13, 14), "the unknown token starts a word");

        let bpe = SubwordRule::new([("a", 0)], false, None);
        let text = "Zoë Müller-Smith";
        assert!(!bpe.is_subword(0, text, 0, 2));
        assert!(bpe.is_subword(0, text, 2, 4), "inside Zoë");
        assert!(!bpe.is_subword(0, text, 5, 8), "after a space");
        assert!(bpe.is_subword(0, text, 11, 12), "the hyphen follows a letter");
    }
}
