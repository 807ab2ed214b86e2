//! Table bytes (CSV, TSV, JSONL) through every trainer reader of them: labelled notes
//! (`Dataset::from_reader`, behind `Dataset::load`) and the embedding evaluation's pairs,
//! triplets, documents and qrels (`eval::embedding::load_*_from_bytes`).
//!
//! Input: one selector byte, then the table. The selector's low bits pick the format, the
//! rest the reader and its options.
#![no_main]

use std::path::Path;

use bedside::data::{Dataset, Format, LoadOptions};
use bedside::eval::embedding::{
    load_documents_from_bytes, load_pairs_from_bytes, load_qrels_from_bytes, load_triplets_from_bytes, Document,
    PairsOptions, RetrievalOptions,
};
use libfuzzer_sys::fuzz_target;

const FORMATS: [Format; 3] = [Format::Csv, Format::Tsv, Format::Jsonl];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, table)) = data.split_first() else { return };
    let format = FORMATS[usize::from(selector % 3)];
    let path = Path::new("fuzz-input");
    match (selector / 3) % 6 {
        0 => {
            let _ = Dataset::from_reader(table, format, path, &LoadOptions::default());
        }
        1 => {
            let options = LoadOptions {
                id_col: Some("id".into()),
                group_col: Some("group".into()),
                label_separator: Some("|".into()),
                strict: selector & 0x80 != 0,
                ..LoadOptions::default()
            };
            if let Ok(dataset) = Dataset::from_reader(table, format, path, &options) {
                for example in &dataset.examples {
                    assert!(!example.labels.is_empty() && !example.text.trim().is_empty());
                }
            }
        }
        2 => {
            if let Ok(pairs) = load_pairs_from_bytes(path, table, format, &PairsOptions::default()) {
                assert!(pairs.iter().all(|p| (0.0..=1.0).contains(&p.label)));
            }
        }
        3 => {
            let _ = load_triplets_from_bytes(path, table, format);
        }
        4 => {
            let _ = load_documents_from_bytes(path, table, format, &RetrievalOptions::default());
        }
        _ => {
            // Qrels against a fixed query and corpus set, so ids can match.
            let doc = |id: &str| Document { id: id.into(), text: "x".into(), line: 1 };
            let queries = [doc("q1"), doc("q2")];
            let corpus = [doc("d1"), doc("d2"), doc("1")];
            let _ = load_qrels_from_bytes(
                path,
                table,
                format,
                &RetrievalOptions::default(),
                (Path::new("queries"), &queries),
                (Path::new("corpus"), &corpus),
            );
        }
    }
});
