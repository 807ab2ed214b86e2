//! f32 weights (f32 and f16 bundles) in the browser: repacked once at load into panels of
//! [`PANEL`] output rows, `[in][PANEL]` each, so that a pass streams one panel contiguously while
//! up to four activation rows stay in registers. A general GEMM packs its operands on every call:
//! a quarter of a short note's time in wasm, before this layout; with it f32 runs ~1.4× faster
//! in wasm. Natively candle's gemm (FMA, wider registers) stays faster, so only wasm builds use it
//! (`Weights::dense_operand`); the native tests run its portable and SSE2 versions.
//!
//! Each output is `Σ_k w·x` in k order, one multiply and one add per term (no FMA), in every
//! version: the same bits.

use super::{Layout, Tile, PANEL};

pub struct Dense;

pub struct Weight {
    /// `panels × in_dim × PANEL` values; rows past `out_dim` in the last panel are zeros.
    values: Vec<f32>,
}

impl Dense {
    /// `values` are `[out, in]` row-major.
    pub fn pack(out_dim: usize, in_dim: usize, values: &[f32]) -> Weight {
        let panels = out_dim.div_ceil(PANEL);
        let mut packed = vec![0f32; panels * in_dim * PANEL];
        for (row, weights) in values.chunks_exact(in_dim).enumerate().take(out_dim) {
            let (panel, lane) = (row / PANEL, row % PANEL);
            let base = panel * in_dim * PANEL + lane;
            for (k, &w) in weights.iter().enumerate() {
                packed[base + k * PANEL] = w;
            }
        }
        Weight { values: packed }
    }
}

impl Layout for Dense {
    type Weight = Weight;
    type Rows<'a> = &'a [f32];

    fn prepare<'a>(_: &Weight, xs: &'a [f32]) -> &'a [f32] {
        xs
    }

    fn panel(w: &Weight, in_dim: usize, panel: usize, x: &&[f32], first: usize, take: usize, tile: &mut Tile) {
        let wv = &w.values[panel * in_dim * PANEL..(panel + 1) * in_dim * PANEL];
        let xv = &x[first * in_dim..(first + take) * in_dim];
        match take {
            4 => kernel::<4>(xv, wv, in_dim, tile),
            3 => kernel::<3>(xv, wv, in_dim, tile),
            2 => kernel::<2>(xv, wv, in_dim, tile),
            _ => kernel::<1>(xv, wv, in_dim, tile),
        }
    }

    #[cfg(test)]
    fn activation(x: &&[f32], i: usize) -> f32 {
        x[i]
    }
}

/// `R` rows × one panel: `acc[r][c] = Σ_k w[k][c] · x[r][k]`, in k order. The portable
/// reference; the SIMD versions compute the same numbers in the same order.
#[allow(dead_code)] // the reference; x86-64 and wasm SIMD builds run their own versions
fn kernel_portable<const R: usize>(xv: &[f32], wv: &[f32], in_dim: usize, acc: &mut Tile) {
    let mut sums = [[0f32; PANEL]; R];
    for k in 0..in_dim {
        let w = &wv[k * PANEL..(k + 1) * PANEL];
        for (r, sum) in sums.iter_mut().enumerate() {
            let x = xv[r * in_dim + k];
            for (s, &w) in sum.iter_mut().zip(w) {
                *s += w * x;
            }
        }
    }
    acc[..R].copy_from_slice(&sums);
}

#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
use kernel_portable as kernel;

#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
use kernel_lanes4 as kernel;

