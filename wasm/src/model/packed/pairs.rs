//! The i16-pair layout: every wasm SIMD build (`i32x4.dot_i16x8_s`) and native x86-64 (SSE2
//! `pmaddwd`, AVX2 `vpmaddwd`). Activations are 8-bit (scale = max|x| / 127).
//!
//! Within a panel, for each pair of input positions (2j, 2j+1), the [`PANEL`] rows' two values
//! sit side by side as i16: `[w0[2j], w0[2j+1], w1[2j], w1[2j+1], …]`, so one activation pair
//! splatted across a vector multiplies four output rows at once.

use candle_core::quantized::GgmlDType;

use super::{max_abs, quantize_block, BlockLayout, Layout, Tile, BLOCK, PANEL};

pub struct Pairs;

pub struct Weight {
    /// `panels × (in_dim / 2) × PANEL × 2` values.
    values: Vec<i16>,
    /// `panels × (in_dim / BLOCK) × PANEL` block scales.
    scales: Vec<f32>,
}

/// Activations `[rows, in]`: i16 values (the kernel's operand width), one scale per block.
pub struct Rows {
    values: Vec<i16>,
    scales: Vec<f32>,
}

impl BlockLayout for Pairs {
    fn pack(_: GgmlDType, out_dim: usize, in_dim: usize, values: &[i8], scales: &[f32]) -> Weight {
        let blocks = in_dim / BLOCK;
        let panels = out_dim.div_ceil(PANEL);
        let mut packed = vec![0i16; panels * in_dim * PANEL];
        let mut packed_scales = vec![0f32; panels * blocks * PANEL];
        for row in 0..out_dim {
            let (panel, lane) = (row / PANEL, row % PANEL);
            let base = panel * in_dim * PANEL;
            for pair in 0..in_dim / 2 {
                let at = base + (pair * PANEL + lane) * 2;
                packed[at] = values[row * in_dim + 2 * pair] as i16;
                packed[at + 1] = values[row * in_dim + 2 * pair + 1] as i16;
            }
            for b in 0..blocks {
                packed_scales[(panel * blocks + b) * PANEL + lane] = scales[row * blocks + b];
            }
        }
        Weight { values: packed, scales: packed_scales }
    }
}

impl Layout for Pairs {
    const WEIGHT_BYTES: usize = 2;
    type Weight = Weight;
    type Rows<'a> = Rows;

    fn prepare(_: &Weight, xs: &[f32]) -> Rows {
        let mut values = vec![0i16; xs.len()];
        let mut scales = Vec::with_capacity(xs.len() / BLOCK);
        for (block, out) in xs.chunks_exact(BLOCK).zip(values.chunks_exact_mut(BLOCK)) {
            let scale = max_abs(block) / 127.0;
            let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            // |x · inverse| ≤ 127.
            let mut q = [0i32; BLOCK];
            quantize_block(block, inverse, &mut q);
            for (c, &q) in out.iter_mut().zip(&q) {
                *c = q as i16;
            }
            scales.push(scale);
        }
        Rows { values, scales }
    }

    fn panel(w: &Weight, in_dim: usize, panel: usize, x: &Rows, first: usize, take: usize, tile: &mut Tile) {
        let blocks = in_dim / BLOCK;
        let wv = &w.values[panel * in_dim * PANEL..(panel + 1) * in_dim * PANEL];
        let ws = &w.scales[panel * blocks * PANEL..(panel + 1) * blocks * PANEL];
        let xv = &x.values[first * in_dim..(first + take) * in_dim];
        let xs = &x.scales[first * blocks..(first + take) * blocks];
        match take {
            4 => kernel::<4>(xv, xs, wv, ws, blocks, tile),
            3 => kernel::<3>(xv, xs, wv, ws, blocks, tile),
            2 => kernel::<2>(xv, xs, wv, ws, blocks, tile),
            _ => kernel::<1>(xv, xs, wv, ws, blocks, tile),
        }
    }

    #[cfg(test)]
    fn activation(x: &Rows, i: usize) -> f32 {
        x.values[i] as f32 * x.scales[i / BLOCK]
    }
}

