//! `pytorch_model.bin` bytes (a checkpoint from a hub or a colleague): the bounded zip +
//! pickle reader, then the canonical weights the trainer and `export` build from them.
#![no_main]

use std::io::Cursor;

use bedside_runtime::checkpoint::read_pytorch_checkpoint_from;
use bedside_runtime::model::Weights;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tensors) = read_pytorch_checkpoint_from(Cursor::new(data), data.len() as u64, "fuzz.bin") else { return };
    let _ = Weights::from_checkpoint(tensors);
});
