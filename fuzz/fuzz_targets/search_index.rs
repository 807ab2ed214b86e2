//! Saved search index bytes (`Index::from_bytes`, the `BSIX` format of wasm/src/search/index.rs).
//!
//! The input is read twice: as is, and with its SHA-256 checksum appended (the input as the
//! body), so that mutations reach the field checks behind the checksum. An index that reads
//! must write back to the same bytes and answer a query.
#![no_main]

use bedside_runtime::search::index::Index;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = Index::from_bytes(data) {
        check(&index, data);
    }
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&Sha256::digest(data));
    if let Ok(index) = Index::from_bytes(&sealed) {
        check(&index, &sealed);
    }
});

fn check(index: &Index, bytes: &[u8]) {
    assert!(index.to_bytes() == bytes, "an index that reads must write back to the same bytes");
    let query = vec![1.0f32; index.dim()];
    let hits = index.top_k(&query, 3).expect("a query of the index's dimension");
    assert!(hits.len() <= 3.min(index.len()));
    for id in index.ids() {
        assert!(index.vector(id).is_some_and(|v| v.len() == index.dim()));
    }
}
