//! Training's fused ops on the CPU: the dense layer, LayerNorm, GELU (erf), the attention's
//! scaled and masked softmax, and dropout, each a candle custom op with its own backward.
//!
//! Composed from candle's primitives each of these is a chain of whole-tensor passes forward
//! and a longer one back (LayerNorm: 9 ops forward; GELU's derivative: 9), every step
//! allocating; candle differentiates every argument, masks and constants included; and bias
//! and LayerNorm gradients are sums over rows, which candle's CPU reduce does on one core
//! along strides. Here each op is one pass forward and one back, split over rows across
//! cores, and gradients go only to arguments that need one. Off the CPU (CUDA) the composed
//! ops run: candle's device kernels are already one launch per op and differentiable.
//!
//! Determinism: work is split in blocks of a fixed number of rows, never by core count, and
//! per-block partial sums are added in block order, so a seed repeats a run bit for bit on
//! any number of threads.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::ops::{erf, exp, gelu_erf_slice, softmax_row, sum_of};
use crate::error::Result;

/// Rows per parallel task (and per partial sum).
const BLOCK_ROWS: usize = 32;
/// Values per parallel task in element-wise ops.
const BLOCK_VALUES: usize = 1 << 14;

/// Whether the fused ops run these tensors: CPU and f32.
pub(crate) fn fused_here(xs: &Tensor) -> bool {
    xs.device().is_cpu() && xs.dtype() == DType::F32
}

/// Whether [`attention`] runs on these activations (CPU, f32, native).
pub fn attention_runs_here(xs: &Tensor) -> bool {
    cfg!(not(target_arch = "wasm32")) && fused_here(xs)
}

fn f32_slice<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(all), Some((start, end))) => Ok(&all[start..end]),
        _ => candle_core::bail!("{op}: needs a contiguous f32 tensor"),
    }
}

/// Rows and row width of a tensor seen as `[rows, last dim]`.
fn rows_of(layout: &Layout) -> candle_core::Result<(usize, usize)> {
    let width = layout.shape().dims().last().copied().unwrap_or(1);
    if width == 0 {
        candle_core::bail!("fused op: empty last dimension")
    }
    Ok((layout.shape().elem_count() / width, width))
}

/// Sums `rows` (row-major, `width` wide) over rows, into `out`: per-block partials across
/// cores, added in block order.
fn column_sums(rows: &[f32], width: usize, out: &mut [f32]) {
    let partials: Vec<Vec<f32>> = rows
        .par_chunks(width * BLOCK_ROWS)
        .map(|block| {
            let mut sums = vec![0f32; width];
            for row in block.chunks_exact(width) {
                for (s, &v) in sums.iter_mut().zip(row) {
                    *s += v;
                }
            }
            sums
        })
        .collect();
    out.fill(0.0);
    for partial in &partials {
        for (o, p) in out.iter_mut().zip(partial) {
            *o += p;
        }
    }
}

/// Column sums of a `[rows, width]` tensor, as a `[width]` tensor.
#[derive(Debug, Clone, Copy)]
struct ColumnSums;

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "fused-column-sums"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = f32_slice(self.name(), storage, layout)?;
        let (_, width) = rows_of(layout)?;
        let mut out = vec![0f32; width];
        column_sums(xs, width, &mut out);
        Ok((CpuStorage::F32(out), Shape::from(width)))
    }
}

/// `y = x Wᵀ + b`, x `[…, in]` (any leading dimensions, run as one `[rows, in]` matmul), W
/// `[out, in]`, b `[out]`. Backward: the two matmuls, the weight's gradient made in W's own
/// layout (composed, it came transposed and was added along strides), the bias's as column
/// sums; no reshape nodes around it.
#[derive(Debug, Clone, Copy)]
struct Dense;

impl CustomOp3 for Dense {
    fn name(&self) -> &'static str {
        "fused-dense"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, k) = rows_of(x_layout)?;
        let (out, w_k) = w_layout.shape().dims2()?;
        let bias = f32_slice(self.name(), b, b_layout)?;
        let Some((start, _)) = x_layout.contiguous_offsets() else {
            candle_core::bail!("{}: needs a contiguous input", self.name())
        };
        if w_k != k || bias.len() != out || out == 0 {
            candle_core::bail!("{}: shapes [{n}, {k}] · [{out}, {w_k}]ᵀ + [{}]", self.name(), bias.len())
        }
        let rows = Layout::contiguous_with_offset((n, k), start);
        let CpuStorage::F32(mut ys) = x.matmul(w, (1, n, out, k), &rows, &w_layout.transpose(0, 1)?)? else {
            candle_core::bail!("{}: needs f32", self.name())
        };
        ys.par_chunks_mut(out * BLOCK_ROWS).for_each(|block| {
            for row in block.chunks_exact_mut(out) {
                for (y, &b) in row.iter_mut().zip(bias) {
                    *y += b;
                }
            }
        });
        let mut dims = x_layout.dims().to_vec();
        match dims.last_mut() {
            Some(last) => *last = out,
            None => candle_core::bail!("{}: a scalar input", self.name()),
        }
        Ok((CpuStorage::F32(ys), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (out, k) = w.dims2()?;
        let grad = grad.contiguous()?.reshape(((), out))?;
        let dx = if x.track_op() { Some(grad.matmul(w)?.reshape(x.shape())?) } else { None };
        let dw = if w.track_op() { Some(grad.t()?.matmul(&x.reshape(((), k))?)?) } else { None };
        let db = if b.track_op() { Some(grad.apply_op1_no_bwd(&ColumnSums)?) } else { None };
        Ok((dx, dw, db))
    }
}

/// `x Wᵀ + b` over the last dimension of `x`; differentiable, fused on the CPU.
pub fn dense(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if let Some(b) = bias.filter(|b| fused_here(xs) && fused_here(weight) && fused_here(b)) {
        return Ok(xs.contiguous()?.apply_op3(weight, b, Dense)?);
    }
    dense_with(xs, weight, bias, |a, b| Ok(a.matmul(b)?))
}

