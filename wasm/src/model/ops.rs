//! Inference CPU kernels for GELU (erf) and attention (with its softmax), written so the
//! compiler vectorises them.
//!
//! candle's CPU ops call libm's `erff`/`expf` one value at a time; in wasm those are scalar
//! software routines and took ~15 % of a MiniLM forward pass. Here exp is a range reduction
//! plus a polynomial, and erf is Abramowitz & Stegun 7.1.26 on top of it: plain arithmetic and
//! selects in loops over slices, which LLVM turns into SIMD (simd128 in wasm, SSE/AVX natively).
//! Accuracy: exp within 4e-7 relative, erf within 1e-6 absolute, well under the 1e-5 that the
//! parity tests allow. Training fuses its own differentiable ops from the same pieces (`train_ops`).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use crate::error::Result;

/// Below this exp() is 0 in f32 (and the masked attention scores land far below it).
const EXP_LOW: f32 = -87.33;
const EXP_HIGH: f32 = 88.3;

/// `x` rounded to the nearest integer (ties to even), for |x| < 2^22: adding and subtracting
/// 1.5·2^23 does it with plain adds, which vectorise, where `round` is a libm call in wasm and
/// on baseline x86-64.
#[inline(always)]
pub(super) fn round_small(x: f32) -> f32 {
    (x + ROUNDER) - ROUNDER
}

const ROUNDER: f32 = 12_582_912.0;

/// `round_small(x) as i32`, read from the bits of `x + 1.5·2^23` (whose low mantissa bits hold
/// the rounded integer): integer lanes that vectorise, where a float→int cast is scalar in wasm.
#[inline(always)]
pub(super) fn round_small_to_i32(x: f32) -> i32 {
    (x + ROUNDER).to_bits() as i32 - ROUNDER.to_bits() as i32
}

/// e^x for one value, in the form the loops below vectorise.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n·ln2 is exact for the first part.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Compare-and-select, not `clamp`: wasm's f32x4.min/max order NaNs and signed zeros, which
    // costs several x86 instructions each; this form is one `pmin`/`pmax` (same values here).
    let low = if x < EXP_LOW { EXP_LOW } else { x };
    let clamped = if low > EXP_HIGH { EXP_HIGH } else { low };
    let n = round_small(clamped * LOG2_E);
    let r = clamped - n * LN2_HI - n * LN2_LO;
    // Taylor terms to r⁶ over |r| ≤ ln2/2.
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n from n's bits: n + 127 + 2^23 is a float whose low mantissa bits are n + 127
    // (integer ops only, so it vectorises where a float→int cast would not).
    let biased = (n + (127.0 + 8_388_608.0)).to_bits().wrapping_sub(0x4b00_0000);
    let scale = f32::from_bits(biased << 23);
    if x < EXP_LOW {
        0.0
    } else {
        p * scale
    }
}

/// erf(x), Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7 in exact arithmetic, ≤ 1e-6 in f32).
#[inline(always)]
pub(super) fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * exp(-a * a);
    if x < 0.0 {
        -y
    } else {
        y
    }
}

pub(super) fn gelu_erf_slice(xs: &[f32], out: &mut [f32]) {
    for (y, &x) in out.iter_mut().zip(xs) {
        *y = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

pub(super) fn softmax_row(xs: &[f32], out: &mut [f32]) {
    let max = max_of(xs);
    for (y, &x) in out.iter_mut().zip(xs) {
        *y = exp(x - max);
    }
    let inverse = 1.0 / sum_of(out);
    for y in out.iter_mut() {
        *y *= inverse;
    }
}

/// The largest value (exact in any order, so every build agrees).
#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
fn max_of(xs: &[f32]) -> f32 {
    xs.iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// The largest value, four lanes at a time (LLVM keeps a compare-and-select loop scalar).
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
fn max_of(xs: &[f32]) -> f32 {
    use super::simd::*;
    let chunks = xs.chunks_exact(4);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    let mut m = splat_f(f32::NEG_INFINITY);
    for chunk in chunks {
        // SAFETY: `chunk` holds 4 f32.
        m = max_f(m, unsafe { load_f(chunk.as_ptr()) });
    }
    lanes_f(m).iter().fold(tail, |m, &x| if x > m { x } else { m })
}

/// The sum in eight interleaved partial sums (lane i takes values i, i + 8, …), added in lane
/// order, then the tail: a fixed order that vectorises (a plain running sum is a serial chain of
/// scalar adds, which was a fifth of attention at 512 tokens).
pub(super) fn sum_of(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (s, &x) in lanes.iter_mut().zip(chunk) {
            *s += x;
        }
    }
    lanes.iter().chain(tail).fold(0f32, |s, &x| s + x)
}

/// Scaled dot-product attention for inference: `q`, `k`, `v` are `[batch, seq, hidden]` (heads
/// side by side, as the projections produce them), `score_mask` is `[batch, 1, 1, seq]` (0 or
/// a large negative per key). Returns the context `[batch, seq, hidden]`, heads merged.
///
/// Besides skipping the head split/merge copies, this makes the quantized path reproducible: the
/// int8 matmuls round their inputs, so the ~1e-7 differences between native and wasm f32
/// matmuls (different SIMD kernels, FMA natively) flipped roundings and moved q8_0 outputs by
/// ~2e-3. Every step here runs in the same order on every target.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, score_mask: &Tensor, heads: usize) -> Result<Tensor> {
    let (batch, seq, hidden) = q.dims3()?;
    let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>());
    let (q, k, v) = (flat(q)?, flat(k)?, flat(v)?);
    let rows = Rows { batch, seq, hidden, stride: hidden };
    attention_rows(&q, &k, &v, rows, &flat(score_mask)?, heads)
}

