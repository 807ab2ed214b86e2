//! Integer matmul for block-quantized weights (q8_0, q4_0) on the CPU: `y = x Wᵀ + b`.
//!
//! The activations are quantized per row in 32-value blocks, as the weights are (scale =
//! max|x| / 127), each block's 32-term dot product runs in exact integer arithmetic, and the
//! block sums are scaled (activation scale × weight scale) into f32 accumulators, block by block
//! in order. The integer sums are exact and the f32 steps run in the same order in every build,
//! so the portable code (native) and the wasm SIMD code (browser) give bit-identical outputs.
//!
//! Why: wasm SIMD has no f32 fused multiply-add, so an f32 matmul spends two instructions per four
//! multiply-adds; `i32x4.dot_i16x8_s` does eight in one. This is the int8 work onnxruntime-web
//! does for quantized models, with ggml's finer (per-block) scales for accuracy.
//!
//! Layout: weights are repacked at load into panels of [`PANEL`] output rows. Within a panel,
//! for each pair of input positions (2j, 2j+1), the [`PANEL`] rows' two values sit side by side
//! as i16: `[w0[2j], w0[2j+1], w1[2j], w1[2j+1], …]`, so one activation pair splatted across a
//! vector multiplies four output rows at once with no horizontal sums.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use half::f16;

use super::ops::round_small;
use crate::error::{Error, Result};

/// Values per quantization block (q8_0 and q4_0 alike).
pub const BLOCK: usize = 32;
/// Output rows per weight panel: two vectors of four i32 lanes.
const PANEL: usize = 8;
/// Activation rows per micro-kernel call.
const ROWS: usize = 4;

/// A weight matrix `[out, in]` repacked for [`QuantizedLinear`].
pub struct PackedWeight {
    out_dim: usize,
    in_dim: usize,
    /// `panels × (in_dim / 2) × PANEL × 2` values.
    values: Vec<i16>,
    /// `panels × (in_dim / BLOCK) × PANEL` block scales.
    scales: Vec<f32>,
}

impl PackedWeight {
    /// Repacks a q8_0 or q4_0 tensor `[out, in]`; other formats are not integer formats.
    pub fn from_qtensor(name: &str, q: &QTensor) -> Result<Self> {
        let (out_dim, in_dim) = q.shape().dims2()?;
        let data = q.data()?;
        let rows = decode_blocks(name, q.dtype(), &data, out_dim, in_dim)?;
        Ok(Self::pack(out_dim, in_dim, &rows.0, &rows.1))
    }

    /// `values` is `[out, in]` row-major; `scales` is `[out, in / BLOCK]`.
    fn pack(out_dim: usize, in_dim: usize, values: &[i8], scales: &[f32]) -> Self {
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
        Self { out_dim, in_dim, values: packed, scales: packed_scales }
    }
}

// Shapes only: a derived Debug would print millions of values.
impl std::fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedWeight")
            .field("out_dim", &self.out_dim)
            .field("in_dim", &self.in_dim)
            .finish_non_exhaustive()
    }
}

/// q8_0 / q4_0 blocks → (i8 values `[out, in]`, f32 scales `[out, in / BLOCK]`).
fn decode_blocks(name: &str, dtype: GgmlDType, data: &[u8], rows: usize, cols: usize) -> Result<(Vec<i8>, Vec<f32>)> {
    let block_bytes = match dtype {
        GgmlDType::Q8_0 => 2 + BLOCK,
        GgmlDType::Q4_0 => 2 + BLOCK / 2,
        other => return Err(Error::BadBundle(format!("tensor {name}: {other:?} is not an integer block format"))),
    };
    let blocks = rows * cols / BLOCK;
    if !cols.is_multiple_of(BLOCK) || data.len() != blocks * block_bytes {
        return Err(Error::BadBundle(format!(
            "tensor {name}: {} bytes do not hold {rows}×{cols} values in {dtype:?} blocks",
            data.len()
        )));
    }
    let mut values = Vec::with_capacity(rows * cols);
    let mut scales = Vec::with_capacity(blocks);
    for block in data.chunks_exact(block_bytes) {
        scales.push(f16::from_le_bytes([block[0], block[1]]).to_f32());
        let payload = &block[2..];
        match dtype {
            GgmlDType::Q8_0 => values.extend(payload.iter().map(|&b| b as i8)),
            // ggml's q4_0: byte j holds value j (low nibble) and value j + 16 (high), offset by 8.
            _ => {
                values.extend(payload.iter().map(|&b| (b & 0x0f) as i8 - 8));
                values.extend(payload.iter().map(|&b| (b >> 4) as i8 - 8));
            }
        }
    }
    Ok((values, scales))
}

