//! Data: labelled note sets from CSV, TSV or JSONL, with every unusable row reported.
