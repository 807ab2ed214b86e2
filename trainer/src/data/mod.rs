//! Data: labelled note sets from CSV, TSV or JSONL, with every unusable row reported, and
//! their seeded, stratified, group-aware train/val/test split.

mod dataset;
mod split;
pub mod table;
pub mod tags;

pub use dataset::{Dataset, DatasetError, Example, Format, LoadOptions, ProblemKind, RowProblem};
pub use split::{split, Split, SplitError, SplitOptions};
