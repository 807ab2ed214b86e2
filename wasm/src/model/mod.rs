//! The model: config, named weights, and the single BERT definition.

pub mod bert;
pub mod config;
pub mod mode;
pub mod ops;
pub mod packed;
pub mod random;
pub mod rng;
mod simd;
pub mod train_ops;
pub mod weights;

pub use bert::{Bert, Head, HeadFeatures, SequenceHead, TokenHead};
pub use config::{Activation, Architecture, BertConfig};
pub use mode::{DropoutRng, Mode, Precision};
pub use random::random_weights;
pub use rng::SplitMix64;
pub use weights::{canonical_name, QuantizedMatmul, Weight, Weights};
