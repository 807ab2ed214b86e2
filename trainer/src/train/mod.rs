//! Training: the optimiser recipe and trainable models built on the runtime's one BERT.

pub mod classifier;
pub mod config;
pub mod embed;
pub mod fit;
pub mod ner;
pub mod optim;
pub mod prepare;
pub mod probe;
pub mod run;
