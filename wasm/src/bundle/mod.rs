//! The bundle: one self-contained file (GGUF) with weights, tokenizer and manifest.

pub mod container;
pub mod manifest;
pub mod quantize;

pub use container::{read, write, Bundle};
pub use manifest::{Manifest, Quantization, SpecialTokens, Task, FORMAT_VERSION};
