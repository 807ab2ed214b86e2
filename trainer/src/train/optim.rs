//! The optimiser recipe of BERT fine-tuning, as Hugging Face Trainer does it: AdamW with
//! weight decay on weight matrices only (not on biases or LayerNorm), a linear warm-up to the
//! peak learning rate then a linear decay to zero, and clipping of the global gradient norm.

use candle_core::backprop::GradStore;
use candle_core::{Result, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};

/// Linear warm-up over `warmup_steps`, then linear decay to 0 at `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    pub peak_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl LinearSchedule {
    /// Learning rate for optimiser step `step` (0-based), as transformers'
    /// `get_linear_schedule_with_warmup`.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let remaining = self.total_steps.saturating_sub(step) as f64;
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        self.peak_lr * (remaining / decay_steps).max(0.0)
    }
}

/// Scales all gradients so their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`). Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for var in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            total += g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        }
    }
    let norm = total.sqrt();
    if norm.is_finite() && norm > max_norm {
        // PyTorch adds 1e-6 to the norm, so clipped norms land just under max_norm.
        let scale = max_norm / (norm + 1e-6);
        for var in vars {
            if let Some(g) = grads.remove(var.as_tensor()) {
                grads.insert(var.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(norm)
}

/// Whether a parameter gets weight decay: matrices yes; biases and LayerNorm no.
pub fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("LayerNorm"))
}

/// AdamW over two groups: decayed and not decayed.
pub struct GroupedAdamW {
    decayed: AdamW,
    plain: AdamW,
}

impl GroupedAdamW {
    pub fn new(named_vars: &[(String, Var)], lr: f64, weight_decay: f64) -> Result<Self> {
        let params = ParamsAdamW { lr, weight_decay, ..Default::default() };
        let (with, without): (Vec<_>, Vec<_>) = named_vars.iter().partition(|(n, _)| decays(n));
        Ok(Self {
            decayed: AdamW::new(with.into_iter().map(|(_, v)| v.clone()).collect(), params.clone())?,
            plain: AdamW::new(
                without.into_iter().map(|(_, v)| v.clone()).collect(),
                ParamsAdamW { weight_decay: 0.0, ..params },
            )?,
        })
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.decayed.set_learning_rate(lr);
        self.plain.set_learning_rate(lr);
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.decayed.step(grads)?;
        self.plain.step(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let s = LinearSchedule { peak_lr: 2e-5, warmup_steps: 10, total_steps: 110 };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 1e-5).abs() < 1e-12);
        assert!((s.lr(10) - 2e-5).abs() < 1e-12);
        assert!((s.lr(60) - 1e-5).abs() < 1e-12);
        assert_eq!(s.lr(110), 0.0);
        assert_eq!(s.lr(500), 0.0);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let a = Var::from_tensor(&Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(&[3f32], &Device::Cpu).unwrap()).unwrap();
        // loss = 3·a0 + 4·b0 → grads (3, 0) and (4): global norm 5.
        let loss = ((a.as_tensor().narrow(0, 0, 1).unwrap() * 3.0).unwrap() + (b.as_tensor() * 4.0).unwrap()).unwrap();
        let mut grads = loss.sum_all().unwrap().backward().unwrap();
        let norm = clip_grad_norm(&mut grads, &[a.clone(), b.clone()], 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        let ga = grads.get(a.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let gb = grads.get(b.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert!((ga[0] - 0.6).abs() < 1e-5 && ga[1] == 0.0 && (gb[0] - 0.8).abs() < 1e-5);
    }

    #[test]
    fn biases_and_layer_norms_do_not_decay() {
        assert!(decays("encoder.layer.0.attention.self.query.weight"));
        assert!(!decays("encoder.layer.0.attention.self.query.bias"));
        assert!(!decays("embeddings.LayerNorm.weight"));
    }
}