/// Four f32 lanes (wasm simd128, or SSE2 on x86-64): per k, the panel's two halves times the
/// splatted activation of each row.
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
#[allow(clippy::needless_range_loop)] // r indexes two arrays in step
fn kernel_lanes4<const R: usize>(xv: &[f32], wv: &[f32], in_dim: usize, acc: &mut Tile) {
    use crate::model::simd::*;
    assert!(xv.len() >= R * in_dim && wv.len() >= in_dim * PANEL);
    let mut sums = [[zero_f(); 2]; R];
    // SAFETY: weight step k reads wv[8k ..+8], row r reads xv[r·in_dim + k]: inside the slices
    // checked above.
    unsafe {
        for k in 0..in_dim {
            let w = wv.as_ptr().add(k * PANEL);
            let (w0, w1) = (load_f(w), load_f(w.add(4)));
            for r in 0..R {
                let x = splat_f(*xv.get_unchecked(r * in_dim + k));
                sums[r][0] = add_f(sums[r][0], mul_f(w0, x));
                sums[r][1] = add_f(sums[r][1], mul_f(w1, x));
            }
        }
        for r in 0..R {
            store_f(acc[r].as_mut_ptr(), sums[r][0]);
            store_f(acc[r].as_mut_ptr().add(4), sums[r][1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::lcg;
    use super::super::{PackedLinear, ROWS};
    use super::*;
    use candle_core::{Device, Tensor};

    /// Odd shapes (tails of ROWS and PANEL) against a plain f64 product.
    #[test]
    #[allow(clippy::needless_range_loop)] // index arithmetic mirrors the math
    fn matches_a_plain_product_on_odd_shapes() {
        let mut seed = 13;
        for (rows, out_dim, in_dim) in [(1, 1, 1), (7, 13, 37), (5, 8, 64), (130, 70, 96)] {
            let w: Vec<f32> = (0..out_dim * in_dim).map(|_| lcg(&mut seed)).collect();
            let x: Vec<f32> = (0..rows * in_dim).map(|_| lcg(&mut seed) * 3.0).collect();
            let bias: Vec<f32> = (0..out_dim).map(|_| lcg(&mut seed)).collect();
            let wt = Tensor::from_vec(w.clone(), (out_dim, in_dim), &Device::Cpu).unwrap();
            let linear = PackedLinear::from_f32("w", &wt, Some(bias.clone())).unwrap();
            let xt = Tensor::from_vec(x.clone(), (rows, in_dim), &Device::Cpu).unwrap();
            let got = linear.forward(&xt).unwrap().to_vec2::<f32>().unwrap();
            for r in 0..rows {
                for o in 0..out_dim {
                    let want: f64 = bias[o] as f64
                        + (0..in_dim).map(|k| x[r * in_dim + k] as f64 * w[o * in_dim + k] as f64).sum::<f64>();
                    let diff = (got[r][o] as f64 - want).abs();
                    assert!(
                        diff < 1e-5 * (1.0 + want.abs()),
                        "{rows}×{out_dim}×{in_dim} at ({r},{o}): {} vs {want}",
                        got[r][o]
                    );
                }
            }
        }
    }

    /// The SIMD kernels of this build and the portable reference give the same bits.
    #[test]
    fn simd_kernel_matches_the_portable_reference_bitwise() {
        let mut seed = 17;
        let in_dim = 45;
        let xv: Vec<f32> = (0..ROWS * in_dim).map(|_| lcg(&mut seed)).collect();
        let wv: Vec<f32> = (0..in_dim * PANEL).map(|_| lcg(&mut seed)).collect();
        let (mut want, mut got) = ([[0f32; PANEL]; ROWS], [[0f32; PANEL]; ROWS]);
        kernel_portable::<4>(&xv, &wv, in_dim, &mut want);
        kernel::<4>(&xv, &wv, in_dim, &mut got);
        assert_eq!(want, got);
        let (mut want, mut got) = ([[0f32; PANEL]; ROWS], [[0f32; PANEL]; ROWS]);
        kernel_portable::<3>(&xv, &wv, in_dim, &mut want);
        kernel::<3>(&xv, &wv, in_dim, &mut got);
        assert_eq!(want, got);
        assert!(want[0].iter().any(|&v| v != 0.0));
    }
}