/// [`attention`] on the query, key and value projections side by side, `[batch, seq, 3 · hidden]`
/// (one stacked projection).
pub fn attention_stacked(qkv: &Tensor, score_mask: &Tensor, heads: usize) -> Result<Tensor> {
    let (batch, seq, width) = qkv.dims3()?;
    let hidden = width / 3;
    let all = qkv.flatten_all()?.to_vec1::<f32>()?;
    let rows = Rows { batch, seq, hidden, stride: width };
    let mask = score_mask.flatten_all()?.to_vec1::<f32>()?;
    attention_rows(&all, &all[hidden..], &all[2 * hidden..], rows, &mask, heads)
}

/// The shape of attention's inputs: position `i` of sequence `b` starts at `(b·seq + i)·stride`.
#[derive(Clone, Copy)]
struct Rows {
    batch: usize,
    seq: usize,
    hidden: usize,
    stride: usize,
}

fn attention_rows(q: &[f32], k: &[f32], v: &[f32], shape: Rows, mask: &[f32], heads: usize) -> Result<Tensor> {
    use rayon::prelude::*;
    let Rows { batch, seq, hidden, .. } = shape;
    let head_dim = hidden / heads;
    // One task per (sequence, head): with several rayon threads (natively, or the threaded wasm
    // build) the heads run side by side. Each head's sums are the same whoever computes them.
    let tasks: Vec<(usize, usize)> = (0..batch).flat_map(|b| (0..heads).map(move |head| (b, head))).collect();
    let per_head: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(b, head)| attention_head(q, k, v, shape, &mask[b * seq..(b + 1) * seq], head_dim, b, head))
        .collect();
    let mut context = vec![0f32; batch * seq * hidden];
    for (&(b, head), out) in tasks.iter().zip(&per_head) {
        for (i, row) in out.chunks_exact(head_dim).enumerate() {
            context[(b * seq + i) * hidden + head * head_dim..][..head_dim].copy_from_slice(row);
        }
    }
    Ok(Tensor::from_vec(context, (batch, seq, hidden), &candle_core::Device::Cpu)?)
}

