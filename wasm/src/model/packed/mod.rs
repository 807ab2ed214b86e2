//! Weights repacked once at load for CPU inference, and the matmul `y = x Wᵀ + b` over them.
//!
//! Every layout ([`Layout`]) keeps the weights in panels of [`PANEL`] output rows, laid out so
//! that one splatted activation value (or group) times a vector of weights feeds four output rows
//! with no horizontal sums, and multiplies up to [`ROWS`] activation rows per pass over a panel.
//! Each layout's SIMD kernel (wasm in the browser, SSE2/AVX2 natively) sums in the same order as
//! its portable code, so native and browser builds give the same bits.
//!
//! - [`dense`]: f32 weights (f32/f16 bundles); no per-call packing of the weight, as a general
//!   GEMM does.
//! - Block-quantized weights (q8_0, q4_0), by integer dot products ([`BlockLayout`]): the
//!   activations are quantized per row in 32-value blocks, as the weights are, each block's dot
//!   product is an exact integer sum, and the block sums are scaled (activation scale × weight
//!   scale) into f32 accumulators, block by block in order. Why: wasm SIMD has no f32 fused
//!   multiply-add, so an f32 matmul spends two instructions per four multiply-adds; integer dot
//!   products do eight or sixteen in one. This is the int8 work onnxruntime-web does for quantized
//!   models, with ggml's finer (per-block) scales. Two layouts, chosen by [`QuantizedMatmul`]:
//!   - [`pairs`] (`Integer`): i16 pairs for `i32x4.dot_i16x8_s` (wasm simd128, every browser)
//!     and SSE2/AVX2 natively; 8-bit activations.
//!   - [`quads`] (`Relaxed`): i8 quads for relaxed SIMD's `i32x4.relaxed_dot_i8x16_i7x16_add_s`
//!     (the `relaxed-simd` browser build, Chrome/Edge): twice the multiply-adds per instruction,
//!     one `vpdpbusd` on CPUs with VNNI. Its q4_0 outputs equal the pairs layout's; its q8_0
//!     activations have 7 bits instead of 8 (see that module). Other builds run its portable
//!     kernel, so that native code can reproduce that browser build's numbers.

use std::ops::Range;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout as TensorLayout, Shape, Tensor};
use half::f16;

use super::ops::round_small_to_i32;
use super::weights::QuantizedMatmul;
use crate::error::{Error, Result};

pub mod dense;
pub mod pairs;
pub mod quads;

/// Values per quantization block (q8_0 and q4_0 alike).
pub const BLOCK: usize = 32;
/// Output rows per weight panel: two vectors of four i32 lanes.
pub const PANEL: usize = 8;
/// Activation rows per micro-kernel call.
pub const ROWS: usize = 4;

/// One panel's results for up to [`ROWS`] activation rows.
pub type Tile = [[f32; PANEL]; ROWS];

/// Weight bytes per panel group (see [`PackedLinear::run_rows`]): well inside a core's L2.
const GROUP_BYTES: usize = 256 * 1024;

/// A weight layout: how activations are prepared for its kernel and one panel multiplied.
pub trait Layout: 'static {
    /// Bytes one weight value takes in a panel (scales aside).
    const WEIGHT_BYTES: usize;
    /// The packed weight matrix.
    type Weight: Send + Sync;
    /// Activation rows as the kernel reads them (quantized, or the f32 rows themselves).
    type Rows<'a>: Sync;
    /// Activations `[rows, in_dim]`, prepared as `weight`'s kernel needs them.
    fn prepare<'a>(weight: &Self::Weight, xs: &'a [f32]) -> Self::Rows<'a>;
    /// Rows `first .. first + take` (`take ≤ ROWS`) times panel `panel`, into `tile` (overwritten).
    fn panel(
        weight: &Self::Weight,
        in_dim: usize,
        panel: usize,
        x: &Self::Rows<'_>,
        first: usize,
        take: usize,
        tile: &mut Tile,
    );
    /// Activation `i` as the kernel sees it, dequantized (tests compare with a plain product).
    #[cfg(test)]
    fn activation(x: &Self::Rows<'_>, i: usize) -> f32;
}

/// A layout for q8_0/q4_0 weights.
pub trait BlockLayout: Layout {
    /// `values` are `[out, in]` row-major (q4_0 values already −8..=7), `scales` `[out, in / BLOCK]`.
    fn pack(dtype: GgmlDType, out_dim: usize, in_dim: usize, values: &[i8], scales: &[f32]) -> Self::Weight;
}