/// `R` activation rows × one panel: `acc[r][c] += Σ_blocks (x_scale · w_scale) · Σ_block x·w`.
/// The portable reference; the SIMD versions below (wasm simd128, x86-64 SSE2) compute the same
/// numbers in the same order, so all three give the same bits.
#[allow(dead_code)] // the reference; x86-64 and wasm SIMD builds run their own versions
fn kernel_portable<const R: usize>(xv: &[i16], xs: &[f32], wv: &[i16], ws: &[f32], blocks: usize, acc: &mut Tile) {
    let in_dim = blocks * BLOCK;
    for b in 0..blocks {
        let mut sums = [[0i32; PANEL]; R];
        for pair in b * BLOCK / 2..(b + 1) * BLOCK / 2 {
            let w = &wv[pair * PANEL * 2..(pair + 1) * PANEL * 2];
            for (r, sum) in sums.iter_mut().enumerate() {
                let (x0, x1) = (xv[r * in_dim + 2 * pair] as i32, xv[r * in_dim + 2 * pair + 1] as i32);
                for (c, s) in sum.iter_mut().enumerate() {
                    // |x|, |w| ≤ 127: no sum can overflow; wrapping ops keep overflow checks out of the loop.
                    *s = s.wrapping_add(
                        x0.wrapping_mul(w[2 * c] as i32).wrapping_add(x1.wrapping_mul(w[2 * c + 1] as i32)),
                    );
                }
            }
        }
        let w_scales = &ws[b * PANEL..(b + 1) * PANEL];
        for r in 0..R {
            let x_scale = xs[r * blocks + b];
            for c in 0..PANEL {
                acc[r][c] += (x_scale * w_scales[c]) * sums[r][c] as f32;
            }
        }
    }
}

#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
use kernel_portable as kernel;

/// wasm simd128: the 4-lane kernel.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use kernel_lanes4 as kernel;

/// Four i32/f32 lanes (wasm simd128, or SSE2 on x86-64): per weight pair, two panel halves
/// times the splatted activation pair (`i32x4.dot_i16x8_s` = SSE2 `pmaddwd`), summed per block,
/// then scaled into f32 accumulators. Same sums, same order as [`kernel_portable`].
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
#[allow(clippy::needless_range_loop)] // r indexes three arrays in step
fn kernel_lanes4<const R: usize>(xv: &[i16], xs: &[f32], wv: &[i16], ws: &[f32], blocks: usize, acc: &mut Tile) {
    use crate::model::simd::*;
    let in_dim = blocks * BLOCK;
    assert!(xv.len() >= R * in_dim && xs.len() >= R * blocks);
    assert!(wv.len() >= in_dim * PANEL && ws.len() >= blocks * PANEL);
    let mut out = [[zero_f(); 2]; R];
    // SAFETY: every load below stays inside the slices checked by the asserts above: x row r,
    // pair p reads xv[r·in_dim + 2p ..+2]; weight pair p reads wv[16p ..+16]; scales ws[8b ..+8].
    unsafe {
        for b in 0..blocks {
            let mut sums = [[zero_i(); 2]; R];
            for pair in b * BLOCK / 2..(b + 1) * BLOCK / 2 {
                let w = wv.as_ptr().add(pair * PANEL * 2);
                let (w0, w1) = (load_i16x8(w), load_i16x8(w.add(8)));
                for r in 0..R {
                    let x = splat_pair(xv.as_ptr().add(r * in_dim + 2 * pair));
                    sums[r][0] = dot_add(sums[r][0], x, w0);
                    sums[r][1] = dot_add(sums[r][1], x, w1);
                }
            }
            let s = ws.as_ptr().add(b * PANEL);
            let (s0, s1) = (load_f(s), load_f(s.add(4)));
            for r in 0..R {
                let x_scale = splat_f(*xs.get_unchecked(r * blocks + b));
                out[r][0] = add_f(out[r][0], mul_f(mul_f(x_scale, s0), to_f32(sums[r][0])));
                out[r][1] = add_f(out[r][1], mul_f(mul_f(x_scale, s1), to_f32(sums[r][1])));
            }
        }
        for r in 0..R {
            store_f(acc[r].as_mut_ptr(), out[r][0]);
            store_f(acc[r].as_mut_ptr().add(4), out[r][1]);
        }
    }
}