/// [`dense`] with its matmul in bf16 ([`bf16_matmul`]); the bias is added in f32.
pub fn dense_bf16(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    dense_with(xs, weight, bias, bf16_matmul)
}

/// `x Wᵀ + b` from composed ops, the product from `matmul`.
fn dense_with(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    matmul: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    // As one 2-D matmul: a weight broadcast over a batch dimension would make backward sum
    // a [batch, out, in] gradient over it.
    let mut dims = xs.dims().to_vec();
    let rows = xs.reshape(((), *dims.last().unwrap_or(&1)))?;
    let ys = matmul(&rows, &weight.t()?)?;
    let ys = match bias {
        Some(b) => ys.broadcast_add(b)?,
        None => ys,
    };
    if let Some(last) = dims.last_mut() {
        *last = ys.dim(1)?;
    }
    Ok(ys.reshape(dims)?)
}

/// `a · b` as PyTorch's bf16 autocast computes it: operands rounded to bf16, products summed
/// in f32, the result rounded to bf16, handed on as f32 (the next LayerNorm, softmax or loss
/// runs in f32). Differentiable: the gradients pass through the same roundings.
pub fn bf16_matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (a, b) = (a.to_dtype(DType::BF16)?, b.to_dtype(DType::BF16)?);
    let product = if a.device().is_cpu() {
        // candle's CPU matmul has no bf16 kernel (gemm's is f16): the same bf16 values, summed
        // in f32, which is what a bf16 kernel with f32 accumulation computes. Slower than f32
        // here (two extra passes); it exists so the numerics can be checked without a GPU.
        a.to_dtype(DType::F32)?.matmul(&b.to_dtype(DType::F32)?)?.to_dtype(DType::BF16)?
    } else {
        a.matmul(&b)?
    };
    Ok(product.to_dtype(DType::F32)?)
}

/// Mean and 1/σ of one row (population variance, as LayerNorm uses).
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = sum_of(row) / n;
    let variance = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (variance + eps).sqrt())
}

/// `(x − mean) / σ · γ + β` for each row of `width` values of `xs`.
fn layer_norm_rows(xs: &[f32], gamma: &[f32], beta: &[f32], width: usize, eps: f32) -> Vec<f32> {
    let mut ys = vec![0f32; xs.len()];
    ys.par_chunks_mut(width * BLOCK_ROWS).zip(xs.par_chunks(width * BLOCK_ROWS)).for_each(|(y_block, x_block)| {
        for (y, x) in y_block.chunks_exact_mut(width).zip(x_block.chunks_exact(width)) {
            let (mean, inv_std) = moments(x, eps);
            for i in 0..width {
                y[i] = (x[i] - mean) * inv_std * gamma[i] + beta[i];
            }
        }
    });
    ys
}

/// LayerNorm over the last dimension: `(x − mean) / σ · γ + β`.
#[derive(Debug, Clone, Copy)]
struct LayerNorm {
    eps: f32,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        gamma: &CpuStorage,
        gamma_layout: &Layout,
        beta: &CpuStorage,
        beta_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = f32_slice(self.name(), x, x_layout)?;
        let gamma = f32_slice(self.name(), gamma, gamma_layout)?;
        let beta = f32_slice(self.name(), beta, beta_layout)?;
        let (_, width) = rows_of(x_layout)?;
        if gamma.len() != width || beta.len() != width {
            candle_core::bail!("{}: γ, β of {}, {} for rows of {width}", self.name(), gamma.len(), beta.len())
        }
        Ok((CpuStorage::F32(layer_norm_rows(xs, gamma, beta, width, self.eps)), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, _) = rows_of(x.layout())?;
        // One pass makes all three: rows 0..n are ∂x, row n is ∂γ, row n+1 is ∂β.
        let all = x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &LayerNormBackward { eps: self.eps })?;
        let dx = if x.track_op() { Some(all.narrow(0, 0, rows)?.reshape(x.shape())?) } else { None };
        let dgamma = if gamma.track_op() { Some(all.get(rows)?) } else { None };
        let dbeta = if beta.track_op() { Some(all.get(rows + 1)?) } else { None };
        Ok((dx, dgamma, dbeta))
    }
}

/// LayerNorm's backward from x, γ and ∂y: `[rows + 2, width]` holding ∂x, then ∂γ, then ∂β.
#[derive(Debug, Clone, Copy)]
struct LayerNormBackward {
    eps: f32,
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "fused-layer-norm-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        gamma: &CpuStorage,
        gamma_layout: &Layout,
        dy: &CpuStorage,
        dy_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = f32_slice(self.name(), x, x_layout)?;
        let gamma = f32_slice(self.name(), gamma, gamma_layout)?;
        let dys = f32_slice(self.name(), dy, dy_layout)?;
        let (rows, width) = rows_of(x_layout)?;
        if gamma.len() != width || dys.len() != xs.len() {
            candle_core::bail!("{}: shapes differ", self.name())
        }
        let out = layer_norm_backward(xs, gamma, dys, rows, width, self.eps);
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, width))))
    }
}

/// LayerNorm's backward over `rows` rows of `width`: `[rows + 2, width]` holding ∂x, then ∂γ,
/// then ∂β (partial sums per row block, added in block order).
fn layer_norm_backward(xs: &[f32], gamma: &[f32], dys: &[f32], rows: usize, width: usize, eps: f32) -> Vec<f32> {
    let mut out = vec![0f32; (rows + 2) * width];
    let (dxs, sums) = out.split_at_mut(rows * width);
    let partials: Vec<Vec<f32>> = dxs
        .par_chunks_mut(width * BLOCK_ROWS)
        .zip(xs.par_chunks(width * BLOCK_ROWS))
        .zip(dys.par_chunks(width * BLOCK_ROWS))
        .map(|((dx_block, x_block), dy_block)| {
            // [∂γ | ∂β] for this block's rows.
            let mut partial = vec![0f32; 2 * width];
            let (dgamma, dbeta) = partial.split_at_mut(width);
            let mut x_hat = vec![0f32; width];
            let rows =
                dx_block.chunks_exact_mut(width).zip(x_block.chunks_exact(width)).zip(dy_block.chunks_exact(width));
            for ((dx, x), dy) in rows {
                let (mean, inv_std) = moments(x, eps);
                let (mut sum_g, mut sum_g_x_hat) = (0f32, 0f32);
                for i in 0..width {
                    let h = (x[i] - mean) * inv_std;
                    let g = dy[i] * gamma[i];
                    x_hat[i] = h;
                    sum_g += g;
                    sum_g_x_hat += g * h;
                    dgamma[i] += dy[i] * h;
                    dbeta[i] += dy[i];
                }
                let (mean_g, mean_g_x_hat) = (sum_g / width as f32, sum_g_x_hat / width as f32);
                for i in 0..width {
                    dx[i] = inv_std * (dy[i] * gamma[i] - mean_g - x_hat[i] * mean_g_x_hat);
                }
            }
            partial
        })
        .collect();
    for partial in &partials {
        for (s, p) in sums.iter_mut().zip(partial) {
            *s += p;
        }
    }
    out
}

