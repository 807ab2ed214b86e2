//! The i8-quad layout of the `relaxed-simd` browser build: `i32x4.relaxed_dot_i8x16_i7x16_add_s`
//! multiplies sixteen signed bytes by sixteen 7-bit ones and adds each group of four into an i32
//! lane: sixteen multiply-adds per instruction (one `vpdpbusd` where the CPU has VNNI), twice
//! `i32x4.dot_i16x8_s`'s eight.
//!
//! Within a panel, for each quad of input positions (4j .. 4j+3), the [`PANEL`] rows' four codes
//! sit side by side: `[w0[4j..4j+4], w1[4j..4j+4], …]`; one activation quad splatted across a
//! vector meets four output rows.
//!
//! The instruction's second operand is defined only on 0..=127, so one side is stored with an
//! offset and the offset's share of each block sum is subtracted exactly:
//! - q8_0: weights (−127..=127) are the signed operand; activations are quantized to 7 bits
//!   (scale = max|x| / 63) and stored +64, as 1..=127. The block sum loses `64 · Σ w`,
//!   precomputed per weight row and block.
//! - q4_0: weights are the 7-bit operand as their stored nibbles (value + 8, 0..=15);
//!   activations keep 8 bits, signed. The block sum loses `8 · Σ x`, computed with the
//!   activations. These sums equal the pair layout's, so q4_0 outputs are the same bits.

use candle_core::quantized::GgmlDType;

use super::{max_abs, quantize_block, BlockLayout, Layout, Tile, BLOCK, PANEL};

pub struct Quads;

/// Input positions per quad.
const QUAD: usize = 4;
/// The activations' offset into the 7-bit range (q8_0).
const ACTIVATION_OFFSET: i32 = 64;
/// q4_0's stored offset.
const NIBBLE_OFFSET: i32 = 8;

pub struct Weight {
    /// q8_0: weights are the signed operand; q4_0: the 7-bit one.
    signed_weights: bool,
    /// `panels × (in_dim / 4) × PANEL × 4` codes.
    codes: Vec<u8>,
    /// `panels × (in_dim / BLOCK) × PANEL` block scales.
    scales: Vec<f32>,
    /// `panels × (in_dim / BLOCK) × PANEL`: what the activations' offset adds to each block sum
    /// (q8_0; zero for q4_0).
    offsets: Vec<i32>,
}

/// Activations `[rows, in]`: byte codes, one scale and one offset term per block.
pub struct Rows {
    codes: Vec<u8>,
    scales: Vec<f32>,
    /// What the weights' nibble offset adds to each block sum (q4_0; zero for q8_0).
    offsets: Vec<i32>,
    /// q8_0's 7-bit codes (stored +64), or q4_0's signed 8-bit ones (read by tests).
    #[cfg_attr(not(test), allow(dead_code))]
    seven_bit: bool,
}

impl BlockLayout for Quads {
    fn pack(dtype: GgmlDType, out_dim: usize, in_dim: usize, values: &[i8], scales: &[f32]) -> Weight {
        let signed_weights = dtype != GgmlDType::Q4_0;
        let blocks = in_dim / BLOCK;
        let quads = in_dim / QUAD;
        let panels = out_dim.div_ceil(PANEL);
        let mut codes = vec![0u8; panels * in_dim * PANEL];
        let mut packed_scales = vec![0f32; panels * blocks * PANEL];
        let mut offsets = vec![0i32; panels * blocks * PANEL];
        for row in 0..out_dim {
            let (panel, lane) = (row / PANEL, row % PANEL);
            let values = &values[row * in_dim..(row + 1) * in_dim];
            for quad in 0..quads {
                let at = ((panel * quads + quad) * PANEL + lane) * QUAD;
                for j in 0..QUAD {
                    let v = values[quad * QUAD + j];
                    codes[at + j] = if signed_weights { v as u8 } else { (v as i32 + NIBBLE_OFFSET) as u8 };
                }
            }
            for b in 0..blocks {
                let at = (panel * blocks + b) * PANEL + lane;
                packed_scales[at] = scales[row * blocks + b];
                if signed_weights {
                    let sum: i32 = values[b * BLOCK..(b + 1) * BLOCK].iter().map(|&v| v as i32).sum();
                    offsets[at] = ACTIVATION_OFFSET * sum;
                }
            }
        }
        Weight { signed_weights, codes, scales: packed_scales, offsets }
    }
}

impl Layout for Quads {
    const WEIGHT_BYTES: usize = 1;
    type Weight = Weight;
    type Rows<'a> = Rows;

