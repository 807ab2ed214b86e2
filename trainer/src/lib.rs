//! The trainer library behind the `bedside` CLI: data loading, training, evaluation and
//! export, and the local server. The CLI (src/main.rs, src/cli/) only parses flags and calls into here.
//!
//! A note's path on the training side: data (load, split) → scrub (runtime's
//! `pipeline::scrub`) → tokenize/window (runtime) → train → eval (metrics, report) → export.

pub mod alloc;
pub mod data;
pub mod durable;
pub mod eval;
pub mod hub;
pub mod serve;
pub mod train;
