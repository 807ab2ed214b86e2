//! Builds a `tokenizer.json` equivalent to Hugging Face's `BertTokenizer` from a bare
//! `vocab.txt`, so vocab-only checkpoints tokenize the same natively and in the browser.

use std::collections::HashMap;

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::Tokenizer;

use crate::bundle::SpecialTokens;

/// A cased vocabulary holds capitalised words; an uncased one holds none (besides
/// bracketed specials such as [CLS]). A 1% share tells them apart with a wide margin:
/// BioBERT's cased vocab is ~20% capitalised.
pub fn vocab_looks_cased(vocab: &str) -> bool {
    let words: Vec<&str> = vocab.lines().filter(|t| !t.starts_with('[') && !t.starts_with("##")).collect();
    let capitalised = words.iter().filter(|t| t.chars().any(char::is_uppercase)).count();
    !words.is_empty() && capitalised * 100 > words.len()
}

pub fn build_wordpiece_json(
    vocab_txt: &str,
    lowercase: bool,
    special: &SpecialTokens,
    unk: &str,
) -> std::result::Result<String, String> {
    let mut vocab = HashMap::new();
    for (id, token) in vocab_txt.lines().enumerate() {
        // First occurrence wins, as in transformers' load_vocab.
        vocab.entry(token.trim_end_matches('\r').to_string()).or_insert(id as u32);
    }
    let id = |t: &str| vocab.get(t).copied().ok_or_else(|| format!("special token {t:?} is not in vocab.txt"));
    let (cls_id, sep_id) = (id(&special.cls)?, id(&special.sep)?);
    id(unk)?;
    let model = WordPiece::builder()
        .vocab(vocab.into_iter().collect::<ahash::AHashMap<String, u32>>())
        .unk_token(unk.to_string())
        .continuing_subword_prefix("##".to_string())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(model);
    // transformers' BertTokenizer: strip_accents follows lowercase when unset.
    tokenizer.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)));
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer
        .with_post_processor(Some(BertProcessing::new((special.sep.clone(), sep_id), (special.cls.clone(), cls_id))));
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));
    tokenizer.to_string(false).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casing_is_inferred_from_the_vocabulary() {
        assert!(!vocab_looks_cased("[PAD]\n[CLS]\nthe\npatient\n##s\n"));
        assert!(vocab_looks_cased("[PAD]\n[CLS]\nThe\npatient\nAspirin\n##s\n"));
    }
}