/// Sequence `b`'s context for one head, `[seq][head_dim]`.
#[allow(clippy::too_many_arguments)] // the head's coordinates in the stacked q, k, v
fn attention_head(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: Rows,
    mask: &[f32],
    head_dim: usize,
    b: usize,
    head: usize,
) -> Vec<f32> {
    let Rows { seq, stride, .. } = shape;
    let scale = (1.0 / (head_dim as f64).sqrt()) as f32;
    // Keys transposed in tiles of 8, [padded seq / 8][head_dim][8], so a score tile reads one
    // contiguous run (a [head_dim][padded seq] layout strode a whole row per step, out of L1 at
    // 512 tokens); values as [seq][padded head_dim]. Padding is zeros.
    let padded_seq = seq.div_ceil(TILE) * TILE;
    let padded_dim = head_dim.div_ceil(TILE) * TILE;
    let mut keys_t = vec![0f32; head_dim * padded_seq];
    let mut values = vec![0f32; seq * padded_dim];
    let mut context = vec![0f32; seq * head_dim];
    let mut scores = vec![0f32; QUERIES * padded_seq];
    // Rows past the last query keep older values: their sums are never stored.
    let mut probs = vec![0f32; QUERIES * seq];
    // Query rows transposed, [head_dim][QUERIES]; rows past the last query keep older values,
    // which only reach sums that are never stored.
    let mut query = [[0f32; QUERIES]; MAX_HEAD_DIM];
    let row = |i: usize| (b * seq + i) * stride + head * head_dim;
    for j in 0..seq {
        let tile = &mut keys_t[(j / TILE) * head_dim * TILE..];
        for (x, &value) in k[row(j)..][..head_dim].iter().enumerate() {
            tile[x * TILE + j % TILE] = value;
        }
        values[j * padded_dim..][..head_dim].copy_from_slice(&v[row(j)..][..head_dim]);
    }
    for first in (0..seq).step_by(QUERIES) {
        let rows = (seq - first).min(QUERIES);
        for r in 0..rows {
            for (x, &value) in q[row(first + r)..][..head_dim].iter().enumerate() {
                query[x][r] = value;
            }
        }
        for tile in (0..padded_seq).step_by(TILE) {
            let acc = score_tile(&query[..head_dim], &keys_t[tile * head_dim..], TILE);
            for (r, a) in acc.iter().enumerate() {
                scores[r * padded_seq + tile..][..TILE].copy_from_slice(a);
            }
        }
        for r in 0..rows {
            let raw = &mut scores[r * padded_seq..r * padded_seq + seq];
            for (s, m) in raw.iter_mut().zip(mask) {
                *s = *s * scale + m;
            }
            softmax_row(raw, &mut probs[r * seq..(r + 1) * seq]);
        }
        for d0 in (0..padded_dim).step_by(TILE) {
            let acc = weighted_sum_tile(&probs, seq, &values[d0..], padded_dim);
            let width = (head_dim - d0).min(TILE);
            for (r, a) in acc.iter().enumerate().take(rows) {
                context[(first + r) * head_dim + d0..][..width].copy_from_slice(&a[..width]);
            }
        }
    }
    context
}

/// Query rows per tile, and keys (scores) or head dimensions (context) per tile: 4 × 8
/// accumulators are 8 SIMD registers, which V8's x64 code keeps without spilling.
const QUERIES: usize = 4;
pub(super) const TILE: usize = 8;
/// Head widths up to this run in [`attention`] (BERT-large: 64); wider ones take candle's path.
pub const MAX_HEAD_DIM: usize = 256;

/// `acc[r][l] = Σ_x query[x][r] · keys_t[x·stride + l]`, summed in x order.
fn score_tile(query: &[[f32; QUERIES]], keys_t: &[f32], stride: usize) -> [[f32; TILE]; QUERIES] {
    // SAFETY: tile_sums asks for x < query.len() and r < QUERIES.
    tile_sums(query.len(), |x, r| unsafe { *query.get_unchecked(x).get_unchecked(r) }, keys_t, stride)
}

/// `acc[r][l] = Σ_j probs[r·seq + j] · values[j·stride + l]`, summed in j order.
fn weighted_sum_tile(probs: &[f32], seq: usize, values: &[f32], stride: usize) -> [[f32; TILE]; QUERIES] {
    assert!(probs.len() >= QUERIES * seq);
    // SAFETY: tile_sums asks for j < seq and r < QUERIES, inside probs (checked above; a checked
    // index was a compare and branch per term).
    tile_sums(seq, |j, r| unsafe { *probs.get_unchecked(r * seq + j) }, values, stride)
}

/// `acc[r][l] = Σ_n factor(n, r) · rows[n·stride + l]` for n in 0..count and r in 0..R, in n
/// order: one multiply and one add per term (no FMA), so every version below gives the same
/// bits. Attention's tiles (R = 4) and the packed f32 matmul (`packed/dense.rs`) run it.
#[allow(dead_code)] // the reference; x86-64 and wasm SIMD builds run their own versions
#[inline(always)]
fn tile_sums_portable<const R: usize>(
    count: usize,
    factor: impl Fn(usize, usize) -> f32,
    rows: &[f32],
    stride: usize,
) -> [[f32; TILE]; R] {
    let mut acc = [[0f32; TILE]; R];
    for n in 0..count {
        let row = &rows[n * stride..][..TILE];
        for (r, a) in acc.iter_mut().enumerate() {
            let f = factor(n, r);
            for (a, &x) in a.iter_mut().zip(row) {
                *a += f * x;
            }
        }
    }
    acc
}

#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
pub(super) use tile_sums_portable as tile_sums;