/// LayerNorm over the last dimension; differentiable, fused on the CPU.
pub fn layer_norm(xs: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Tensor> {
    if fused_here(xs) && fused_here(gamma) && fused_here(beta) {
        return Ok(xs.contiguous()?.apply_op3(gamma, beta, LayerNorm { eps })?);
    }
    Ok(candle_nn::ops::layer_norm_slow(xs, gamma, beta, eps)?)
}

/// A sublayer's end: `LayerNorm(x ⊙ dropout + residual)` with γ and β stacked as `[2, width]`.
/// One node where the composed form has three (dropout, add, LayerNorm), each a pass forward
/// and back; the sum is kept for backward.
#[derive(Debug)]
struct ResidualLayerNorm {
    eps: f32,
    dropout: Option<Arc<Vec<f32>>>,
    sum: Arc<std::sync::OnceLock<Vec<f32>>>,
}

impl CustomOp3 for ResidualLayerNorm {
    fn name(&self) -> &'static str {
        "fused-residual-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        residual: &CpuStorage,
        residual_layout: &Layout,
        gamma_beta: &CpuStorage,
        gamma_beta_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = f32_slice(self.name(), x, x_layout)?;
        let residuals = f32_slice(self.name(), residual, residual_layout)?;
        let gamma_beta = f32_slice(self.name(), gamma_beta, gamma_beta_layout)?;
        let (_, width) = rows_of(x_layout)?;
        if residuals.len() != xs.len()
            || gamma_beta.len() != 2 * width
            || self.dropout.as_ref().is_some_and(|d| d.len() != xs.len())
        {
            candle_core::bail!("{}: shapes differ", self.name())
        }
        let mut sum = vec![0f32; xs.len()];
        sum.par_chunks_mut(BLOCK_VALUES).enumerate().for_each(|(block, out)| {
            let (at, len) = (block * BLOCK_VALUES, out.len());
            let (x, r) = (&xs[at..at + len], &residuals[at..at + len]);
            match &self.dropout {
                Some(d) => {
                    for (((s, &x), &r), &d) in out.iter_mut().zip(x).zip(r).zip(&d[at..at + len]) {
                        *s = x * d + r;
                    }
                }
                None => {
                    for ((s, &x), &r) in out.iter_mut().zip(x).zip(r) {
                        *s = x + r;
                    }
                }
            }
        });
        let (gamma, beta) = gamma_beta.split_at(width);
        let ys = layer_norm_rows(&sum, gamma, beta, width, self.eps);
        let _ = self.sum.set(sum);
        Ok((CpuStorage::F32(ys), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        residual: &Tensor,
        gamma_beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, _) = rows_of(x.layout())?;
        let backward = ResidualLayerNormBackward { eps: self.eps, sum: self.sum.clone() };
        let all = grad.contiguous()?.apply_op2_no_bwd(gamma_beta, &backward)?;
        let d_sum = all.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dx = match (&self.dropout, x.track_op()) {
            (_, false) => None,
            (Some(d), true) => Some(d_sum.apply_op1_no_bwd(&MaskMul { mask: d.clone() })?),
            (None, true) => Some(d_sum.clone()),
        };
        let d_residual = residual.track_op().then_some(d_sum);
        let d_gamma_beta = if gamma_beta.track_op() { Some(all.narrow(0, rows, 2)?) } else { None };
        Ok((dx, d_residual, d_gamma_beta))
    }
}

/// [`ResidualLayerNorm`]'s backward from ∂y and the stacked γ, β: `[rows + 2, width]`.
#[derive(Debug)]
struct ResidualLayerNormBackward {
    eps: f32,
    sum: Arc<std::sync::OnceLock<Vec<f32>>>,
}

impl CustomOp2 for ResidualLayerNormBackward {
    fn name(&self) -> &'static str {
        "fused-residual-layer-norm-backward"
    }

    fn cpu_fwd(
        &self,
        dy: &CpuStorage,
        dy_layout: &Layout,
        gamma_beta: &CpuStorage,
        gamma_beta_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dys = f32_slice(self.name(), dy, dy_layout)?;
        let gamma_beta = f32_slice(self.name(), gamma_beta, gamma_beta_layout)?;
        let (rows, width) = rows_of(dy_layout)?;
        let Some(sum) = self.sum.get() else { candle_core::bail!("{}: no saved forward pass", self.name()) };
        if sum.len() != dys.len() || gamma_beta.len() != 2 * width {
            candle_core::bail!("{}: shapes differ from the forward pass", self.name())
        }
        let out = layer_norm_backward(sum, &gamma_beta[..width], dys, rows, width, self.eps);
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, width))))
    }
}

