//! Evaluation: classification metrics (checked against scikit-learn) and reports.

pub mod embedding;
pub mod entities;
pub mod metrics;
pub mod report;
pub mod score;