    fn prepare(w: &Weight, xs: &[f32]) -> Rows {
        let seven_bit = w.signed_weights;
        let levels = if seven_bit { 63.0 } else { 127.0 };
        let mut codes = vec![0u8; xs.len()];
        let mut scales = Vec::with_capacity(xs.len() / BLOCK);
        let mut offsets = Vec::with_capacity(xs.len() / BLOCK);
        for (block, out) in xs.chunks_exact(BLOCK).zip(codes.chunks_exact_mut(BLOCK)) {
            let scale = max_abs(block) / levels;
            let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            // |x · inverse| ≤ levels.
            let mut q = [0i32; BLOCK];
            let sum = quantize_block(block, inverse, &mut q);
            let offset = if seven_bit { ACTIVATION_OFFSET } else { 0 };
            for (c, &q) in out.iter_mut().zip(&q) {
                *c = (q + offset) as u8;
            }
            scales.push(scale);
            offsets.push(if seven_bit { 0 } else { NIBBLE_OFFSET * sum });
        }
        Rows { codes, scales, offsets, seven_bit }
    }

    fn panel(w: &Weight, in_dim: usize, panel: usize, x: &Rows, first: usize, take: usize, tile: &mut Tile) {
        let blocks = in_dim / BLOCK;
        let operands = Operands {
            wc: &w.codes[panel * in_dim * PANEL..(panel + 1) * in_dim * PANEL],
            ws: &w.scales[panel * blocks * PANEL..(panel + 1) * blocks * PANEL],
            wo: &w.offsets[panel * blocks * PANEL..(panel + 1) * blocks * PANEL],
            xc: &x.codes[first * in_dim..(first + take) * in_dim],
            xs: &x.scales[first * blocks..(first + take) * blocks],
            xo: &x.offsets[first * blocks..(first + take) * blocks],
            blocks,
        };
        match (take, w.signed_weights) {
            (4, true) => kernel::<4, true>(&operands, tile),
            (3, true) => kernel::<3, true>(&operands, tile),
            (2, true) => kernel::<2, true>(&operands, tile),
            (_, true) => kernel::<1, true>(&operands, tile),
            (4, false) => kernel::<4, false>(&operands, tile),
            (3, false) => kernel::<3, false>(&operands, tile),
            (2, false) => kernel::<2, false>(&operands, tile),
            (_, false) => kernel::<1, false>(&operands, tile),
        }
    }

    #[cfg(test)]
    fn activation(x: &Rows, i: usize) -> f32 {
        let q = if x.seven_bit { x.codes[i] as i32 - ACTIVATION_OFFSET } else { x.codes[i] as i8 as i32 };
        q as f32 * x.scales[i / BLOCK]
    }
}

/// One panel's weights and `R` rows' activations, as sliced for the kernels.
struct Operands<'a> {
    wc: &'a [u8],
    ws: &'a [f32],
    wo: &'a [i32],
    xc: &'a [u8],
    xs: &'a [f32],
    xo: &'a [i32],
    blocks: usize,
}

