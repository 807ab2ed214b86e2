//! Evaluation: classification metrics (checked against scikit-learn) and reports.
