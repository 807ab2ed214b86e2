//! Each kernel against a plain CPU loop on awkward shapes: sizes that are not multiples
//! of the 64×64×16 matmul tile or of the 64-wide workgroups, length 1, length 512.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::context::GpuContext;
use super::kernels::{row_grid, Activation, Dispatches, Kernels, P, PARAMS_STRIDE};
use crate::model::{SplitMix64, Weight};
use crate::runtime::block_on;

const TOLERANCE: f32 = 1e-4;

fn context() -> Option<GpuContext> {
    match block_on(GpuContext::new()) {
        Ok(ctx) => Some(ctx),
        Err(e) if std::env::var_os("BEDSIDE_REQUIRE_WEBGPU").is_some() => panic!("no WebGPU adapter: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

fn random(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| scale * (rng.next_f64() as f32 - 0.5)).collect()
}

fn output(ctx: &GpuContext, n: usize) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (n.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

fn params(ctx: &GpuContext) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: PARAMS_STRIDE,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

fn assert_close(want: &[f32], got: &[f32], what: &str) {
    assert_eq!(want.len(), got.len(), "{what}: length");
    let (i, d) = want.iter().zip(got).map(|(a, b)| (a - b).abs()).enumerate().fold((0, 0f32), |best, (i, d)| {
        if d > best.1 || d.is_nan() {
            (i, d)
        } else {
            best
        }
    });
    assert!(d <= TOLERANCE * (1.0 + want[i].abs()), "{what}: element {i} differs by {d} ({} vs {})", want[i], got[i]);
}

fn activate(x: f32, act: Activation) -> f32 {
    match act {
        Activation::None => x,
        Activation::Gelu => {
            let t = Tensor::new(&[x], &Device::Cpu).unwrap().gelu_erf().unwrap();
            t.to_vec1::<f32>().unwrap()[0]
        }
        Activation::GeluTanh => 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044715 * x * x * x)).tanh()),
        Activation::Relu => x.max(0.0),
        Activation::Tanh => x.tanh(),
    }
}

fn matmul_case(ctx: &GpuContext, kernels: &Kernels, m: usize, n: usize, k: usize, quant: GgmlDType, act: Activation) {
    let what = format!("matmul {m}×{k}·({n}×{k})ᵀ {quant:?} {act:?}");
    let x = random(1, m * k, 2.0);
    let w = Tensor::from_vec(random(2, n * k, 0.5), (n, k), &Device::Cpu).unwrap();
    let weight = if quant == GgmlDType::F32 {
        Weight::Dense(w)
    } else {
        Weight::Quantized(Arc::new(QTensor::quantize(&w, quant).unwrap()))
    };
    let bias = random(3, n, 1.0);
    // The reference multiplies the weights the kernel should see: dequantized ones.
    let dense: Vec<f32> = weight.to_f32().unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let want: Vec<f32> = (0..m * n)
        .map(|e| {
            let (r, c) = (e / n, e % n);
            let dot: f64 = (0..k).map(|i| x[r * k + i] as f64 * dense[c * k + i] as f64).sum();
            activate(dot as f32 + bias[c], act)
        })
        .collect();

    let matrix = ctx.upload_matrix("w", &[("w", &weight)]).unwrap();
    let x_buf = ctx.upload_f32("x", &x).unwrap();
    let bias_buf = ctx.upload_f32("bias", &bias).unwrap();
    let y = output(ctx, m * n);
    let p = params(ctx);
    let mut d = Dispatches::new(ctx, &p);
    let mut buffers = matrix.bindings();
    buffers.extend([(1, &x_buf), (4, &bias_buf), (5, &y)]);
    d.add(
        kernels.matmul(matrix.format),
        &[P::U(m), P::U(n), P::U(k), P::U(act as usize)],
        &buffers,
        (n.div_ceil(64) as u32, m.div_ceil(64) as u32, 1),
    );
    d.submit();
    let got = block_on(ctx.read_f32(&y, (m * n * 4) as u64)).unwrap();
    assert_close(&want, &got[..m * n], &what);
}

