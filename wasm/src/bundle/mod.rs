//! The bundle: one self-contained file (GGUF) with weights, tokenizer and manifest.

pub mod container;
pub mod gguf;
pub mod manifest;
pub mod quantize;

pub use container::{read, read_pinned, reseal, write, Bundle, ChecksumCoverage, Pin};
pub use manifest::{Manifest, Quantization, SpecialTokens, Task, FORMAT_VERSION};