/// A q8_0/q4_0 weight `[out_dim, in_dim]`, decoded as [`BlockLayout::pack`] takes it.
struct Blocks {
    dtype: GgmlDType,
    out_dim: usize,
    in_dim: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
}

impl Blocks {
    /// Decodes `q` (named `name` in errors) and checks `bias` against its rows.
    fn read(name: &str, q: &QTensor, bias: &Option<Vec<f32>>) -> Result<Self> {
        let (out_dim, in_dim) = q.shape().dims2()?;
        let (values, scales) = decode_blocks(name, q.dtype(), &q.data()?, out_dim, in_dim)?;
        check_bias(name, bias, out_dim)?;
        Ok(Self { dtype: q.dtype(), out_dim, in_dim, values, scales })
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

/// One block's codes `round(x · inverse)` (|x · inverse| < 2^22) into `out`; returns their sum.
/// Fixed-size and branch-free so that it compiles to vector code (scalar, this step was a fifth
/// of a q8_0 forward pass in wasm).
fn quantize_block(block: &[f32], inverse: f32, out: &mut [i32; BLOCK]) -> i32 {
    for (q, &x) in out.iter_mut().zip(block) {
        *q = round_small_to_i32(x * inverse);
    }
    // Wrapping: activations that overflowed to infinity or NaN give meaningless codes, and
    // their sum must not be a panic (overflow checks are on in debug and fuzz builds).
    out.iter().fold(0i32, |sum, &q| sum.wrapping_add(q))
}

/// max |x| of one block (exact whatever the order of comparisons, so every build gets the same).
#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
fn max_abs(block: &[f32]) -> f32 {
    block.iter().fold(0f32, |m, &x| if x.abs() > m { x.abs() } else { m })
}

/// max |x| of one block, four lanes at a time (a scalar loop was a fifth of a q8_0 pass in wasm).
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
fn max_abs(block: &[f32]) -> f32 {
    use super::simd::*;
    let mut m = zero_f();
    for chunk in block.chunks_exact(4) {
        // SAFETY: `chunk` holds 4 f32.
        m = max_f(m, abs_f(unsafe { load_f(chunk.as_ptr()) }));
    }
    let tail = block.chunks_exact(4).remainder().iter().fold(0f32, |m, &x| if x.abs() > m { x.abs() } else { m });
    lanes_f(m).iter().fold(tail, |m, &a| if a > m { a } else { m })
}

/// `y = x Wᵀ + b` with `W` a q8_0/q4_0 weight in one of the integer layouts; the candle op runs
/// on CPU tensors `[rows, in]`.
#[derive(Debug)]
pub enum QuantizedLinear {
    Pairs(PackedLinear<pairs::Pairs>),
    Quads(PackedLinear<quads::Quads>),
}

impl QuantizedLinear {
    /// Packs a q8_0 or q4_0 tensor `[out, in]` (named `name` in errors) for `kind`'s layout
    /// (`Dequantized` is not an integer kind, and takes `Integer`'s).
    pub fn from_qtensor(name: &str, q: &QTensor, kind: QuantizedMatmul, bias: Option<Vec<f32>>) -> Result<Self> {
        Ok(Self::from_blocks(kind, &Blocks::read(name, q, &bias)?, bias))
    }

    /// Decoded blocks packed in `kind`'s layout.
    fn from_blocks(kind: QuantizedMatmul, blocks: &Blocks, bias: Option<Vec<f32>>) -> Self {
        match kind {
            QuantizedMatmul::Relaxed => Self::Quads(PackedLinear::from_blocks(blocks, bias)),
            QuantizedMatmul::Integer | QuantizedMatmul::Dequantized => {
                Self::Pairs(PackedLinear::from_blocks(blocks, bias))
            }
        }
    }

    /// Weights `[out_i, in]` of one format stacked into one `[Σ out_i, in]` product, their outputs
    /// side by side (the attention's query, key and value: one activation quantization and one
    /// pass over the input instead of three). `None` when their formats or widths differ.
    pub fn stacked(parts: &[(&str, &QTensor, Option<Vec<f32>>)], kind: QuantizedMatmul) -> Result<Option<Self>> {
        let Some(&(_, first, _)) = parts.first() else { return Ok(None) };
        let in_dim = first.shape().dims2()?.1;
        for (_, q, _) in parts {
            if q.dtype() != first.dtype() || q.shape().dims2()?.1 != in_dim {
                return Ok(None);
            }
        }
        let (mut values, mut scales, mut bias) = (Vec::new(), Vec::new(), Vec::new());
        for (name, q, b) in parts {
            let part = Blocks::read(name, q, b)?;
            values.extend(part.values);
            scales.extend(part.scales);
            bias.extend(b.clone().unwrap_or_else(|| vec![0.0; part.out_dim]));
        }
        let blocks = Blocks { dtype: first.dtype(), out_dim: bias.len(), in_dim, values, scales };
        let bias = parts.iter().any(|(_, _, b)| b.is_some()).then_some(bias);
        Ok(Some(Self::from_blocks(kind, &blocks, bias)))
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = xs.contiguous()?;
        Ok(match self {
            Self::Pairs(linear) => xs.apply_op1_no_bwd(linear)?,
            Self::Quads(linear) => xs.apply_op1_no_bwd(linear)?,
        })
    }
}

/// A weight packed in layout `L`, with its bias: a candle op on CPU tensors `[rows, in]`.
pub struct PackedLinear<L: Layout> {
    out_dim: usize,
    in_dim: usize,
    weight: L::Weight,
    bias: Option<Vec<f32>>,
}

// Shapes only: the weights are millions of values.
impl<L: Layout> std::fmt::Debug for PackedLinear<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedLinear")
            .field("out_dim", &self.out_dim)
            .field("in_dim", &self.in_dim)
            .field("bias", &self.bias.is_some())
            .finish_non_exhaustive()
    }
}