/// Four-lane SIMD (wasm simd128, or SSE2 on x86-64) with explicit registers: LLVM does not keep
/// the portable version's 32 accumulators in registers.
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
pub(super) fn tile_sums<const R: usize>(
    count: usize,
    factor: impl Fn(usize, usize) -> f32,
    rows: &[f32],
    stride: usize,
) -> [[f32; TILE]; R] {
    use super::simd::*;
    assert!(count == 0 || rows.len() >= (count - 1) * stride + TILE);
    let mut acc = [[zero_f(); 2]; R];
    for n in 0..count {
        // SAFETY: row n spans rows[n·stride .. n·stride + 8], inside the slice (assert above).
        let (lo, hi) = unsafe {
            let p = rows.as_ptr().add(n * stride);
            (load_f(p), load_f(p.add(4)))
        };
        for (r, a) in acc.iter_mut().enumerate() {
            let f = splat_f(factor(n, r));
            a[0] = add_f(a[0], mul_f(f, lo));
            a[1] = add_f(a[1], mul_f(f, hi));
        }
    }
    let mut out = [[0f32; TILE]; R];
    for (o, a) in out.iter_mut().zip(&acc) {
        // SAFETY: each output row holds 8 floats.
        unsafe {
            store_f(o.as_mut_ptr(), a[0]);
            store_f(o.as_mut_ptr().add(4), a[1]);
        }
    }
    out
}

/// Whether [`attention`] can run these tensors (CPU, f32).
pub fn runs_attention_here(q: &Tensor, head_dim: usize) -> bool {
    runs_here(q) && head_dim <= MAX_HEAD_DIM
}

/// GELU (erf) as a candle op on CPU f32 tensors.
#[derive(Debug, Clone, Copy)]
struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "vector-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(all), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("{}: needs contiguous f32", self.name())
        };
        use rayon::prelude::*;
        let xs = &all[start..end];
        let mut out = vec![0f32; xs.len()];
        // Element by element: chunks over rayon's threads give the same bits.
        out.par_chunks_mut(GELU_CHUNK).zip(xs.par_chunks(GELU_CHUNK)).for_each(|(out, xs)| gelu_erf_slice(xs, out));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

fn runs_here(xs: &Tensor) -> bool {
    xs.device().is_cpu() && xs.dtype() == DType::F32
}

/// GELU with the exact (erf) form, for inference. Off the CPU, candle's op.
/// Values per GELU task: big enough that a task outweighs handing it to a thread.
const GELU_CHUNK: usize = 16 * 1024;

