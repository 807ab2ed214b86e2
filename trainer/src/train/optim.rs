//! The optimiser recipe of BERT fine-tuning, as Hugging Face Trainer does it: AdamW with
//! weight decay on weight matrices only (not on biases or LayerNorm), a linear warm-up to the
//! peak learning rate then a linear decay to zero, and clipping of the global gradient norm.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var};

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

/// AdamW (Loshchilov & Hutter; PyTorch's `torch.optim.AdamW` update) over named
/// parameters, weight decay only where [`decays`] says. Written here rather than taken from
/// candle-nn because `--resume` must save and restore the moment estimates, which candle's
/// optimiser keeps private.
pub struct AdamW {
    params: Vec<Param>,
    lr: f64,
    weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// Optimiser steps taken (bias correction uses it).
    steps: usize,
}

struct Param {
    name: String,
    var: Var,
    decay: bool,
    m: Var,
    v: Var,
}

impl AdamW {
    pub fn new(named_vars: &[(String, Var)], lr: f64, weight_decay: f64) -> Result<Self> {
        let params = named_vars
            .iter()
            .map(|(name, var)| {
                Ok(Param {
                    name: name.clone(),
                    var: var.clone(),
                    decay: decays(name),
                    m: Var::zeros(var.shape(), var.dtype(), var.device())?,
                    v: Var::zeros(var.shape(), var.dtype(), var.device())?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { params, lr, weight_decay, beta1: 0.9, beta2: 0.999, eps: 1e-8, steps: 0 })
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        let correction1 = 1.0 - self.beta1.powi(t);
        let correction2 = 1.0 - self.beta2.powi(t);
        for p in &self.params {
            let Some(g) = grads.get(p.var.as_tensor()) else { continue };
            let m = ((p.m.as_tensor() * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            let v = ((p.v.as_tensor() * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let m_hat = (&m / correction1)?;
            let v_hat = (&v / correction2)?;
            let update = (m_hat / (v_hat.sqrt()? + self.eps)?)?;
            let decay = if p.decay { 1.0 - self.lr * self.weight_decay } else { 1.0 };
            let theta = ((p.var.as_tensor() * decay)? - (update * self.lr)?)?;
            p.m.set(&m)?;
            p.v.set(&v)?;
            p.var.set(&theta)?;
        }
        Ok(())
    }

    /// The moment estimates as named tensors (`m.<name>`, `v.<name>`), for a resumable state.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(2 * self.params.len());
        for p in &self.params {
            out.push((format!("m.{}", p.name), p.m.as_tensor().to_device(&Device::Cpu)?));
            out.push((format!("v.{}", p.name), p.v.as_tensor().to_device(&Device::Cpu)?));
        }
        Ok(out)
    }

    /// Restores what [`AdamW::state`] saved, after `steps` optimiser steps.
    pub fn restore(&mut self, state: &HashMap<String, Tensor>, steps: usize) -> Result<()> {
        for p in &self.params {
            for (prefix, moment) in [("m", &p.m), ("v", &p.v)] {
                let key = format!("{prefix}.{}", p.name);
                let saved =
                    state.get(&key).ok_or_else(|| candle_core::Error::Msg(format!("optimiser state lacks {key}")))?;
                moment.set(&saved.to_device(p.var.device())?)?;
            }
        }
        self.steps = steps;
        Ok(())
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
    fn adamw_matches_candle_and_restores_its_state() {
        use candle_nn::optim::{Optimizer, ParamsAdamW};
        let start = Tensor::new(&[[0.5f32, -1.0], [2.0, 0.25]], &Device::Cpu).unwrap();
        let loss = |v: &Var| v.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        // candle's AdamW, weight decay on, is the reference for the update.
        let reference = Var::from_tensor(&start).unwrap();
        let params = ParamsAdamW { lr: 0.1, weight_decay: 0.01, ..Default::default() };
        let mut theirs = candle_nn::optim::AdamW::new(vec![reference.clone()], params).unwrap();
        let ours_var = Var::from_tensor(&start).unwrap();
        let mut ours = AdamW::new(&[("w.weight".to_string(), ours_var.clone())], 0.1, 0.01).unwrap();
        for _ in 0..3 {
            theirs.step(&loss(&reference)).unwrap();
            ours.step(&loss(&ours_var)).unwrap();
        }
        let diff = (reference.as_tensor() - ours_var.as_tensor()).unwrap().abs().unwrap();
        assert!(diff.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-6);

        // A fresh optimiser restored from the state continues exactly like the original.
        let state: HashMap<String, Tensor> = ours.state().unwrap().into_iter().collect();
        let copy_var = Var::from_tensor(&ours_var.as_tensor().copy().unwrap()).unwrap();
        let mut copy = AdamW::new(&[("w.weight".to_string(), copy_var.clone())], 0.1, 0.01).unwrap();
        copy.restore(&state, ours.steps()).unwrap();
        ours.step(&loss(&ours_var)).unwrap();
        copy.step(&loss(&copy_var)).unwrap();
        let a = ours_var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = copy_var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn biases_and_layer_norms_do_not_decay() {
        assert!(decays("encoder.layer.0.attention.self.query.weight"));
        assert!(!decays("encoder.layer.0.attention.self.query.bias"));
        assert!(!decays("embeddings.LayerNorm.weight"));
    }
}