impl<L: BlockLayout> PackedLinear<L> {
    /// Packs a q8_0 or q4_0 tensor `[out, in]` in layout `L` (tests pick the layout directly).
    #[cfg(test)]
    fn from_qtensor(name: &str, q: &QTensor, bias: Option<Vec<f32>>) -> Result<Self> {
        Ok(Self::from_blocks(&Blocks::read(name, q, &bias)?, bias))
    }

    fn from_blocks(b: &Blocks, bias: Option<Vec<f32>>) -> Self {
        Self::new(b.out_dim, b.in_dim, L::pack(b.dtype, b.out_dim, b.in_dim, &b.values, &b.scales), bias)
    }
}

impl PackedLinear<dense::Dense> {
    /// An f32 weight `[out, in]` (named `name` in errors) and its bias.
    pub fn from_f32(name: &str, weight: &Tensor, bias: Option<Vec<f32>>) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        check_bias(name, &bias, out_dim)?;
        let values = weight.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Self::new(out_dim, in_dim, dense::Dense::pack(out_dim, in_dim, &values), bias))
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.contiguous()?.apply_op1_no_bwd(self)?)
    }
}

fn check_bias(name: &str, bias: &Option<Vec<f32>>, out_dim: usize) -> Result<()> {
    match bias {
        Some(b) if b.len() != out_dim => {
            Err(Error::BadBundle(format!("{name}: bias has {} values for {out_dim} rows", b.len())))
        }
        _ => Ok(()),
    }
}

impl<L: Layout> PackedLinear<L> {
    fn new(out_dim: usize, in_dim: usize, weight: L::Weight, bias: Option<Vec<f32>>) -> Self {
        Self { out_dim, in_dim, weight, bias }
    }

    /// The product of `rows` activation rows, written into `out` (`[rows, out_dim]`).
    ///
    /// With several rayon threads (natively, or the threaded wasm build) each takes a share of
    /// the output's panels: a short note's product is bound by reading the weights, and this way
    /// each thread reads only its share of them (split by rows, every thread read all of them).
    /// Each output's sum is the same whichever thread computes it, so threads change no bits.
    fn run(&self, xs: &[f32], rows: usize, out: &mut [f32]) {
        use rayon::prelude::*;
        let x = L::prepare(&self.weight, xs);
        let panels = self.out_dim.div_ceil(PANEL);
        // Not `clamp(1, panels)`: that panics for a weight with no rows.
        let threads = rayon::current_num_threads().min(panels).max(1);
        if threads == 1 {
            self.run_rows(&x, rows, 0..panels, out);
            return;
        }
        let per_task = panels.div_ceil(threads);
        let shares: Vec<Range<usize>> = (0..panels).step_by(per_task).map(|p| p..(p + per_task).min(panels)).collect();
        let parts: Vec<Vec<f32>> = shares
            .par_iter()
            .map(|share| {
                let mut part = vec![0f32; rows * self.width_of(share)];
                self.run_rows(&x, rows, share.clone(), &mut part);
                part
            })
            .collect();
        for (share, part) in shares.iter().zip(&parts) {
            let (col, width) = (share.start * PANEL, self.width_of(share));
            for (r, dst) in out.chunks_exact_mut(self.out_dim).enumerate() {
                dst[col..col + width].copy_from_slice(&part[r * width..(r + 1) * width]);
            }
        }
    }