/// x86-64: AVX2 where the CPU has it (a whole panel per register), else SSE2 (baseline).
#[cfg(target_arch = "x86_64")]
fn kernel<const R: usize>(xv: &[i16], xs: &[f32], wv: &[i16], ws: &[f32], blocks: usize, acc: &mut Tile) {
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { kernel_avx2::<R>(xv, xs, wv, ws, blocks, acc) }
    } else {
        kernel_lanes4::<R>(xv, xs, wv, ws, blocks, acc)
    }
}

/// `kernel_lanes4` with 8 lanes: `vpmaddwd` over a whole panel; same sums, same order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::needless_range_loop)] // r indexes three arrays in step
unsafe fn kernel_avx2<const R: usize>(xv: &[i16], xs: &[f32], wv: &[i16], ws: &[f32], blocks: usize, acc: &mut Tile) {
    use core::arch::x86_64::*;
    let in_dim = blocks * BLOCK;
    assert!(xv.len() >= R * in_dim && xs.len() >= R * blocks);
    assert!(wv.len() >= in_dim * PANEL && ws.len() >= blocks * PANEL);
    // SAFETY: loads stay inside the slices checked above, as in the wasm version.
    unsafe {
        let mut out = [_mm256_setzero_ps(); R];
        for b in 0..blocks {
            let mut sums = [_mm256_setzero_si256(); R];
            for pair in b * BLOCK / 2..(b + 1) * BLOCK / 2 {
                let w = _mm256_loadu_si256(wv.as_ptr().add(pair * PANEL * 2) as *const __m256i);
                for r in 0..R {
                    let x = _mm256_set1_epi32((xv.as_ptr().add(r * in_dim + 2 * pair) as *const i32).read_unaligned());
                    sums[r] = _mm256_add_epi32(sums[r], _mm256_madd_epi16(x, w));
                }
            }
            let scales = _mm256_loadu_ps(ws.as_ptr().add(b * PANEL));
            for r in 0..R {
                let x_scale = _mm256_set1_ps(*xs.get_unchecked(r * blocks + b));
                out[r] =
                    _mm256_add_ps(out[r], _mm256_mul_ps(_mm256_mul_ps(x_scale, scales), _mm256_cvtepi32_ps(sums[r])));
            }
        }
        for r in 0..R {
            _mm256_storeu_ps(acc[r].as_mut_ptr(), out[r]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::lcg;
    use super::super::ROWS;
    use super::*;

    /// The SIMD kernel of this build and the portable reference give the same bits.
    #[test]
    fn simd_kernel_matches_the_portable_reference_bitwise() {
        let mut seed = 11;
        let blocks = 3;
        let in_dim = blocks * BLOCK;
        let xv: Vec<i16> = (0..ROWS * in_dim).map(|_| (lcg(&mut seed) * 127.0) as i16).collect();
        let xs: Vec<f32> = (0..ROWS * blocks).map(|_| lcg(&mut seed).abs() * 0.1).collect();
        let wv: Vec<i16> = (0..in_dim * PANEL).map(|_| (lcg(&mut seed) * 127.0) as i16).collect();
        let ws: Vec<f32> = (0..blocks * PANEL).map(|_| lcg(&mut seed).abs() * 0.01).collect();
        let (mut want, mut got) = ([[0f32; PANEL]; ROWS], [[0f32; PANEL]; ROWS]);
        kernel_portable::<4>(&xv, &xs, &wv, &ws, blocks, &mut want);
        kernel::<4>(&xv, &xs, &wv, &ws, blocks, &mut got);
        assert_eq!(want, got);
        let (mut want, mut got) = ([[0f32; PANEL]; ROWS], [[0f32; PANEL]; ROWS]);
        kernel_portable::<3>(&xv, &xs, &wv, &ws, blocks, &mut want);
        kernel::<3>(&xv, &xs, &wv, &ws, blocks, &mut got);
        assert_eq!(want, got);
        assert!(want[0].iter().any(|&v| v != 0.0));
        #[cfg(target_arch = "x86_64")]
        {
            let mut sse = [[0f32; PANEL]; ROWS];
            kernel_lanes4::<3>(&xv, &xs, &wv, &ws, blocks, &mut sse);
            assert_eq!(want, sse);
        }
    }
}
