//! `Mode`: inference (dropout off) or training (dropout on, reproducible on CPU).
//!
//! candle cannot seed its CPU random generator, so on CPU the dropout masks come from a
//! counter-based generator here: the same seed and the same sequence of calls give the same
//! masks, which is what makes a CPU training run repeatable. On CUDA the masks come from the
//! device's own (seedable) generator: host-made masks would cost a copy per layer.
//!
//! A training step also carries its matmul precision: `Bf16` is PyTorch's autocast (bf16
//! operands and products, f32 master weights, LayerNorm, softmax and loss).

use std::cell::Cell;

use candle_core::{Device, Tensor};

use super::rng::SplitMix64;
use crate::error::Result;

/// The precision of a training step's matmuls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    /// `f32` or `bf16`, as the CLI and run configs spell it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(Self::F32),
            "bf16" => Some(Self::Bf16),
            _ => None,
        }
    }
}

/// A seeded stream of dropout masks, and the precision the step's matmuls run in.
#[derive(Debug)]
pub struct DropoutRng {
    rng: Cell<SplitMix64>,
    precision: Precision,
}

impl DropoutRng {
    pub fn new(seed: u64) -> Self {
        Self { rng: Cell::new(SplitMix64::new(seed)), precision: Precision::F32 }
    }

    pub fn with_precision(self, precision: Precision) -> Self {
        Self { precision, ..self }
    }

    /// `n` values, each `scale` with probability `keep` and 0 otherwise, drawn across cores
    /// (the same values as one draw after another).
    fn mask(&self, n: usize, keep: f64, scale: f32) -> Vec<f32> {
        use rayon::prelude::*;
        let start = self.rng.get();
        let mask = (0..n as u64).into_par_iter().map(|i| if start.f64_at(i) < keep { scale } else { 0.0 }).collect();
        let mut end = start;
        end.skip(n as u64);
        self.rng.set(end);
        mask
    }

    /// Where the stream stands, for checkpoints that must resume to the same weights.
    pub fn position(&self) -> u64 {
        self.rng.get().state()
    }

    pub fn restore(&self, position: u64) {
        self.rng.set(SplitMix64::new(position));
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    Eval,
    Train(&'a DropoutRng),
}

impl Mode<'_> {
    /// Whether this step's matmuls run in bf16 (see [`super::train_ops::bf16_matmul`]).
    pub fn bf16(&self) -> bool {
        matches!(self, Mode::Train(rng) if rng.precision == Precision::Bf16)
    }

    /// Zeroes each value with probability `p` and scales the rest by 1/(1-p) in training;
    /// the identity in evaluation.
    pub fn dropout(&self, xs: &Tensor, p: f64) -> Result<Tensor> {
        if !matches!(xs.device(), Device::Cpu) && matches!(self, Mode::Train(_)) && p > 0.0 {
            return Ok(candle_nn::ops::dropout(xs, p as f32)?);
        }
        match self.dropout_mask(xs.elem_count(), p) {
            Some(mask) => super::train_ops::mask_mul(xs, mask),
            None => Ok(xs.clone()),
        }
    }

    /// The host mask [`Mode::dropout`] would multiply `n` values by (drawn from the same
    /// stream); `None` in evaluation or at `p` = 0.
    pub(crate) fn dropout_mask(&self, n: usize, p: f64) -> Option<Vec<f32>> {
        let Mode::Train(rng) = self else { return None };
        (p > 0.0).then(|| rng.mask(n, 1.0 - p, (1.0 / (1.0 - p)) as f32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_mask_and_eval_is_identity() {
        let xs = Tensor::ones((4, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
        let a = Mode::Train(&DropoutRng::new(7)).dropout(&xs, 0.25).unwrap().to_vec2::<f32>().unwrap();
        let b = Mode::Train(&DropoutRng::new(7)).dropout(&xs, 0.25).unwrap().to_vec2::<f32>().unwrap();
        let c = Mode::Train(&DropoutRng::new(8)).dropout(&xs, 0.25).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let zeros = a.iter().flatten().filter(|&&v| v == 0.0).count();
        assert!((40..=90).contains(&zeros), "{zeros} of 256 dropped at p = 0.25");
        assert!(a.iter().flatten().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        let eval = Mode::Eval.dropout(&xs, 0.25).unwrap().to_vec2::<f32>().unwrap();
        assert!(eval.iter().flatten().all(|&v| v == 1.0));
    }
}