/// `R` rows × one panel: per block, both offset terms subtracted from `Σ w·x` over the codes, scaled
/// (x_scale · w_scale) into f32, block by block in order: the pair layout's steps.
/// `SIGNED_W`: weights are the signed operand (q8_0), else the activations are (q4_0).
/// The portable reference; the relaxed-SIMD kernel gives the same bits.
#[allow(dead_code)] // the reference; the relaxed-simd build runs its own version
fn kernel_portable<const R: usize, const SIGNED_W: bool>(o: &Operands, acc: &mut Tile) {
    let in_dim = o.blocks * BLOCK;
    let signed = |c: u8| c as i8 as i32;
    let unsigned = |c: u8| c as i32;
    for b in 0..o.blocks {
        // Each sum starts at minus both offset terms (one of them is zero).
        let mut sums = [[0i32; PANEL]; R];
        for (r, sum) in sums.iter_mut().enumerate() {
            for (c, s) in sum.iter_mut().enumerate() {
                *s = -o.wo[b * PANEL + c] - o.xo[r * o.blocks + b];
            }
        }
        for quad in b * BLOCK / QUAD..(b + 1) * BLOCK / QUAD {
            let w = &o.wc[quad * PANEL * QUAD..(quad + 1) * PANEL * QUAD];
            for (r, sum) in sums.iter_mut().enumerate() {
                let x = &o.xc[r * in_dim + quad * QUAD..][..QUAD];
                for (c, s) in sum.iter_mut().enumerate() {
                    for j in 0..QUAD {
                        let (wv, xv) = if SIGNED_W {
                            (signed(w[c * QUAD + j]), unsigned(x[j]))
                        } else {
                            (unsigned(w[c * QUAD + j]), signed(x[j]))
                        };
                        *s += wv * xv;
                    }
                }
            }
        }
        for (r, sum) in sums.iter().enumerate() {
            let x_scale = o.xs[r * o.blocks + b];
            for c in 0..PANEL {
                acc[r][c] += (x_scale * o.ws[b * PANEL + c]) * sum[c] as f32;
            }
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
use kernel_portable as kernel;

/// Per weight quad, two panel halves times the splatted activation quad, summed per block with
/// `i32x4.relaxed_dot_i8x16_i7x16_add_s` from minus the offsets, then scaled into f32 accumulators.
/// Same sums, same order as [`kernel_portable`]: its 7-bit operand stays within 0..=127, where
/// every lowering of the instruction gives the exact sum.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
#[allow(clippy::needless_range_loop)] // r indexes three arrays in step
fn kernel<const R: usize, const SIGNED_W: bool>(o: &Operands, acc: &mut Tile) {
    use core::arch::wasm32::*;
    let blocks = o.blocks;
    let in_dim = blocks * BLOCK;
    assert!(o.xc.len() >= R * in_dim && o.xs.len() >= R * blocks && o.xo.len() >= R * blocks);
    assert!(o.wc.len() >= in_dim * PANEL && o.ws.len() >= blocks * PANEL && o.wo.len() >= blocks * PANEL);
    let mut out = [[f32x4_splat(0.0); 2]; R];
    // SAFETY: every access below stays inside the slices checked by the asserts above: x row r,
    // quad q reads xc[r·in_dim + 4q ..+4]; weight quad q reads wc[32q ..+32]; block b reads
    // ws/wo[8b ..+8] and xs/xo[r·blocks + b].
    unsafe {
        for b in 0..blocks {
            // Each sum starts at minus the offset terms: for q8_0 the weights', for q4_0 the row's.
            let mut sums = [[i32x4_splat(0); 2]; R];
            if SIGNED_W {
                let wo = o.wo.as_ptr().add(b * PANEL);
                let (o0, o1) = (v128_load(wo as *const v128), v128_load(wo.add(4) as *const v128));
                sums = [[i32x4_neg(o0), i32x4_neg(o1)]; R];
            } else {
                for r in 0..R {
                    let x_offset = i32x4_splat(-*o.xo.get_unchecked(r * blocks + b));
                    sums[r] = [x_offset, x_offset];
                }
            }
            for quad in b * BLOCK / QUAD..(b + 1) * BLOCK / QUAD {
                let w = o.wc.as_ptr().add(quad * PANEL * QUAD);
                let (w0, w1) = (v128_load(w as *const v128), v128_load(w.add(16) as *const v128));
                for r in 0..R {
                    let x = v128_load32_splat(o.xc.as_ptr().add(r * in_dim + quad * QUAD) as *const u32);
                    if SIGNED_W {
                        sums[r][0] = i32x4_relaxed_dot_i8x16_i7x16_add(w0, x, sums[r][0]);
                        sums[r][1] = i32x4_relaxed_dot_i8x16_i7x16_add(w1, x, sums[r][1]);
                    } else {
                        sums[r][0] = i32x4_relaxed_dot_i8x16_i7x16_add(x, w0, sums[r][0]);
                        sums[r][1] = i32x4_relaxed_dot_i8x16_i7x16_add(x, w1, sums[r][1]);
                    }
                }
            }
            let s = o.ws.as_ptr().add(b * PANEL);
            let (s0, s1) = (v128_load(s as *const v128), v128_load(s.add(4) as *const v128));
            for r in 0..R {
                let x_scale = f32x4_splat(*o.xs.get_unchecked(r * blocks + b));
                out[r][0] = f32x4_add(out[r][0], f32x4_mul(f32x4_mul(x_scale, s0), f32x4_convert_i32x4(sums[r][0])));
                out[r][1] = f32x4_add(out[r][1], f32x4_mul(f32x4_mul(x_scale, s1), f32x4_convert_i32x4(sums[r][1])));
            }
        }
        for r in 0..R {
            v128_store(acc[r].as_mut_ptr() as *mut v128, out[r][0]);
            v128_store(acc[r].as_mut_ptr().add(4) as *mut v128, out[r][1]);
        }
    }
}