    /// Output columns in `panels`.
    fn width_of(&self, panels: &Range<usize>) -> usize {
        (panels.end * PANEL).min(self.out_dim) - panels.start * PANEL
    }

    /// The product's columns in `panels`, for all `rows`, into `out` (`[rows, width]`, the width
    /// of those panels), bias added.
    ///
    /// Panels go in groups of about [`GROUP_BYTES`]: each row tile runs over the whole group
    /// before the next tile. The first tile streams the group's weights from memory in one long
    /// sequential run, which the hardware prefetcher follows; the other tiles find them in L2.
    /// Panel by panel (each panel's tiles together), every panel's first tile restarted that
    /// stream: a 22-token note's f32 matmuls took ~25 % longer in wasm when the weights (42 MB)
    /// did not fit in the last-level cache. Each output's sum is the same in any order of
    /// tiles, so this changes no bits.
    fn run_rows(&self, x: &L::Rows<'_>, rows: usize, panels: Range<usize>, out: &mut [f32]) {
        let (col0, width) = (panels.start * PANEL, self.width_of(&panels));
        let group = (GROUP_BYTES / (self.in_dim * PANEL * L::WEIGHT_BYTES).max(1)).max(1);
        for group_start in panels.clone().step_by(group) {
            let group_end = (group_start + group).min(panels.end);
            let mut row = 0;
            while row < rows {
                let take = (rows - row).min(ROWS);
                for panel in group_start..group_end {
                    let cols = (self.out_dim - panel * PANEL).min(PANEL);
                    let mut tile = [[0f32; PANEL]; ROWS];
                    L::panel(&self.weight, self.in_dim, panel, x, row, take, &mut tile);
                    for (r, tile_row) in tile.iter().enumerate().take(take) {
                        let dst = &mut out[(row + r) * width + panel * PANEL - col0..][..cols];
                        if let Ok(whole) = <&mut [f32; PANEL]>::try_from(&mut *dst) {
                            // A fixed-size copy: two vector moves, where a sized-at-run-time one is a call.
                            *whole = *tile_row;
                        } else {
                            dst.copy_from_slice(&tile_row[..cols]);
                        }
                    }
                }
                row += take;
            }
        }
        if let Some(bias) = &self.bias {
            for out_row in out.chunks_exact_mut(width) {
                for (y, b) in out_row.iter_mut().zip(&bias[col0..col0 + width]) {
                    *y += b;
                }
            }
        }
    }
}

