//! Bedside runtime: runs a fine-tuned BERT on clinical text, natively and in the browser.
//!
//! A note's path: [`pipeline::tokenize`] → [`pipeline::window`] → [`pipeline::encode`]
//! (the one BERT in [`model`]) → [`pipeline::pool`] or the head → [`pipeline::aggregate`].
//! [`Model`] runs it; [`bundle`] reads and writes the single-file model format;
//! [`checkpoint`] reads Hugging Face directories (native only). The wasm-bindgen API is in
//! `api` (wasm32 only). The runtime takes bytes and never fetches: the page or CLI does.

pub mod bundle;
#[cfg(not(target_arch = "wasm32"))]
pub mod checkpoint;
pub mod error;
pub mod gpu;
pub mod model;
pub mod pipeline;
pub mod runtime;
pub mod search;

#[cfg(target_arch = "wasm32")]
mod api;

pub use bundle::{Manifest, Quantization, Task};
pub use error::{Error, Result};
pub use gpu::Backend;
pub use runtime::{Chunk, LabelScores, Model, Prediction};

/// The threaded browser build's `initThreadPool(n)`: n Web Workers share this module's memory
/// and run rayon's pool, over which the matmuls and attention split their work
/// (www/widget/worker.js calls it on a cross-origin isolated page).
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
pub use wasm_bindgen_rayon::init_thread_pool;
