//! f32 weights (f32 and f16 bundles) in the browser: repacked once at load into panels of
//! [`PANEL`] output rows, `[in][PANEL]` each, so that a pass streams one panel contiguously while
//! up to four activation rows stay in registers. A general GEMM packs its operands on every call:
//! a quarter of a short note's time in wasm, before this layout; with it f32 runs ~1.4× faster
//! in wasm. Natively candle's gemm (FMA, wider registers) stays faster, so only wasm builds use it
//! (`Weights::dense_operand`); native tests still run it.
//!
//! The kernel is attention's f32 tile (`ops::tile_sums`): each output is `Σ_k x·w` in k order,
//! one multiply and one add per term (no FMA), the same bits in every build.

use super::{Layout, Tile, PANEL};
use crate::model::ops::{tile_sums, TILE};

// The tile's width is the attention's.
const _: () = assert!(TILE == PANEL);

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
    const WEIGHT_BYTES: usize = 4;
    type Weight = Weight;
    type Rows<'a> = &'a [f32];

    fn prepare<'a>(_: &Weight, xs: &'a [f32]) -> &'a [f32] {
        xs
    }

    // Inlined (with the kernel) into `run_rows`' loops: V8 unrolls an inner loop only when it is
    // small for its nesting depth, and as a function of its own the tile's loop was not unrolled
    // (24.6 vs 30.4 G multiply-adds/s in wasm on the same data).
    #[inline(always)]
    fn panel(w: &Weight, in_dim: usize, panel: usize, x: &&[f32], first: usize, take: usize, tile: &mut Tile) {
        let wv = &w.values[panel * in_dim * PANEL..(panel + 1) * in_dim * PANEL];
        let xv = &x[first * in_dim..(first + take) * in_dim];
        match take {
            4 => rows_times_panel::<4>(xv, wv, in_dim, tile),
            3 => rows_times_panel::<3>(xv, wv, in_dim, tile),
            2 => rows_times_panel::<2>(xv, wv, in_dim, tile),
            _ => rows_times_panel::<1>(xv, wv, in_dim, tile),
        }
    }

    #[cfg(test)]
    fn activation(x: &&[f32], i: usize) -> f32 {
        x[i]
    }
}

/// `tile[r][c] = Σ_k x[r][k] · w[k][c]` for the `R` rows of `xv`, in k order: the attention's
/// f32 tile.
#[inline(always)]
fn rows_times_panel<const R: usize>(xv: &[f32], wv: &[f32], in_dim: usize, tile: &mut Tile) {
    assert!(xv.len() >= R * in_dim);
    // SAFETY: tile_sums asks for k < in_dim and r < R, so the index stays below R · in_dim,
    // inside xv (checked above; a checked index cost a branch per term).
    let sums = tile_sums::<R>(in_dim, |k, r| unsafe { *xv.get_unchecked(r * in_dim + k) }, wv, PANEL);
    tile[..R].copy_from_slice(&sums);
}

#[cfg(test)]
mod tests {
    use super::super::tests::lcg;
    use super::super::PackedLinear;
    use candle_core::{Device, Tensor};

    /// Odd shapes (tails of ROWS, PANEL and panel groups) against a plain f64 product.
    #[test]
    #[allow(clippy::needless_range_loop)] // index arithmetic mirrors the math
    fn matches_a_plain_product_on_odd_shapes() {
        let mut seed = 13;
        // 9×70×1024: two panel groups (see `run_rows`).
        for (rows, out_dim, in_dim) in [(1, 1, 1), (7, 13, 37), (5, 8, 64), (130, 70, 96), (9, 70, 1024)] {
            let w: Vec<f32> = (0..out_dim * in_dim).map(|_| lcg(&mut seed)).collect();
            let x: Vec<f32> = (0..rows * in_dim).map(|_| lcg(&mut seed) * 3.0).collect();
            let bias: Vec<f32> = (0..out_dim).map(|_| lcg(&mut seed)).collect();
            let wt = Tensor::from_vec(w.clone(), (out_dim, in_dim), &Device::Cpu).unwrap();
            let linear = PackedLinear::from_f32("w", &wt, Some(bias.clone())).unwrap();
            let xt = Tensor::from_vec(x.clone(), (rows, in_dim), &Device::Cpu).unwrap();
            let got = linear.forward(&xt).unwrap().to_vec2::<f32>().unwrap();
            for r in 0..rows {
                for o in 0..out_dim {
                    let terms = (0..in_dim).map(|k| x[r * in_dim + k] as f64 * w[o * in_dim + k] as f64);
                    let want: f64 = bias[o] as f64 + terms.clone().sum::<f64>();
                    // f32 rounding grows with the terms' magnitudes, not with their sum.
                    let scale: f64 = 1.0 + bias[o].abs() as f64 + terms.map(f64::abs).sum::<f64>();
                    let diff = (got[r][o] as f64 - want).abs();
                    assert!(diff < 1e-6 * scale, "{rows}×{out_dim}×{in_dim} at ({r},{o}): {} vs {want}", got[r][o]);
                }
            }
        }
    }
}