impl<L: Layout> CustomOp1 for PackedLinear<L> {
    fn name(&self) -> &'static str {
        "packed-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &TensorLayout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(all) = storage else { candle_core::bail!("packed-linear: activations must be f32") };
        let (rows, in_dim) = layout.shape().dims2()?;
        if in_dim != self.in_dim {
            candle_core::bail!("packed-linear: input width {in_dim}, weight expects {}", self.in_dim)
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("packed-linear: activations must be contiguous")
        };
        let mut out = vec![0f32; rows * self.out_dim];
        self.run(&all[start..end], rows, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((rows, self.out_dim))))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::Device;

    pub(crate) fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Odd row and column counts (tails of ROWS and PANEL), q8_0 and q4_0, against the product
    /// of the dequantized weight with the block-quantized activations, computed plainly.
    #[allow(clippy::needless_range_loop)] // index arithmetic mirrors the math
    fn matches_a_plain_product_on_odd_shapes<L: BlockLayout>() {
        let mut seed = 7;
        for (dtype, rows, out_dim, in_dim) in [
            (GgmlDType::Q8_0, 1, 1, 32),
            (GgmlDType::Q8_0, 7, 13, 96),
            (GgmlDType::Q4_0, 5, 9, 64),
            (GgmlDType::Q4_0, 6, 17, 128),
            (GgmlDType::Q8_0, 130, 70, 384),
            // Two panel groups for either layout (see `run_rows`).
            (GgmlDType::Q8_0, 6, 70, 4096),
        ] {
            let w: Vec<f32> = (0..out_dim * in_dim).map(|_| lcg(&mut seed)).collect();
            let x: Vec<f32> = (0..rows * in_dim).map(|_| lcg(&mut seed) * 3.0).collect();
            let bias: Vec<f32> = (0..out_dim).map(|_| lcg(&mut seed)).collect();
            let wt = Tensor::from_vec(w, (out_dim, in_dim), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&wt, dtype).unwrap();
            let deq = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            let lin = PackedLinear::<L>::from_qtensor("w", &q, Some(bias.clone())).unwrap();
            let xt = Tensor::from_vec(x.clone(), (rows, in_dim), &Device::Cpu).unwrap();
            let got = xt.apply_op1_no_bwd(&lin).unwrap().to_vec2::<f32>().unwrap();
            let qx = L::prepare(&lin.weight, &x);
            for r in 0..rows {
                for o in 0..out_dim {
                    let mut want = bias[o] as f64;
                    for k in 0..in_dim {
                        want += L::activation(&qx, r * in_dim + k) as f64 * deq[o][k] as f64;
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
    fn pairs_match_a_plain_product_on_odd_shapes() {
        matches_a_plain_product_on_odd_shapes::<pairs::Pairs>();
    }

    #[test]
    fn quads_match_a_plain_product_on_odd_shapes() {
        matches_a_plain_product_on_odd_shapes::<quads::Quads>();
    }

    /// Quantized activations round to the nearest step of their block's scale.
    #[allow(clippy::needless_range_loop)] // k indexes the codes and the inputs
    fn quantized_activations_stay_close_to_f32<L: BlockLayout>(dtype: GgmlDType) {
        let mut seed = 3;
        let x: Vec<f32> = (0..64).map(|_| lcg(&mut seed)).collect();
        let w = L::pack(dtype, 1, 64, &[1; 64], &[1.0; 2]);
        let q = L::prepare(&w, &x);
        for block in 0..2 {
            let amax = max_abs(&x[block * BLOCK..][..BLOCK]);
            for k in block * BLOCK..(block + 1) * BLOCK {
                let back = L::activation(&q, k);
                // 7-bit codes step by amax/63, 8-bit ones by amax/127.
                assert!((back - x[k]).abs() <= amax / 63.0 * 0.5 + 1e-7, "{dtype:?} {k}: {back} vs {}", x[k]);
            }
        }
        let zeros = L::prepare(&w, &[0.0; 64]);
        assert!((0..64).all(|k| L::activation(&zeros, k) == 0.0));
    }

    #[test]
    fn quantized_activations_stay_close_in_both_layouts() {
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
            quantized_activations_stay_close_to_f32::<pairs::Pairs>(dtype);
            quantized_activations_stay_close_to_f32::<quads::Quads>(dtype);
        }
    }

    /// q4_0 codes meet 8-bit activations in both layouts: the same sums, the same bits.
    #[test]
    fn q4_0_gives_the_same_bits_in_both_layouts() {
        let mut seed = 5;
        let (rows, out_dim, in_dim) = (9, 21, 160);
        let w: Vec<f32> = (0..out_dim * in_dim).map(|_| lcg(&mut seed)).collect();
        let x: Vec<f32> = (0..rows * in_dim).map(|_| lcg(&mut seed) * 2.0).collect();
        let q =
            QTensor::quantize(&Tensor::from_vec(w, (out_dim, in_dim), &Device::Cpu).unwrap(), GgmlDType::Q4_0).unwrap();
        let xt = Tensor::from_vec(x, (rows, in_dim), &Device::Cpu).unwrap();
        let run = |kind| {
            let linear = QuantizedLinear::from_qtensor("w", &q, kind, None).unwrap();
            linear.forward(&xt).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let (a, b) = (run(QuantizedMatmul::Integer), run(QuantizedMatmul::Relaxed));
        assert_eq!(a, b);
        assert!(a.iter().any(|&v| v != 0.0));
    }

    /// The threaded wasm build splits each product's panels over rayon's threads: every layout
    /// must give the same bits on any number of threads, for short and long inputs.
    #[test]
    fn threads_change_no_bits() {
        let mut seed = 21;
        let (out_dim, in_dim) = (70, 96);
        let w: Vec<f32> = (0..out_dim * in_dim).map(|_| lcg(&mut seed)).collect();
        let bias: Vec<f32> = (0..out_dim).map(|_| lcg(&mut seed)).collect();
        let wt = Tensor::from_vec(w, (out_dim, in_dim), &Device::Cpu).unwrap();
        let q8 = QTensor::quantize(&wt, GgmlDType::Q8_0).unwrap();
        let linears: [(&str, Box<dyn Fn(&Tensor) -> Tensor + Sync>); 3] = [
            (
                "f32",
                Box::new({
                    let l = PackedLinear::from_f32("w", &wt, Some(bias.clone())).unwrap();
                    move |x| l.forward(x).unwrap()
                }),
            ),
            (
                "q8_0 pairs",
                Box::new({
                    let l = PackedLinear::<pairs::Pairs>::from_qtensor("w", &q8, Some(bias.clone())).unwrap();
                    move |x| x.apply_op1_no_bwd(&l).unwrap()
                }),
            ),
            (
                "q8_0 quads",
                Box::new({
                    let l = PackedLinear::<quads::Quads>::from_qtensor("w", &q8, Some(bias.clone())).unwrap();
                    move |x| x.apply_op1_no_bwd(&l).unwrap()
                }),
            ),
        ];
        for rows in [1, 7, 130] {
            let x: Vec<f32> = (0..rows * in_dim).map(|_| lcg(&mut seed) * 3.0).collect();
            let xt = Tensor::from_vec(x, (rows, in_dim), &Device::Cpu).unwrap();
            for (name, forward) in &linears {
                let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
                let want = one.install(|| forward(&xt)).to_vec2::<f32>().unwrap();
                for threads in [2, 3, 16] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let got = pool.install(|| forward(&xt)).to_vec2::<f32>().unwrap();
                    assert_eq!(got, want, "{name}, {rows} rows, {threads} threads");
                }
            }
        }
    }

    /// Stacked weights give each part's outputs side by side, bit for bit; mixed formats do not stack.
    #[test]
    fn stacked_weights_match_the_parts() {
        let mut seed = 9;
        let (rows, in_dim) = (6, 64);
        let x: Vec<f32> = (0..rows * in_dim).map(|_| lcg(&mut seed)).collect();
        let xt = Tensor::from_vec(x, (rows, in_dim), &Device::Cpu).unwrap();
        let part = |seed: &mut u64, out_dim: usize, dtype| {
            let w: Vec<f32> = (0..out_dim * in_dim).map(|_| lcg(seed)).collect();
            let q = QTensor::quantize(&Tensor::from_vec(w, (out_dim, in_dim), &Device::Cpu).unwrap(), dtype).unwrap();
            let bias: Vec<f32> = (0..out_dim).map(|_| lcg(seed)).collect();
            (q, bias)
        };
        for kind in [QuantizedMatmul::Integer, QuantizedMatmul::Relaxed] {
            let (a, b) = (part(&mut seed, 16, GgmlDType::Q8_0), part(&mut seed, 24, GgmlDType::Q8_0));
            let parts = [("a", &a.0, Some(a.1.clone())), ("b", &b.0, None)];
            let stacked = QuantizedLinear::stacked(&parts, kind).unwrap().unwrap();
            let got = stacked.forward(&xt).unwrap().to_vec2::<f32>().unwrap();
            let one = |q, bias| QuantizedLinear::from_qtensor("p", q, kind, bias).unwrap().forward(&xt).unwrap();
            let want_a = one(&a.0, Some(a.1.clone())).to_vec2::<f32>().unwrap();
            let want_b = one(&b.0, None).to_vec2::<f32>().unwrap();
            for r in 0..rows {
                assert_eq!(got[r][..16], want_a[r][..], "{kind:?} row {r}, first part");
                assert_eq!(got[r][16..], want_b[r][..], "{kind:?} row {r}, second part");
            }
            let c = part(&mut seed, 8, GgmlDType::Q4_0);
            let mixed = [("a", &a.0, None), ("c", &c.0, None)];
            assert!(QuantizedLinear::stacked(&mixed, kind).unwrap().is_none());
        }
    }

    #[test]
    fn rejects_non_integer_formats_with_the_tensor_name() {
        let t = Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::F16).unwrap();
        let err = QuantizedLinear::from_qtensor("encoder.layer.0.x.weight", &q, QuantizedMatmul::default(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("encoder.layer.0.x.weight"), "{err}");
    }
}
