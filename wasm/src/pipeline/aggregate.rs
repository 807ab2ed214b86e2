//! Aggregate: per-window probabilities → one answer for the whole note.
//!
//! The ClinicalBERT rule (Huang et al. 2019, "ClinicalBERT: Modeling Clinical Notes and
//! Predicting Hospital Readmission", eq. 4) scores a note from its n windows as
//! `P = (Pmax + Pmean·n/c) / (1 + n/c)`: a single alarming passage counts, and many
//! moderately positive ones count too. It is applied per output, so it fits binary and
//! multi-label heads; multi-class softmax outputs are averaged instead.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Aggregation {
    /// `(Pmax + Pmean·n/c) / (1 + n/c)`, per output.
    Clinicalbert { c: f32 },
    /// Mean over windows.
    Mean,
    /// Max over windows, per output.
    Max,
}

/// The ClinicalBERT paper's scaling constant.
pub const CLINICALBERT_DEFAULT_C: f32 = 2.0;

impl Aggregation {
    pub fn validate(&self) -> Result<()> {
        if let Aggregation::Clinicalbert { c } = self {
            if !(c.is_finite() && *c > 0.0) {
                return Err(Error::manifest("aggregation.c", format!("{c} must be a positive number")));
            }
        }
        Ok(())
    }

    /// Combines `windows` (each a probability vector of equal length) into one vector.
    pub fn combine(&self, windows: &[Vec<f32>]) -> Vec<f32> {
        let Some(first) = windows.first() else { return Vec::new() };
        let n = windows.len() as f32;
        let outputs = first.len();
        let column = |k: usize| windows.iter().map(move |w| w[k]);
        (0..outputs)
            .map(|k| {
                let mean = column(k).sum::<f32>() / n;
                let max = column(k).fold(f32::NEG_INFINITY, f32::max);
                match self {
                    Aggregation::Mean => mean,
                    Aggregation::Max => max,
                    Aggregation::Clinicalbert { c } => {
                        let r = n / c;
                        (max + mean * r) / (1.0 + r)
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clinicalbert_rule_matches_the_paper_by_hand() {
        // n = 3, c = 2: Pmax = 0.9, Pmean = 0.5 → (0.9 + 0.5·1.5) / 2.5 = 0.66
        let windows = vec![vec![0.1], vec![0.9], vec![0.5]];
        let p = Aggregation::Clinicalbert { c: 2.0 }.combine(&windows);
        assert!((p[0] - 0.66).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn one_window_is_its_own_score() {
        let p = Aggregation::Clinicalbert { c: 2.0 }.combine(&[vec![0.3, 0.7]]);
        assert!((p[0] - 0.3).abs() < 1e-6 && (p[1] - 0.7).abs() < 1e-6);
    }

    #[test]
    fn mean_and_max() {
        let w = vec![vec![0.2, 0.8], vec![0.6, 0.4]];
        assert_eq!(Aggregation::Mean.combine(&w), vec![0.4, 0.6]);
        assert_eq!(Aggregation::Max.combine(&w), vec![0.6, 0.8]);
    }

    #[test]
    fn rejects_non_positive_constant() {
        assert!(Aggregation::Clinicalbert { c: 0.0 }.validate().is_err());
    }
}
