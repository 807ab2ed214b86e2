//! Training: the optimiser recipe and trainable models built on the runtime's one BERT.

pub mod classifier;
pub mod optim;
pub mod run;