/// Activations `[rows, in]` quantized per 32-value block: i16 values (the kernel's operand
/// width) and one scale per block.
struct QuantizedRows {
    values: Vec<i16>,
    scales: Vec<f32>,
}

fn quantize_rows(xs: &[f32]) -> QuantizedRows {
    let mut values = vec![0i16; xs.len()];
    let mut scales = Vec::with_capacity(xs.len() / BLOCK);
    for (block, out) in xs.chunks_exact(BLOCK).zip(values.chunks_exact_mut(BLOCK)) {
        let scale = max_abs(block) / 127.0;
        let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        // |x · inverse| ≤ 127.
        for (q, &x) in out.iter_mut().zip(block) {
            *q = (round_small(x * inverse) as i32) as i16;
        }
        scales.push(scale);
    }
    QuantizedRows { values, scales }
}

/// max |x| of one block, in eight lanes so that it compiles to vector max instructions
/// (`f32::max` on one accumulator is a libm call per value in wasm).
fn max_abs(block: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    for chunk in block.chunks_exact(8) {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            let a = x.abs();
            *m = if a > *m { a } else { *m };
        }
    }
    lanes.iter().fold(0f32, |m, &a| if a > m { a } else { m })
}

/// `y = x Wᵀ + b` with `W` packed; the candle op runs on CPU tensors `[rows, in]`.
#[derive(Debug)]
pub struct QuantizedLinear {
    weight: PackedWeight,
    bias: Option<Vec<f32>>,
}

impl QuantizedLinear {
    pub fn new(weight: PackedWeight, bias: Option<Vec<f32>>) -> Self {
        Self { weight, bias }
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.contiguous()?.apply_op1_no_bwd(self)?)
    }

    /// The product of `rows` activation rows, written into `out` (`[rows, out_dim]`).
    fn run(&self, xs: &[f32], rows: usize, out: &mut [f32]) {
        use rayon::prelude::*;
        let w = &self.weight;
        let x = quantize_rows(xs);
        // Row ranges per rayon thread (a multiple of ROWS): each row's sums are the same whoever
        // computes them, so the split changes no bits. In wasm without threads this is one range.
        let per_task = rows.div_ceil(rayon::current_num_threads().max(1)).div_ceil(ROWS).max(1) * ROWS;
        out.par_chunks_mut(per_task * w.out_dim).enumerate().for_each(|(task, out)| {
            let first = task * per_task;
            self.run_rows(&x, first, out.len() / w.out_dim, out);
        });
    }

    /// Rows `first .. first + rows` of the product into `out` (`[rows, out_dim]`), bias added.
    fn run_rows(&self, x: &QuantizedRows, first: usize, rows: usize, out: &mut [f32]) {
        let w = &self.weight;
        let blocks = w.in_dim / BLOCK;
        let panels = w.out_dim.div_ceil(PANEL);
        // Panel-major: one panel's weights (in_dim × 8 × 2 bytes) stay in L1 across all rows.
        for panel in 0..panels {
            let wv = &w.values[panel * w.in_dim * PANEL..(panel + 1) * w.in_dim * PANEL];
            let ws = &w.scales[panel * blocks * PANEL..(panel + 1) * blocks * PANEL];
            let mut row = 0;
            while row < rows {
                let take = (rows - row).min(ROWS);
                let mut acc = [[0f32; PANEL]; ROWS];
                let at = first + row;
                let xv = &x.values[at * w.in_dim..(at + take) * w.in_dim];
                let xs = &x.scales[at * blocks..(at + take) * blocks];
                match take {
                    4 => kernel::<4>(xv, xs, wv, ws, blocks, &mut acc),
                    3 => kernel::<3>(xv, xs, wv, ws, blocks, &mut acc),
                    2 => kernel::<2>(xv, xs, wv, ws, blocks, &mut acc),
                    _ => kernel::<1>(xv, xs, wv, ws, blocks, &mut acc),
                }
                let cols = (w.out_dim - panel * PANEL).min(PANEL);
                for (r, acc_row) in acc.iter().enumerate().take(take) {
                    let dst = &mut out[(row + r) * w.out_dim + panel * PANEL..][..cols];
                    dst.copy_from_slice(&acc_row[..cols]);
                }
                row += take;
            }
        }
        if let Some(bias) = &self.bias {
            for out_row in out.chunks_exact_mut(w.out_dim) {
                for (y, b) in out_row.iter_mut().zip(bias) {
                    *y += b;
                }
            }
        }
    }
}

impl CustomOp1 for QuantizedLinear {
    fn name(&self) -> &'static str {
        "int8-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(all) = storage else { candle_core::bail!("int8-linear: activations must be f32") };
        let (rows, in_dim) = layout.shape().dims2()?;
        if in_dim != self.weight.in_dim {
            candle_core::bail!("int8-linear: input width {in_dim}, weight expects {}", self.weight.in_dim)
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("int8-linear: activations must be contiguous")
        };
        let mut out = vec![0f32; rows * self.weight.out_dim];
        self.run(&all[start..end], rows, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((rows, self.weight.out_dim))))
    }
}

