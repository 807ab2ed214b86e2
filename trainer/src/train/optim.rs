//! The optimiser recipe of BERT fine-tuning, as Hugging Face Trainer does it: AdamW with
//! weight decay on weight matrices only (not on biases or LayerNorm), a linear warm-up to the
//! peak learning rate then a linear decay to zero, and clipping of the global gradient norm.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Device, InplaceOp2, Layout, Result, Tensor, Var};
use rayon::prelude::*;

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
    moments: Moments,
}

/// The first and second moment estimates of one parameter.
enum Moments {
    /// An f32 parameter on the CPU: plain buffers, updated with the weight in one fused pass.
    Host { m: Vec<f32>, v: Vec<f32> },
    /// Elsewhere (CUDA, other types): tensors, updated by composed tensor ops.
    Device { m: Var, v: Var },
}

/// The step's constants, as the composed ops see them: each scalar of `tensor * x` or
/// `tensor + x` becomes an f32 `mul`/`add` of candle's affine op.
#[derive(Clone, Copy)]
struct StepConstants {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    inv_correction1: f32,
    inv_correction2: f32,
    eps: f32,
    decay: f32,
    lr: f32,
}

/// One AdamW step of one parameter in a single pass over the weight, its gradient and both
/// moments, in place, with no temporaries (the composed ops made ten full-size temporaries
/// and three copies per parameter: ~250 ms of a ~2 s step of the bench's 4-layer model).
/// The arithmetic is the composed ops' own, operation for operation (affine `x·mul + add`
/// included), so the results are the same bits and a run resumed from older state
/// continues exactly.
struct FusedAdamW<'a> {
    moments: Mutex<(&'a mut [f32], &'a mut [f32])>,
    k: StepConstants,
}

/// Elements per parallel task: large enough that scheduling costs nothing, small enough
/// that both cores share a LayerNorm-sized parameter too.
const FUSED_CHUNK: usize = 1 << 14;

impl FusedAdamW<'_> {
    #[inline(always)]
    fn update(theta: &mut f32, m: &mut f32, v: &mut f32, g: f32, k: &StepConstants) {
        *m = (*m * k.beta1 + 0.0) + (g * k.one_minus_beta1 + 0.0);
        *v = (*v * k.beta2 + 0.0) + ((g * g) * k.one_minus_beta2 + 0.0);
        let m_hat = *m * k.inv_correction1 + 0.0;
        let v_hat = *v * k.inv_correction2 + 0.0;
        let update = m_hat / (v_hat.sqrt() * 1.0 + k.eps);
        *theta = (*theta * k.decay + 0.0) - (update * k.lr + 0.0);
    }
}

impl InplaceOp2 for FusedAdamW<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(&self, weight: &mut CpuStorage, wl: &Layout, grad: &CpuStorage, gl: &Layout) -> Result<()> {
        let (CpuStorage::F32(weight), CpuStorage::F32(grad)) = (weight, grad) else {
            candle_core::bail!("fused-adamw: f32 weights and gradients only");
        };
        let (Some((w0, w1)), Some((g0, g1))) = (wl.contiguous_offsets(), gl.contiguous_offsets()) else {
            candle_core::bail!("fused-adamw: weights and gradients must be contiguous");
        };
        let (theta, g) = (&mut weight[w0..w1], &grad[g0..g1]);
        let mut moments = self.moments.lock().unwrap_or_else(|p| p.into_inner());
        let (m, v) = &mut *moments;
        if theta.len() != g.len() || theta.len() != m.len() || theta.len() != v.len() {
            candle_core::bail!("fused-adamw: {} weights, {} gradients, {} moments", theta.len(), g.len(), m.len());
        }
        let k = self.k;
        // Elementwise, so the split across threads cannot change a bit.
        theta
            .par_chunks_mut(FUSED_CHUNK)
            .zip(m.par_chunks_mut(FUSED_CHUNK))
            .zip(v.par_chunks_mut(FUSED_CHUNK))
            .zip(g.par_chunks(FUSED_CHUNK))
            .for_each(|(((theta, m), v), g)| {
                for (((theta, m), v), &g) in theta.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                    Self::update(theta, m, v, g, &k);
                }
            });
        Ok(())
    }
}