#[test]
fn matmul_on_odd_shapes_and_every_weight_format() {
    let Some(ctx) = context() else { return };
    let kernels = block_on(Kernels::new(&ctx, 64)).unwrap();
    for (m, n, k) in [(1, 1, 1), (1, 45, 70), (67, 45, 70), (130, 129, 17), (512, 64, 48)] {
        matmul_case(&ctx, &kernels, m, n, k, GgmlDType::F32, Activation::None);
    }
    for (m, n, k) in [(1, 45, 7), (67, 3, 33)] {
        matmul_case(&ctx, &kernels, m, n, k, GgmlDType::F16, Activation::None);
    }
    for quant in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
        for (m, n, k) in [(1, 45, 96), (67, 3, 32), (130, 129, 64)] {
            matmul_case(&ctx, &kernels, m, n, k, quant, Activation::None);
        }
    }
    for act in [Activation::Gelu, Activation::GeluTanh, Activation::Relu, Activation::Tanh] {
        matmul_case(&ctx, &kernels, 33, 20, 40, GgmlDType::F32, act);
    }
}

/// Reference attention for one (batch, head, query): softmax((q·scale)·kᵀ + mask)·v.
#[allow(clippy::too_many_arguments)]
fn attention_ref(qkv: &[f32], mask: &[f32], b: usize, s: usize, heads: usize, dim: usize) -> Vec<f32> {
    let hidden = heads * dim;
    let scale = 1.0 / (dim as f64).sqrt();
    let mut out = vec![0f32; b * s * hidden];
    for bi in 0..b {
        for h in 0..heads {
            for i in 0..s {
                let q = |d: usize| qkv[(bi * s + i) * 3 * hidden + h * dim + d] as f64 * scale;
                let scores: Vec<f64> = (0..s)
                    .map(|j| {
                        let key = (bi * s + j) * 3 * hidden + hidden + h * dim;
                        let dot: f64 = (0..dim).map(|d| q(d) * qkv[key + d] as f64).sum();
                        dot + (1.0 - mask[bi * s + j] as f64) * -1e30
                    })
                    .collect();
                let top = scores.iter().cloned().fold(f64::MIN, f64::max);
                let exps: Vec<f64> = scores.iter().map(|x| (x - top).exp()).collect();
                let total: f64 = exps.iter().sum();
                for d in 0..dim {
                    let v: f64 = (0..s)
                        .map(|j| exps[j] * qkv[(bi * s + j) * 3 * hidden + 2 * hidden + h * dim + d] as f64)
                        .sum();
                    out[(bi * s + i) * hidden + h * dim + d] = (v / total) as f32;
                }
            }
        }
    }
    out
}

#[test]
fn attention_masks_padding_at_lengths_1_to_512() {
    let Some(ctx) = context() else { return };
    let kernels = block_on(Kernels::new(&ctx, 512)).unwrap();
    // (batch, seq, heads, head_dim, real tokens per sequence)
    for (b, s, heads, dim, real) in [
        (1, 1, 1, 8, vec![1]),
        (2, 33, 3, 24, vec![33, 5]),
        (1, 512, 2, 64, vec![512]),
        (3, 70, 4, 100, vec![70, 1, 65]),
    ] {
        let hidden = heads * dim;
        let qkv = random(4, b * s * 3 * hidden, 2.0);
        let mask: Vec<f32> = (0..b * s).map(|t| if t % s < real[t / s] { 1.0 } else { 0.0 }).collect();
        let want = attention_ref(&qkv, &mask, b, s, heads, dim);
        let qkv_buf = ctx.upload_f32("qkv", &qkv).unwrap();
        let mask_buf = ctx.upload_f32("mask", &mask).unwrap();
        let y = output(&ctx, b * s * hidden);
        let p = params(&ctx);
        let mut d = Dispatches::new(&ctx, &p);
        let scale = 1.0 / (dim as f32).sqrt();
        d.add(
            &kernels.attention,
            &[P::U(s), P::U(heads), P::U(dim), P::U(hidden), P::F(scale)],
            &[(1, &qkv_buf), (2, &mask_buf), (3, &y)],
            (s as u32, heads as u32, b as u32),
        );
        d.submit();
        let got = block_on(ctx.read_f32(&y, (b * s * hidden * 4) as u64)).unwrap();
        assert_close(&want, &got, &format!("attention b{b} s{s} heads{heads} dim{dim}"));
    }
}

