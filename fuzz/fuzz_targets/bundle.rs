//! Bundle bytes (a `.gguf` file from anywhere): parse and verify, then build the model the
//! way `Model::load` does and run one note through it.
//!
//! The bundle's SHA-256 checksum stops most mutations early; the seeds are whole valid
//! bundles so that the header, tensor-bounds and manifest checks before it are reached.
#![no_main]

use bedside_runtime::{bundle, Model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = bundle::read(data) else { return };
    // `Model::load` is `bundle::read` + `from_parts`: not reading the bytes twice.
    let Ok(model) = Model::from_parts(bundle.manifest, &bundle.tokenizer_json, &bundle.weights) else { return };
    let _ = model.embed(&["Pt c/o chest pain x3d, BP 140/90."]);
});