/// `LayerNorm(xs ⊙ dropout + residual)` (a sublayer's output, its dropout mask from
/// [`Mode::dropout_mask`](super::mode::Mode), the sublayer's input); differentiable in all
/// but the mask. `None` off the CPU: the caller composes candle's ops.
pub fn residual_layer_norm(
    xs: &Tensor,
    residual: &Tensor,
    dropout: Option<Vec<f32>>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> Result<Option<Tensor>> {
    if !(fused_here(xs) && fused_here(residual) && fused_here(gamma) && fused_here(beta))
        || xs.dims() != residual.dims()
    {
        return Ok(None);
    }
    let gamma_beta = Tensor::stack(&[gamma, beta], 0)?;
    let op = ResidualLayerNorm { eps, dropout: dropout.map(Arc::new), sum: Arc::default() };
    Ok(Some(xs.contiguous()?.apply_op3(&residual.contiguous()?, &gamma_beta, op)?))
}

const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// GELU, exact (erf) form; the same arithmetic as inference's kernel.
#[derive(Debug, Clone, Copy)]
struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "fused-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = f32_slice(self.name(), storage, layout)?;
        let mut ys = vec![0f32; xs.len()];
        ys.par_chunks_mut(BLOCK_VALUES).zip(xs.par_chunks(BLOCK_VALUES)).for_each(|(ys, xs)| gelu_erf_slice(xs, ys));
        Ok((CpuStorage::F32(ys), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &GeluErfBackward)?))
    }
}

/// ∂x = ∂y · (Φ(x) + x·φ(x)).
#[derive(Debug, Clone, Copy)]
struct GeluErfBackward;

impl CustomOp2 for GeluErfBackward {
    fn name(&self) -> &'static str {
        "fused-gelu-erf-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        dy: &CpuStorage,
        dy_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = f32_slice(self.name(), x, x_layout)?;
        let dys = f32_slice(self.name(), dy, dy_layout)?;
        if xs.len() != dys.len() {
            candle_core::bail!("{}: shapes differ", self.name())
        }
        let mut dxs = vec![0f32; xs.len()];
        dxs.par_chunks_mut(BLOCK_VALUES).zip(xs.par_chunks(BLOCK_VALUES)).zip(dys.par_chunks(BLOCK_VALUES)).for_each(
            |((dxs, xs), dys)| {
                for ((dx, &x), &dy) in dxs.iter_mut().zip(xs).zip(dys) {
                    let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
                    let pdf = FRAC_1_SQRT_2PI * exp(-0.5 * x * x);
                    *dx = dy * (cdf + x * pdf);
                }
            },
        );
        Ok((CpuStorage::F32(dxs), x_layout.shape().clone()))
    }
}

/// GELU (erf); differentiable, fused on the CPU.
pub fn gelu_erf(xs: &Tensor) -> Result<Tensor> {
    if fused_here(xs) {
        return Ok(xs.contiguous()?.apply_op1(GeluErf)?);
    }
    Ok(xs.gelu_erf()?)
}

/// `softmax(scores · scale + mask)` over keys, for scores `[batch, heads, queries, keys]` and
/// a per-key additive mask `[batch, keys]` (constant: it takes no gradient).
#[derive(Debug, Clone)]
struct MaskedSoftmax {
    scale: f32,
    mask: Arc<Vec<f32>>,
    /// heads × queries: how many score rows share one mask row.
    rows_per_mask: usize,
}

impl CustomOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "fused-masked-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let scores = f32_slice(self.name(), storage, layout)?;
        let (rows, keys) = rows_of(layout)?;
        if self.mask.len() * self.rows_per_mask != rows * keys {
            candle_core::bail!("{}: mask of {} for {rows} rows of {keys}", self.name(), self.mask.len())
        }
        let mut probs = vec![0f32; scores.len()];
        probs.par_chunks_mut(keys * BLOCK_ROWS).zip(scores.par_chunks(keys * BLOCK_ROWS)).enumerate().for_each(
            |(block, (p_block, s_block))| {
                let mut shifted = vec![0f32; keys];
                for (i, (p, s)) in p_block.chunks_exact_mut(keys).zip(s_block.chunks_exact(keys)).enumerate() {
                    let row = block * BLOCK_ROWS + i;
                    let mask = &self.mask[row / self.rows_per_mask * keys..][..keys];
                    for ((z, &s), &m) in shifted.iter_mut().zip(s).zip(mask) {
                        *z = s * self.scale + m;
                    }
                    softmax_row(&shifted, p);
                }
            },
        );
        Ok((CpuStorage::F32(probs), layout.shape().clone()))
    }

    fn bwd(&self, _scores: &Tensor, probs: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(probs.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxBackward { scale: self.scale })?))
    }
}

/// ∂s = scale · p ⊙ (∂p − Σ ∂p ⊙ p), row by row.
#[derive(Debug, Clone, Copy)]
struct SoftmaxBackward {
    scale: f32,
}

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "fused-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        p: &CpuStorage,
        p_layout: &Layout,
        dp: &CpuStorage,
        dp_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let ps = f32_slice(self.name(), p, p_layout)?;
        let dps = f32_slice(self.name(), dp, dp_layout)?;
        let (_, keys) = rows_of(p_layout)?;
        if ps.len() != dps.len() {
            candle_core::bail!("{}: shapes differ", self.name())
        }
        let mut ds = vec![0f32; ps.len()];
        let width = keys * BLOCK_ROWS;
        ds.par_chunks_mut(width).zip(ps.par_chunks(width)).zip(dps.par_chunks(width)).for_each(|((ds, ps), dps)| {
            for ((ds, p), dp) in ds.chunks_exact_mut(keys).zip(ps.chunks_exact(keys)).zip(dps.chunks_exact(keys)) {
                let dot: f32 = p.iter().zip(dp).map(|(a, b)| a * b).sum();
                for ((d, &p), &dp) in ds.iter_mut().zip(p).zip(dp) {
                    *d = self.scale * p * (dp - dot);
                }
            }
        });
        Ok((CpuStorage::F32(ds), p_layout.shape().clone()))
    }
}

/// The attention's `softmax(scores · scale + score_mask)` over the last dimension, for scores
/// `[batch, heads, queries, keys]` and `score_mask` `[batch, 1, 1, keys]`; differentiable in
/// `scores`, fused on the CPU.
pub fn masked_softmax(scores: &Tensor, score_mask: &Tensor, scale: f64) -> Result<Tensor> {
    let (batch, heads, queries, keys) = scores.dims4()?;
    if fused_here(scores) && fused_here(score_mask) && score_mask.dims() == [batch, 1, 1, keys] {
        let mask = Arc::new(score_mask.flatten_all()?.to_vec1::<f32>()?);
        let op = MaskedSoftmax { scale: scale as f32, mask, rows_per_mask: heads * queries };
        return Ok(scores.contiguous()?.apply_op1(op)?);
    }
    Ok(candle_nn::ops::softmax(&(scores * scale)?.broadcast_add(score_mask)?, candle_core::D::Minus1)?)
}