/// `R` activation rows × one panel: `acc[r][c] += Σ_blocks (x_scale · w_scale) · Σ_block x·w`.
/// The portable reference; the SIMD versions below (wasm simd128, x86-64 SSE2) compute the same
/// numbers in the same order, so all three give the same bits.
#[allow(dead_code)] // the reference; x86-64 and wasm SIMD builds run their own versions
fn kernel_portable<const R: usize>(
    xv: &[i16],
    xs: &[f32],
    wv: &[i16],
    ws: &[f32],
    blocks: usize,
    acc: &mut [[f32; PANEL]; ROWS],
) {
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
fn kernel_lanes4<const R: usize>(
    xv: &[i16],
    xs: &[f32],
    wv: &[i16],
    ws: &[f32],
    blocks: usize,
    acc: &mut [[f32; PANEL]; ROWS],
) {
    use super::simd::*;
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
fn kernel<const R: usize>(
    xv: &[i16],
    xs: &[f32],
    wv: &[i16],
    ws: &[f32],
    blocks: usize,
    acc: &mut [[f32; PANEL]; ROWS],
) {
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
unsafe fn kernel_avx2<const R: usize>(
    xv: &[i16],
    xs: &[f32],
    wv: &[i16],
    ws: &[f32],
    blocks: usize,
    acc: &mut [[f32; PANEL]; ROWS],
) {
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
    use super::*;
    use candle_core::Device;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Odd row and column counts (tails of ROWS and PANEL), q8_0 and q4_0, against the product
    /// of the dequantized weight with the block-quantized activations, computed plainly.
    #[test]
    #[allow(clippy::needless_range_loop)] // index arithmetic mirrors the math
    fn matches_a_plain_product_on_odd_shapes() {
        let mut seed = 7;
        for (dtype, rows, out_dim, in_dim) in [
            (GgmlDType::Q8_0, 1, 1, 32),
            (GgmlDType::Q8_0, 7, 13, 96),
            (GgmlDType::Q4_0, 5, 9, 64),
            (GgmlDType::Q8_0, 130, 70, 384),
        ] {
            let w: Vec<f32> = (0..out_dim * in_dim).map(|_| lcg(&mut seed)).collect();
            let x: Vec<f32> = (0..rows * in_dim).map(|_| lcg(&mut seed) * 3.0).collect();
            let bias: Vec<f32> = (0..out_dim).map(|_| lcg(&mut seed)).collect();
            let wt = Tensor::from_vec(w, (out_dim, in_dim), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&wt, dtype).unwrap();
            let deq = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            let lin = QuantizedLinear::new(PackedWeight::from_qtensor("w", &q).unwrap(), Some(bias.clone()));
            let xt = Tensor::from_vec(x.clone(), (rows, in_dim), &Device::Cpu).unwrap();
            let got = lin.forward(&xt).unwrap().to_vec2::<f32>().unwrap();
            let qx = quantize_rows(&x);
            for r in 0..rows {
                for o in 0..out_dim {
                    let mut want = bias[o] as f64;
                    for k in 0..in_dim {
                        want += qx.values[r * in_dim + k] as f64
                            * qx.scales[(r * in_dim + k) / BLOCK] as f64
                            * deq[o][k] as f64;
                    }
                    let diff = (got[r][o] as f64 - want).abs();
                    assert!(
                        diff < 1e-4 * (1.0 + want.abs()),
                        "{dtype:?} {rows}×{out_dim}×{in_dim} at ({r},{o}): {} vs {want}",
                        got[r][o]
                    );
                }
            }
        }
    }

    #[test]
    fn quantized_activations_stay_close_to_f32() {
        let mut seed = 3;
        let x: Vec<f32> = (0..64).map(|_| lcg(&mut seed)).collect();
        let q = quantize_rows(&x);
        for (k, &v) in x.iter().enumerate() {
            let back = q.values[k] as f32 * q.scales[k / BLOCK];
            assert!((back - v).abs() <= q.scales[k / BLOCK] * 0.5 + 1e-7, "{k}: {back} vs {v}");
        }
        let zeros = quantize_rows(&[0.0; 32]);
        assert!(zeros.values.iter().all(|&v| v == 0) && zeros.scales == [0.0]);
    }

    #[test]
    fn rejects_non_integer_formats_with_the_tensor_name() {
        let t = Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::F16).unwrap();
        let err = PackedWeight::from_qtensor("encoder.layer.0.x.weight", &q).unwrap_err().to_string();
        assert!(err.contains("encoder.layer.0.x.weight"), "{err}");
    }

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