impl AdamW {
    pub fn new(named_vars: &[(String, Var)], lr: f64, weight_decay: f64) -> Result<Self> {
        let params = named_vars
            .iter()
            .map(|(name, var)| {
                let moments = if var.device().is_cpu() && var.dtype() == DType::F32 {
                    Moments::Host { m: vec![0.0; var.elem_count()], v: vec![0.0; var.elem_count()] }
                } else {
                    Moments::Device {
                        m: Var::zeros(var.shape(), var.dtype(), var.device())?,
                        v: Var::zeros(var.shape(), var.dtype(), var.device())?,
                    }
                };
                Ok(Param { name: name.clone(), var: var.clone(), decay: decays(name), moments })
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
        for p in &mut self.params {
            let Some(g) = grads.get(p.var.as_tensor()) else { continue };
            let decay = if p.decay { 1.0 - self.lr * self.weight_decay } else { 1.0 };
            match &mut p.moments {
                Moments::Host { m, v } => {
                    let k = StepConstants {
                        beta1: self.beta1 as f32,
                        one_minus_beta1: (1.0 - self.beta1) as f32,
                        beta2: self.beta2 as f32,
                        one_minus_beta2: (1.0 - self.beta2) as f32,
                        inv_correction1: (1.0 / correction1) as f32,
                        inv_correction2: (1.0 / correction2) as f32,
                        eps: self.eps as f32,
                        decay: decay as f32,
                        lr: self.lr as f32,
                    };
                    let g = g.contiguous()?;
                    let op = FusedAdamW { moments: Mutex::new((m.as_mut_slice(), v.as_mut_slice())), k };
                    p.var.as_tensor().inplace_op2(&g, &op)?;
                }
                Moments::Device { m: m_var, v: v_var } => {
                    let m = ((m_var.as_tensor() * self.beta1)? + (g * (1.0 - self.beta1))?)?;
                    let v = ((v_var.as_tensor() * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
                    let m_hat = (&m / correction1)?;
                    let v_hat = (&v / correction2)?;
                    let update = (m_hat / (v_hat.sqrt()? + self.eps)?)?;
                    let theta = ((p.var.as_tensor() * decay)? - (update * self.lr)?)?;
                    m_var.set(&m)?;
                    v_var.set(&v)?;
                    p.var.set(&theta)?;
                }
            }
        }
        Ok(())
    }

    /// Steps with the composed tensor ops for every parameter, whatever its device: the
    /// reference the fused step is tested against.
    #[cfg(test)]
    fn use_composed_ops(&mut self) -> Result<()> {
        for p in &mut self.params {
            if let Moments::Host { m, v } = &p.moments {
                let shape = p.var.shape().clone();
                let m = Var::from_tensor(&Tensor::from_slice(m, shape.clone(), &Device::Cpu)?)?;
                let v = Var::from_tensor(&Tensor::from_slice(v, shape, &Device::Cpu)?)?;
                p.moments = Moments::Device { m, v };
            }
        }
        Ok(())
    }

    /// The moment estimates as named tensors (`m.<name>`, `v.<name>`), for a resumable state.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(2 * self.params.len());
        for p in &self.params {
            let (m, v) = match &p.moments {
                Moments::Host { m, v } => {
                    let shape = p.var.shape();
                    (Tensor::from_slice(m, shape, &Device::Cpu)?, Tensor::from_slice(v, shape, &Device::Cpu)?)
                }
                Moments::Device { m, v } => {
                    (m.as_tensor().to_device(&Device::Cpu)?, v.as_tensor().to_device(&Device::Cpu)?)
                }
            };
            out.push((format!("m.{}", p.name), m));
            out.push((format!("v.{}", p.name), v));
        }
        Ok(out)
    }

    /// Restores what [`AdamW::state`] saved, after `steps` optimiser steps.
    pub fn restore(&mut self, state: &HashMap<String, Tensor>, steps: usize) -> Result<()> {
        for p in &mut self.params {
            let saved = |prefix: &str| {
                let key = format!("{prefix}.{}", p.name);
                let tensor =
                    state.get(&key).ok_or_else(|| candle_core::Error::Msg(format!("optimiser state lacks {key}")))?;
                if tensor.shape() != p.var.shape() {
                    candle_core::bail!("optimiser state {key} has shape {:?}, not {:?}", tensor.dims(), p.var.dims());
                }
                Ok(tensor)
            };
            let (m_saved, v_saved) = (saved("m")?, saved("v")?);
            match &mut p.moments {
                Moments::Host { m, v } => {
                    *m = m_saved.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                    *v = v_saved.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                }
                Moments::Device { m, v } => {
                    m.set(&m_saved.to_device(p.var.device())?)?;
                    v.set(&v_saved.to_device(p.var.device())?)?;
                }
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
    fn the_fused_step_is_the_composed_ops_bit_for_bit() {
        // Odd shapes (a chunk and a bit, a prime, a scalar), decayed and not, over steps where
        // the bias corrections change, with gradients of both signs and zeros.
        let shapes: [(&str, &[usize]); 4] =
            [("a.weight", &[129, 131]), ("a.bias", &[127]), ("b.LayerNorm.weight", &[1]), ("c.weight", &[3, 5, 7])];
        let vars = |seed: u64| -> Vec<(String, Var)> {
            shapes
                .iter()
                .enumerate()
                .map(|(i, (name, dims))| {
                    let n: usize = dims.iter().product();
                    let values: Vec<f32> = (0..n)
                        .map(|j| (((j as u64 * 2654435761 + seed + i as u64) % 1000) as f32 - 500.0) / 250.0)
                        .collect();
                    (
                        name.to_string(),
                        Var::from_tensor(&Tensor::from_vec(values, *dims, &Device::Cpu).unwrap()).unwrap(),
                    )
                })
                .collect()
        };
        let (fused_vars, composed_vars) = (vars(7), vars(7));
        let mut fused = AdamW::new(&fused_vars, 3e-3, 0.01).unwrap();
        let mut composed = AdamW::new(&composed_vars, 3e-3, 0.01).unwrap();
        composed.use_composed_ops().unwrap();
        let loss = |vs: &[(String, Var)], step: usize| {
            // A loss whose gradients differ per element and per step: sum(w^3 · c) with c in
            // {-1, 0, 1, 2} by position.
            let mut total = Tensor::new(0f32, &Device::Cpu).unwrap();
            for (i, (_, v)) in vs.iter().enumerate() {
                let n = v.elem_count();
                let c: Vec<f32> = (0..n).map(|j| ((j + step + i) % 4) as f32 - 1.0).collect();
                let c = Tensor::from_vec(c, v.shape(), &Device::Cpu).unwrap();
                let term = (v.as_tensor().powf(3.0).unwrap() * c).unwrap().sum_all().unwrap();
                total = (total + term).unwrap();
            }
            total.backward().unwrap()
        };
        for step in 0..5 {
            fused.set_learning_rate(3e-3 * (step + 1) as f64);
            composed.set_learning_rate(3e-3 * (step + 1) as f64);
            fused.step(&loss(&fused_vars, step)).unwrap();
            composed.step(&loss(&composed_vars, step)).unwrap();
        }
        for ((name, a), (_, b)) in fused_vars.iter().zip(&composed_vars) {
            let bits = |v: &Var| {
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(a), bits(b), "{name}");
        }
        let moments = |o: &AdamW| {
            o.state()
                .unwrap()
                .into_iter()
                .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(moments(&fused), moments(&composed));
    }

    #[test]
    fn biases_and_layer_norms_do_not_decay() {
        assert!(decays("encoder.layer.0.attention.self.query.weight"));
        assert!(!decays("encoder.layer.0.attention.self.query.bias"));
        assert!(!decays("embeddings.LayerNorm.weight"));
    }
}