/// The fused attention: native only (it multiplies with gemm directly; wasm never trains).
#[cfg(not(target_arch = "wasm32"))]
mod attention {
    use super::*;

    /// `dst = lhs · rhs` for an `m×k` and a `k×n` matrix given by pointers and (row, column)
    /// strides in elements; `dst` is row-major with rows `dst_row` apart. One thread: the callers
    /// run many of these at once.
    ///
    /// Hand-written (over gemm) because the attention multiplies per-head blocks of the QKV rows
    /// and their transposes in place; candle's matmul would need each head copied out first.
    ///
    /// # Safety
    /// Every element the strides reach must lie inside the allocation behind its pointer, and
    /// `dst`'s must not overlap the inputs.
    #[allow(clippy::too_many_arguments)]
    unsafe fn matmul_strided(
        (m, k, n): (usize, usize, usize),
        dst: *mut f32,
        dst_row: usize,
        lhs: *const f32,
        (lhs_row, lhs_col): (usize, usize),
        rhs: *const f32,
        (rhs_row, rhs_col): (usize, usize),
    ) {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row as isize,
            false,
            lhs,
            lhs_col as isize,
            lhs_row as isize,
            rhs,
            rhs_col as isize,
            rhs_row as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }

    /// Self-attention's core: per batch row and head, `softmax(Q Kᵀ · scale + mask)`, dropout,
    /// times V. Input: the stacked projections `[batch, seq, 3 · hidden]` (Q | K | V, heads as
    /// column blocks, read in place: no split or merge copies); output `[batch, seq, hidden]`.
    /// The probabilities are kept for backward.
    #[derive(Debug, Clone)]
    struct Attention {
        heads: usize,
        scale: f32,
        /// Additive, `[batch, keys]`.
        mask: Arc<Vec<f32>>,
        /// Dropout multipliers over the probabilities, `[batch, heads, queries, keys]`.
        dropout: Option<Arc<Vec<f32>>>,
        probs: Arc<std::sync::OnceLock<Vec<f32>>>,
    }

    /// The shapes of one attention call: batch, sequence, hidden, head width.
    #[derive(Debug, Clone, Copy)]
    struct AttentionShape {
        batch: usize,
        seq: usize,
        hidden: usize,
        head_dim: usize,
    }

    impl Attention {
        fn shape(&self, layout: &Layout) -> candle_core::Result<AttentionShape> {
            let (batch, seq, three_hidden) = layout.shape().dims3()?;
            let hidden = three_hidden / 3;
            if hidden * 3 != three_hidden || self.heads == 0 || hidden % self.heads != 0 || seq == 0 {
                candle_core::bail!("fused attention: {three_hidden} columns for {} heads", self.heads)
            }
            if self.mask.len() != batch * seq {
                candle_core::bail!("fused attention: mask of {} for {batch} × {seq}", self.mask.len())
            }
            if self.dropout.as_ref().is_some_and(|d| d.len() != batch * self.heads * seq * seq) {
                candle_core::bail!("fused attention: dropout mask of the wrong size")
            }
            Ok(AttentionShape { batch, seq, hidden, head_dim: hidden / self.heads })
        }
    }

