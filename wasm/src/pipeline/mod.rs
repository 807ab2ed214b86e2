//! A note's path through the runtime, one file per step, in order:
//! tokenize → window → encode → pool → (head, in `model`) → aggregate.
//! `crate::runtime::Model` calls them in that order.

pub mod aggregate;
pub mod encode;
pub mod pool;
pub mod scrub;
pub mod tokenize;
pub mod window;
