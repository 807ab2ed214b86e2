//! Bundle bytes (a `.gguf` file from anywhere): parse and verify, then build the model the
//! way `Model::load` does and run one note through it.
//!
//! The checksum would stop almost every mutation at `read`, so each input is tried twice: as
//! it is (the header and bounds checks before the checksum), and resealed with its own
//! checksum (`bundle::reseal`), which reaches the manifest, the tensors and the model.
#![no_main]

use bedside_runtime::{bundle, Model};
use libfuzzer_sys::fuzz_target;

fn load_and_run(bytes: &[u8]) {
    let Ok(bundle) = bundle::read(bytes) else { return };
    // `Model::load` is `bundle::read` + `from_parts`: not reading the bytes twice.
    let Ok(model) = Model::from_parts(bundle.manifest, &bundle.tokenizer_json, &bundle.weights) else { return };
    let _ = model.embed(&["Pt c/o chest pain x3d, BP 140/90."]);
}

fuzz_target!(|data: &[u8]| {
    load_and_run(data);
    let mut resealed = data.to_vec();
    if bundle::reseal(&mut resealed).is_ok() {
        load_and_run(&resealed);
    }
});