    /// Writes per-(batch, head) blocks `[seq, head_dim]` into head `h`'s columns of `[batch, seq,
    /// width]` rows at column `offset + h · head_dim`.
    fn scatter_heads<'a>(
        blocks: impl IntoIterator<Item = &'a [f32]>,
        out: &mut [f32],
        shape: AttentionShape,
        heads: usize,
        width: usize,
        offset: usize,
    ) {
        let AttentionShape { seq, head_dim, .. } = shape;
        for (task, block) in blocks.into_iter().enumerate() {
            let (b, h) = (task / heads, task % heads);
            for (i, row) in block.chunks_exact(head_dim).enumerate() {
                let at = (b * seq + i) * width + offset + h * head_dim;
                out[at..at + head_dim].copy_from_slice(row);
            }
        }
    }

    impl CustomOp1 for Attention {
        fn name(&self) -> &'static str {
            "fused-attention"
        }

        fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            let qkv = f32_slice(self.name(), storage, layout)?;
            let shape = self.shape(layout)?;
            let AttentionShape { batch, seq, hidden, head_dim } = shape;
            let width = 3 * hidden;
            let mut probs = vec![0f32; batch * self.heads * seq * seq];
            let contexts: Vec<Vec<f32>> = probs
                .par_chunks_mut(seq * seq)
                .enumerate()
                .map(|(task, p)| {
                    let (b, h) = (task / self.heads, task % self.heads);
                    let q = &qkv[b * seq * width + h * head_dim..];
                    let k = &q[hidden..];
                    let v = &q[2 * hidden..];
                    // SAFETY: the Q and K blocks span rows 0..seq of batch row b at row stride
                    // `width`, columns h·head_dim.. + head_dim, inside `qkv`; `p` holds seq × seq.
                    unsafe {
                        matmul_strided(
                            (seq, head_dim, seq),
                            p.as_mut_ptr(),
                            seq,
                            q.as_ptr(),
                            (width, 1),
                            k.as_ptr(),
                            (1, width),
                        );
                    }
                    let mask = &self.mask[b * seq..][..seq];
                    let mut shifted = vec![0f32; seq];
                    for row in p.chunks_exact_mut(seq) {
                        for ((z, &s), &m) in shifted.iter_mut().zip(row.iter()).zip(mask) {
                            *z = s * self.scale + m;
                        }
                        softmax_row(&shifted, row);
                    }
                    let dropped: Option<Vec<f32>> = self
                        .dropout
                        .as_ref()
                        .map(|d| p.iter().zip(&d[task * seq * seq..][..seq * seq]).map(|(p, d)| p * d).collect());
                    let weights = dropped.as_deref().unwrap_or(p);
                    let mut context = vec![0f32; seq * head_dim];
                    // SAFETY: `weights` is seq × seq; V's block is as Q's; `context` holds seq × head_dim.
                    unsafe {
                        matmul_strided(
                            (seq, seq, head_dim),
                            context.as_mut_ptr(),
                            head_dim,
                            weights.as_ptr(),
                            (seq, 1),
                            v.as_ptr(),
                            (width, 1),
                        );
                    }
                    context
                })
                .collect();
            let mut out = vec![0f32; batch * seq * hidden];
            scatter_heads(contexts.iter().map(Vec::as_slice), &mut out, shape, self.heads, hidden, 0);
            let _ = self.probs.set(probs);
            Ok((CpuStorage::F32(out), Shape::from((batch, seq, hidden))))
        }

        fn bwd(&self, qkv: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
            Ok(Some(qkv.apply_op2_no_bwd(&grad.contiguous()?, &AttentionBackward(self.clone()))?))
        }
    }

    /// The attention's backward: `[batch, seq, 3 · hidden]` gradients of Q | K | V from the saved
    /// probabilities and the output's gradient. Per head, with P the probabilities, D the dropout
    /// multipliers and G the output gradient: ∂V = (P⊙D)ᵀ G, ∂P = (G Vᵀ) ⊙ D,
    /// ∂S = scale · P ⊙ (∂P − rowsum(∂P ⊙ P)), ∂Q = ∂S K, ∂K = ∂Sᵀ Q.
    /// It holds the forward op: its shapes, mask, dropout and saved probabilities.
    #[derive(Debug)]
    struct AttentionBackward(Attention);

    impl CustomOp2 for AttentionBackward {
        fn name(&self) -> &'static str {
            "fused-attention-backward"
        }

        fn cpu_fwd(
            &self,
            qkv: &CpuStorage,
            qkv_layout: &Layout,
            grad: &CpuStorage,
            grad_layout: &Layout,
        ) -> candle_core::Result<(CpuStorage, Shape)> {
            let qkv = f32_slice(self.name(), qkv, qkv_layout)?;
            let grads = f32_slice(self.name(), grad, grad_layout)?;
            let forward = &self.0;
            let shape = forward.shape(qkv_layout)?;
            let AttentionShape { batch, seq, hidden, head_dim } = shape;
            let Some(probs) = forward.probs.get() else { candle_core::bail!("{}: no saved forward pass", self.name()) };
            if grads.len() != batch * seq * hidden || probs.len() != batch * forward.heads * seq * seq {
                candle_core::bail!("{}: shapes differ from the forward pass", self.name())
            }
            let width = 3 * hidden;
            let blocks: Vec<[Vec<f32>; 3]> = (0..batch * forward.heads)
                .into_par_iter()
                .map(|task| {
                    let (b, h) = (task / forward.heads, task % forward.heads);
                    let q = &qkv[b * seq * width + h * head_dim..];
                    let (k, v) = (&q[hidden..], &q[2 * hidden..]);
                    let g = &grads[b * seq * hidden + h * head_dim..];
                    let p = &probs[task * seq * seq..][..seq * seq];
                    let d = forward.dropout.as_ref().map(|d| &d[task * seq * seq..][..seq * seq]);
                    let dropped: Option<Vec<f32>> = d.map(|d| p.iter().zip(d).map(|(p, d)| p * d).collect());
                    let weights = dropped.as_deref().unwrap_or(p);
                    let (mut dq, mut dk, mut dv) =
                        (vec![0f32; seq * head_dim], vec![0f32; seq * head_dim], vec![0f32; seq * head_dim]);
                    let mut ds = vec![0f32; seq * seq];
                    // SAFETY (all five): Q, K, V and G blocks span rows 0..seq of batch row b at
                    // their row strides (`width`, `hidden`), head_dim columns from h·head_dim, inside
                    // their slices; P, D and ∂S are seq × seq; ∂Q, ∂K, ∂V are seq × head_dim.
                    unsafe {
                        // ∂V = (P⊙D)ᵀ G
                        matmul_strided(
                            (seq, seq, head_dim),
                            dv.as_mut_ptr(),
                            head_dim,
                            weights.as_ptr(),
                            (1, seq),
                            g.as_ptr(),
                            (hidden, 1),
                        );
                        // ∂(P⊙D) = G Vᵀ
                        matmul_strided(
                            (seq, head_dim, seq),
                            ds.as_mut_ptr(),
                            seq,
                            g.as_ptr(),
                            (hidden, 1),
                            v.as_ptr(),
                            (1, width),
                        );
                    }
                    if let Some(d) = d {
                        for (x, &d) in ds.iter_mut().zip(d) {
                            *x *= d;
                        }
                    }
                    for (row, p) in ds.chunks_exact_mut(seq).zip(p.chunks_exact(seq)) {
                        let dot: f32 = row.iter().zip(p).map(|(a, b)| a * b).sum();
                        for (x, &p) in row.iter_mut().zip(p) {
                            *x = forward.scale * p * (*x - dot);
                        }
                    }
                    unsafe {
                        // ∂Q = ∂S K, ∂K = ∂Sᵀ Q
                        matmul_strided(
                            (seq, seq, head_dim),
                            dq.as_mut_ptr(),
                            head_dim,
                            ds.as_ptr(),
                            (seq, 1),
                            k.as_ptr(),
                            (width, 1),
                        );
                        matmul_strided(
                            (seq, seq, head_dim),
                            dk.as_mut_ptr(),
                            head_dim,
                            ds.as_ptr(),
                            (1, seq),
                            q.as_ptr(),
                            (width, 1),
                        );
                    }
                    [dq, dk, dv]
                })
                .collect();
            let mut out = vec![0f32; batch * seq * width];
            for part in 0..3 {
                let of_part = blocks.iter().map(|b| b[part].as_slice());
                scatter_heads(of_part, &mut out, shape, forward.heads, width, part * hidden);
            }
            Ok((CpuStorage::F32(out), qkv_layout.shape().clone()))
        }
    }

    /// Self-attention from the stacked projections `qkv` `[batch, seq, 3 · hidden]` (Q | K | V):
    /// `softmax(Q Kᵀ · scale + score_mask)` per head, `dropout` (multipliers over the
    /// probabilities, from [`Mode::dropout_mask`](super::mode::Mode)), times V; `[batch, seq,
    /// hidden]`. Differentiable in `qkv`. `None` where it does not run (off the CPU, in wasm):
    /// the caller composes candle's ops instead.
    pub fn attention(
        qkv: &Tensor,
        score_mask: &Tensor,
        heads: usize,
        dropout: Option<Vec<f32>>,
    ) -> Result<Option<Tensor>> {
        if !fused_here(qkv) || !fused_here(score_mask) {
            return Ok(None);
        }
        let (batch, seq, three_hidden) = qkv.dims3()?;
        if score_mask.dims() != [batch, 1, 1, seq] || heads == 0 {
            return Ok(None);
        }
        let head_dim = three_hidden / 3 / heads;
        let op = Attention {
            heads,
            scale: 1.0 / (head_dim as f32).sqrt(),
            mask: Arc::new(score_mask.flatten_all()?.to_vec1::<f32>()?),
            dropout: dropout.map(Arc::new),
            probs: Arc::default(),
        };
        Ok(Some(qkv.contiguous()?.apply_op1(op)?))
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use attention::attention;

/// Training never runs in wasm: the caller composes candle's ops.
#[cfg(target_arch = "wasm32")]
pub fn attention(
    _qkv: &Tensor,
    _score_mask: &Tensor,
    _heads: usize,
    _dropout: Option<Vec<f32>>,
) -> Result<Option<Tensor>> {
    Ok(None)
}

/// Multiplies by a fixed mask (dropout's 0 or 1/(1−p) per value); backward multiplies the
/// gradient by the same mask.
#[derive(Debug, Clone)]
struct MaskMul {
    mask: Arc<Vec<f32>>,
}

impl CustomOp1 for MaskMul {
    fn name(&self) -> &'static str {
        "fused-dropout"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = f32_slice(self.name(), storage, layout)?;
        if xs.len() != self.mask.len() {
            candle_core::bail!("{}: mask of {} for {} values", self.name(), self.mask.len(), xs.len())
        }
        let mut ys = vec![0f32; xs.len()];
        ys.par_chunks_mut(BLOCK_VALUES)
            .zip(xs.par_chunks(BLOCK_VALUES))
            .zip(self.mask.par_chunks(BLOCK_VALUES))
            .for_each(|((ys, xs), mask)| {
                for ((y, &x), &m) in ys.iter_mut().zip(xs).zip(mask) {
                    *y = x * m;
                }
            });
        Ok((CpuStorage::F32(ys), layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(self)?))
    }
}

