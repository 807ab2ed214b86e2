//! tokenizer.json bytes, loaded the way a bundle's tokenizer is (`TextTokenizer::from_json`,
//! called by `Model::from_parts`), then used on a text.
//!
//! Input: the JSON, optionally followed by a NUL byte and the text to tokenize (the seeds
//! carry one); without it a fixed clinical sentence is tokenized.
#![no_main]

use bedside_runtime::pipeline::tokenize::TextTokenizer;
use libfuzzer_sys::fuzz_target;

const DEFAULT_TEXT: &str = "Pt c/o chest pain x3d; BP 140/90, HR 102. Hx: T2DM, HTN.";

fuzz_target!(|data: &[u8]| {
    let (json, text) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, DEFAULT_TEXT.as_bytes()),
    };
    let Ok(json) = std::str::from_utf8(json) else { return };
    let Ok(tokenizer) = TextTokenizer::from_json(json, "[CLS]", "[SEP]", "[PAD]") else { return };
    let text = String::from_utf8_lossy(text);
    if let Ok(tokens) = tokenizer.tokenize(&text, 0) {
        assert_eq!(tokens.ids.len(), tokens.offsets.len());
        // Offsets index the text: windowing and highlighting slice it with them.
        for &(start, end) in &tokens.offsets {
            assert!(start <= end && end <= text.len(), "offset {start}..{end} outside {} bytes", text.len());
        }
    }
});
