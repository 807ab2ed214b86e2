//! A note's path through the runtime, one file per step, in order:
//! tokenize → window → encode → pool → (head, in `model`) → aggregate (sequence heads) or
//! entities (token heads).
//! `crate::runtime::Model` calls them in that order.

pub mod aggregate;
// The wasm build's byte-level BPE tokenizer (RoBERTa, GPT-2); natively only its tests run it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) mod bpe;
pub mod encode;
pub mod entities;
pub mod pool;
pub mod redact;
pub mod scrub;
pub mod subword;
pub mod tokenize;
pub mod window;
// The wasm build's tokenizer; natively only its test (against `tokenizers`) runs it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) mod wordpiece;