/// `xs ⊙ mask` for a dropout mask made on the host; differentiable in `xs`, fused on the CPU.
pub(crate) fn mask_mul(xs: &Tensor, mask: Vec<f32>) -> Result<Tensor> {
    if fused_here(xs) {
        return Ok(xs.contiguous()?.apply_op1(MaskMul { mask: Arc::new(mask) })?);
    }
    let mask = Tensor::from_vec(mask, xs.dims(), xs.device())?.to_dtype(xs.dtype())?;
    Ok(xs.mul(&mask)?)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// Uniform values in [-scale, scale), from a fixed seed.
    fn random(shape: &[usize], seed: u64, scale: f32) -> Tensor {
        let mut rng = crate::model::SplitMix64::new(seed);
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * scale).collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// Runs `fused` and `composed` on the same variables, checks the outputs agree and that
    /// the gradients of Σ y ⊙ r (a fixed random r, so every output's gradient differs) agree
    /// for every variable, each within `tolerance` of the composed op's largest gradient.
    fn check_against_composed(
        inputs: &[Tensor],
        fused: impl Fn(&[Tensor]) -> Tensor,
        composed: impl Fn(&[Tensor]) -> Tensor,
        tolerance: f32,
    ) {
        let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let (y_fused, y_composed) = (fused(&tensors), composed(&tensors));
        let forward = max_difference(&y_fused, &y_composed);
        assert!(forward < 1e-5, "forward differs by {forward}");
        let weights = random(y_fused.dims(), 99, 1.0);
        let g_fused = (y_fused * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        let g_composed = (y_composed * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        for (i, var) in vars.iter().enumerate() {
            let (a, b) = (g_fused.get(var).expect("fused gradient"), g_composed.get(var).expect("composed gradient"));
            let size = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1e-3);
            let difference = max_difference(a, b) / size;
            assert!(difference < tolerance, "gradient of input {i} differs by {difference} (relative)");
        }
    }

    #[test]
    fn dense_matches_the_composed_ops_and_their_gradients() {
        for x_shape in [vec![67, 37], vec![3, 23, 37]] {
            let inputs = [random(&x_shape, 1, 1.0), random(&[29, 37], 2, 0.3), random(&[29], 3, 0.5)];
            check_against_composed(
                &inputs,
                |t| dense(&t[0], &t[1], Some(&t[2])).unwrap(),
                |t| t[0].broadcast_matmul(&t[1].t().unwrap()).unwrap().broadcast_add(&t[2]).unwrap(),
                1e-5,
            );
        }
    }

    #[test]
    fn layer_norm_matches_the_composed_ops_and_their_gradients() {
        // An offset and a spread per row, as residual streams have.
        let x = (random(&[3, 23, 37], 4, 2.0) + 0.7).unwrap();
        let inputs = [x, (random(&[37], 5, 0.5) + 1.0).unwrap(), random(&[37], 6, 0.2)];
        check_against_composed(
            &inputs,
            |t| layer_norm(&t[0], &t[1], &t[2], 1e-12).unwrap(),
            |t| candle_nn::ops::layer_norm_slow(&t[0], &t[1], &t[2], 1e-12).unwrap(),
            1e-4,
        );
    }

    #[test]
    fn residual_layer_norm_matches_the_composed_ops_and_their_gradients() {
        let shape = [3, 23, 37];
        let dropout: Vec<f32> = (0..3 * 23 * 37).map(|i| if i % 5 == 1 { 0.0 } else { 1.0 / 0.8 }).collect();
        let dropout_tensor = Tensor::from_vec(dropout.clone(), &shape, &Device::Cpu).unwrap();
        let inputs = [
            random(&shape, 16, 2.0),
            (random(&shape, 17, 1.0) + 0.5).unwrap(),
            (random(&[37], 18, 0.5) + 1.0).unwrap(),
            random(&[37], 19, 0.2),
        ];
        for mask in [Some(dropout), None] {
            let composed_mask = mask.as_ref().map(|_| dropout_tensor.clone());
            check_against_composed(
                &inputs,
                |t| {
                    residual_layer_norm(&t[0], &t[1], mask.clone(), &t[2], &t[3], 1e-12)
                        .unwrap()
                        .expect("runs on the CPU")
                },
                |t| {
                    let x = match &composed_mask {
                        Some(m) => (&t[0] * m).unwrap(),
                        None => t[0].clone(),
                    };
                    candle_nn::ops::layer_norm_slow(&(x + &t[1]).unwrap(), &t[2], &t[3], 1e-12).unwrap()
                },
                1e-4,
            );
        }
    }

    #[test]
    fn gelu_matches_the_composed_op_and_its_gradient() {
        check_against_composed(
            &[random(&[5, 41, 19], 7, 5.0)],
            |t| gelu_erf(&t[0]).unwrap(),
            |t| t[0].gelu_erf().unwrap(),
            1e-4,
        );
    }

    #[test]
    fn masked_softmax_matches_the_composed_ops_and_its_gradient() {
        let (batch, heads, queries, keys) = (3, 2, 7, 11);
        // Batch row b masks its last b keys, as padding does.
        let mask: Vec<f32> = (0..batch)
            .flat_map(|b| (0..keys).map(move |k| if k + b >= keys { super::super::bert::MASKED_SCORE } else { 0.0 }))
            .collect();
        let score_mask = Tensor::from_vec(mask, (batch, 1, 1, keys), &Device::Cpu).unwrap();
        let scale = 1.0 / 8f64.sqrt();
        check_against_composed(
            &[random(&[batch, heads, queries, keys], 8, 6.0)],
            |t| masked_softmax(&t[0], &score_mask, scale).unwrap(),
            |t| {
                let scores = (&t[0] * scale).unwrap().broadcast_add(&score_mask).unwrap();
                candle_nn::ops::softmax(&scores, candle_core::D::Minus1).unwrap()
            },
            1e-4,
        );
    }

    #[test]
    fn attention_matches_the_composed_ops_and_their_gradient() {
        let (batch, seq, heads, head_dim) = (3, 11, 2, 5);
        let hidden = heads * head_dim;
        let mask: Vec<f32> = (0..batch)
            .flat_map(|b| (0..seq).map(move |k| if k + b >= seq { super::super::bert::MASKED_SCORE } else { 0.0 }))
            .collect();
        let score_mask = Tensor::from_vec(mask, (batch, 1, 1, seq), &Device::Cpu).unwrap();
        let dropout: Vec<f32> =
            (0..batch * heads * seq * seq).map(|i| if i % 7 == 3 { 0.0 } else { 1.0 / 0.9 }).collect();
        let dropout_tensor = Tensor::from_vec(dropout.clone(), (batch, heads, seq, seq), &Device::Cpu).unwrap();
        let scale = 1.0 / (head_dim as f64).sqrt();
        check_against_composed(
            &[random(&[batch, seq, 3 * hidden], 15, 2.0)],
            |t| attention(&t[0], &score_mask, heads, Some(dropout.clone())).unwrap().expect("runs on the CPU"),
            |t| {
                let part = |i: usize| {
                    let x = t[0].narrow(2, i * hidden, hidden).unwrap();
                    x.reshape((batch, seq, heads, head_dim)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap()
                };
                let (q, k, v) = (part(0), part(1), part(2));
                let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap().broadcast_add(&score_mask).unwrap();
                let probs = candle_nn::ops::softmax(&scores, candle_core::D::Minus1).unwrap();
                let context = (probs * &dropout_tensor).unwrap().matmul(&v).unwrap();
                context.transpose(1, 2).unwrap().reshape((batch, seq, hidden)).unwrap()
            },
            1e-4,
        );
    }

    #[test]
    fn mask_mul_matches_mul_and_its_gradient() {
        let mask: Vec<f32> = (0..5 * 13).map(|i| if i % 3 == 0 { 0.0 } else { 1.25 }).collect();
        let mask_tensor = Tensor::from_vec(mask.clone(), (5, 13), &Device::Cpu).unwrap();
        check_against_composed(
            &[random(&[5, 13], 9, 1.0)],
            |t| mask_mul(&t[0], mask.clone()).unwrap(),
            |t| t[0].mul(&mask_tensor).unwrap(),
            1e-6,
        );
    }

    /// The reductions are split by fixed row blocks, not by core count: one thread and three
    /// give the same bits.
    #[test]
    fn gradients_are_the_same_bits_on_any_number_of_threads() {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let x = Var::from_tensor(&random(&[301, 45], 10, 3.0)).unwrap();
                let gamma = Var::from_tensor(&random(&[45], 11, 1.0)).unwrap();
                let beta = Var::from_tensor(&random(&[45], 12, 1.0)).unwrap();
                let y = layer_norm(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-5).unwrap();
                let y = dense(
                    &y,
                    &random(&[17, 45], 13, 0.5),
                    Some(beta.as_tensor().narrow(0, 0, 17).unwrap().contiguous().as_ref().unwrap()),
                )
                .unwrap();
                let grads = (y * random(&[301, 17], 14, 1.0)).unwrap().sum_all().unwrap().backward().unwrap();
                [&x, &gamma, &beta].map(|v| grads.get(v).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap())
            })
        };
        assert_eq!(run(1), run(3));
    }
}