#[test]
fn residual_layer_norm_on_odd_widths() {
    let Some(ctx) = context() else { return };
    let kernels = block_on(Kernels::new(&ctx, 64)).unwrap();
    for (rows, h) in [(1, 1), (3, 50), (70, 384), (2, 1000)] {
        let a = random(5, rows * h, 4.0);
        let b = random(6, rows * h, 4.0);
        let gamma = random(7, h, 1.0);
        let beta = random(8, h, 1.0);
        let eps = 1e-12f32;
        let mut want = vec![0f32; rows * h];
        for r in 0..rows {
            let xs: Vec<f64> = (0..h).map(|d| (a[r * h + d] + b[r * h + d]) as f64).collect();
            let mean = xs.iter().sum::<f64>() / h as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / h as f64;
            for d in 0..h {
                want[r * h + d] = ((xs[d] - mean) / (var + eps as f64).sqrt()) as f32 * gamma[d] + beta[d];
            }
        }
        let bufs = [&a, &b, &gamma, &beta].map(|v| ctx.upload_f32("x", v).unwrap());
        let y = output(&ctx, rows * h);
        let p = params(&ctx);
        let mut d = Dispatches::new(&ctx, &p);
        d.add(
            &kernels.layer_norm,
            &[P::U(rows), P::U(h), P::F(eps)],
            &[(1, &bufs[0]), (2, &bufs[1]), (3, &bufs[2]), (4, &bufs[3]), (5, &y)],
            row_grid(rows),
        );
        d.submit();
        let got = block_on(ctx.read_f32(&y, (rows * h * 4) as u64)).unwrap();
        // h = 1 normalises to exactly beta; the tolerance covers the rest.
        assert_close(&want, &got, &format!("layer norm {rows}×{h}"));
    }
}

#[test]
fn pooling_cls_and_masked_mean_with_normalisation() {
    let Some(ctx) = context() else { return };
    let kernels = block_on(Kernels::new(&ctx, 64)).unwrap();
    let (b, s, h) = (3, 9, 70);
    let states = random(9, b * s * h, 2.0);
    let real = [9, 1, 4];
    let mask: Vec<f32> = (0..b * s).map(|t| if t % s < real[t / s] { 1.0 } else { 0.0 }).collect();
    for (mode, normalize) in [(0, false), (1, false), (1, true), (0, true)] {
        let mut want = vec![0f32; b * h];
        for bi in 0..b {
            for d in 0..h {
                want[bi * h + d] = if mode == 0 {
                    states[bi * s * h + d]
                } else {
                    (0..real[bi]).map(|t| states[(bi * s + t) * h + d]).sum::<f32>() / real[bi] as f32
                };
            }
            if normalize {
                let norm = want[bi * h..(bi + 1) * h].iter().map(|x| x * x).sum::<f32>().sqrt();
                want[bi * h..(bi + 1) * h].iter_mut().for_each(|x| *x /= norm);
            }
        }
        let states_buf = ctx.upload_f32("states", &states).unwrap();
        let mask_buf = ctx.upload_f32("mask", &mask).unwrap();
        let y = output(&ctx, b * h);
        let p = params(&ctx);
        let mut d = Dispatches::new(&ctx, &p);
        d.add(
            &kernels.pool,
            &[P::U(b), P::U(s), P::U(h), P::U(mode), P::U(usize::from(normalize))],
            &[(1, &states_buf), (2, &mask_buf), (3, &y)],
            (b as u32, 1, 1),
        );
        d.submit();
        let got = block_on(ctx.read_f32(&y, (b * h * 4) as u64)).unwrap();
        assert_close(&want, &got, &format!("pool mode {mode} normalize {normalize}"));
    }
}