pub fn gelu_erf(xs: &Tensor) -> Result<Tensor> {
    if runs_here(xs) {
        return Ok(xs.contiguous()?.apply_op1_no_bwd(&GeluErf)?);
    }
    Ok(xs.gelu_erf()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_small_to_i32_is_round_small_cast() {
        for x in [-127.5f32, -126.5, -63.49, -0.5, -0.0, 0.49, 0.5, 1.5, 2.5, 62.7, 127.0, 1e6 + 0.5, -4_194_303.0] {
            assert_eq!(round_small_to_i32(x), round_small(x) as i32, "{x}");
        }
        assert_eq!(round_small_to_i32(2.5), 2, "ties to even");
        assert_eq!(round_small_to_i32(-3.7), -4);
    }
    use candle_core::Device;

    #[test]
    fn exp_and_erf_match_libm() {
        let mut worst_exp = 0f64;
        let mut worst_erf = 0f64;
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.0045; // -90 .. 90
            let want = (x as f64).exp();
            if want > 1e-37 && want < 1e38 {
                worst_exp = worst_exp.max(((exp(x) as f64 - want) / want).abs());
            }
            let y = x / 30.0; // -3 .. 3: past that erf is 1 within f32's step
            worst_erf = worst_erf.max((erf(y) as f64 - taylor_erf(y as f64)).abs());
        }
        assert!(worst_exp < 4e-7, "exp relative error {worst_exp}");
        assert!(worst_erf < 1e-6, "erf absolute error {worst_erf}");
        assert!((erf(4.0) - 1.0).abs() < 1e-7 && (erf(-9.0) + 1.0).abs() < 1e-7);
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert!(exp(100.0).is_finite());
    }

    /// erf by its Taylor series, in f64 (accurate to ~1e-13 for |x| ≤ 3).
    fn taylor_erf(x: f64) -> f64 {
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn kernels_match_candle() {
        let dev = Device::Cpu;
        let xs = Tensor::arange(-600i64, 601, &dev).unwrap().to_dtype(DType::F32).unwrap() / 80.0;
        let xs = xs.unwrap().reshape((1201, 1)).unwrap();
        let ours = gelu_erf(&xs).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let theirs = xs.gelu_erf().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 2e-6, "gelu {a} vs {b}");
        }
        // Rows of odd width (tails of the 8-lane max), with a masked key.
        let scores =
            (Tensor::arange(0f32, 3.0 * 37.0, &dev).unwrap().reshape((3, 37)).unwrap().sin().unwrap() * 9.0).unwrap();
        let mask = Tensor::from_vec([0f32; 36].iter().copied().chain([-1e30]).collect::<Vec<_>>(), 37, &dev).unwrap();
        let scores = scores.broadcast_add(&mask).unwrap();
        let ours: Vec<Vec<f32>> = scores
            .to_vec2::<f32>()
            .unwrap()
            .iter()
            .map(|row| {
                let mut out = vec![0f32; row.len()];
                softmax_row(row, &mut out);
                out
            })
            .collect();
        let theirs = candle_nn::ops::softmax_last_dim(&scores).unwrap().to_vec2::<f32>().unwrap();
        for (ra, rb) in ours.iter().zip(&theirs) {
            assert_eq!(ra[36], 0.0);
            assert!((ra.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            for (a, b) in ra.iter().zip(rb) {
                assert!((a - b).abs() < 1e-6, "softmax {a} vs {b}");
            }
        }
    }

    /// Against candle's ops (split heads, QKᵀ·scale + mask, softmax, ·V): odd lengths (tails of
    /// the 4-query and 8-key tiles), head widths that are not multiples of 8, padded keys.
    #[test]
    fn attention_matches_candle() {
        let dev = Device::Cpu;
        for (batch, seq, hidden, heads) in [(2, 37, 24, 3), (1, 1, 64, 2), (3, 9, 36, 3), (1, 70, 64, 1)] {
            let make = |offset: f32| {
                let n = batch * seq * hidden;
                let xs: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37 + offset).sin() * 2.0).collect();
                Tensor::from_vec(xs, (batch, seq, hidden), &dev).unwrap()
            };
            let (q, k, v) = (make(0.0), make(1.0), make(2.0));
            // The last batch row has its last third of keys padded.
            let keep: Vec<f32> = (0..batch * seq)
                .map(|i| {
                    if i / seq == batch - 1 && i % seq >= seq - seq / 3 {
                        crate::model::bert::MASKED_SCORE
                    } else {
                        0.0
                    }
                })
                .collect();
            let mask = Tensor::from_vec(keep, (batch, 1, 1, seq), &dev).unwrap();
            let got = attention(&q, &k, &v, &mask, heads).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();

            let d = hidden / heads;
            let split =
                |t: &Tensor| t.reshape((batch, seq, heads, d)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
            let scores = (split(&q).matmul(&split(&k).t().unwrap()).unwrap() * (1.0 / (d as f64).sqrt())).unwrap();
            let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask).unwrap()).unwrap();
            let want =
                probs.matmul(&split(&v)).unwrap().transpose(1, 2).unwrap().reshape((batch, seq, hidden)).unwrap();
            let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "{batch}×{seq}×{hidden}/{heads}: max difference {worst}");
            // The stacked form reads the same rows: the same bits.
            let qkv = Tensor::cat(&[&q, &k, &v], 2).unwrap();
            let stacked =
                attention_stacked(&qkv, &mask, heads).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(stacked, got, "{batch}×{seq}×{hidden}/{heads}: stacked");
            // Heads split over threads (as in the threaded wasm build): the same bits.
            for threads in [2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let threaded = pool.install(|| attention(&q, &k, &v, &mask, heads).unwrap());
                assert_eq!(threaded.flatten_all().unwrap().to_vec1::<f32>().unwrap(), got, "{threads} threads");
            }
        }
    }

    /// The SIMD tile (wasm or SSE2) and the portable reference give the same bits.
    #[test]
    fn tile_sums_match_the_portable_reference_bitwise() {
        let rows: Vec<f32> = (0..37 * 8 + 5).map(|i| (i as f32 * 0.731).sin() * 3.0).collect();
        let factor = |n: usize, r: usize| ((n * 7 + r) as f32 * 0.377).cos();
        let want = tile_sums_portable::<4>(37, factor, &rows, 8);
        let got = tile_sums::<4>(37, factor, &rows, 8);
        assert_eq!(want, got);
        // Fewer rows: the same sums as the first rows of four.
        let three = tile_sums::<3>(37, factor, &rows, 8);
        assert_eq!(three, tile_sums_portable::<3>(37, factor, &rows, 8));
        assert_eq!(three[..], want[..3]);
    }
}
