//! q4_0 blocks with least-squares scales.
//!
//! ggml's reference q4_0 quantizer sets each 32-value block's scale from its largest value
//! (d = max / -8). That wastes levels when one value stands out. Here each block tries 21
//! candidate scales around that one, rounds to the 16 levels, solves for the scale that
//! minimises the squared error for those levels, and keeps the best. The bytes are plain
//! q4_0 (f16 scale, 16 bytes of nibbles), so every q4_0 reader, ours included, reads them.
//! The idea is llama.cpp's `make_qx_quants`; this is our own code.

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};
use half::f16;

use crate::error::Result;

const BLOCK: usize = 32;
/// Bytes per block: f16 scale + 32 four-bit values.
const BLOCK_BYTES: usize = 2 + BLOCK / 2;
/// Candidate scales tried per block: max / -(8 + 0.1·s) for s in -SEARCH..=SEARCH.
const SEARCH: i32 = 10;

/// Quantizes one block; returns (scale, levels in -8..=7).
fn quantize_block(xs: &[f32]) -> (f32, [i8; BLOCK]) {
    let mut levels = [0i8; BLOCK];
    let max = xs.iter().copied().fold(0f32, |m, x| if x.abs() > m.abs() { x } else { m });
    if max == 0.0 {
        return (0.0, levels);
    }
    let mut best = (f32::INFINITY, 0f32, levels);
    for s in -SEARCH..=SEARCH {
        let inverse = -(8.0 + 0.1 * s as f32) / max;
        let mut trial = [0i8; BLOCK];
        let (mut xq, mut qq) = (0f32, 0f32);
        for (q, &x) in trial.iter_mut().zip(xs) {
            *q = (x * inverse).round().clamp(-8.0, 7.0) as i8;
            xq += x * *q as f32;
            qq += (*q as f32) * (*q as f32);
        }
        if qq == 0.0 {
            continue;
        }
        // The scale is stored as f16: score the error with the scale actually stored.
        let d = f16::from_f32(xq / qq).to_f32();
        let err: f32 = xs.iter().zip(&trial).map(|(&x, &q)| (x - d * q as f32).powi(2)).sum();
        if err < best.0 {
            best = (err, d, trial);
        }
    }
    levels = best.2;
    (best.1, levels)
}

/// `values` [rows, cols] (cols a multiple of 32) → a q4_0 `QTensor`.
pub fn q4_0(values: &Tensor) -> Result<QTensor> {
    let dims = values.dims().to_vec();
    let data = values.flatten_all()?.to_vec1::<f32>()?;
    let mut bytes = Vec::with_capacity(data.len() / BLOCK * BLOCK_BYTES);
    for block in data.chunks(BLOCK) {
        let (d, q) = quantize_block(block);
        bytes.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        for j in 0..BLOCK / 2 {
            // Low nibble: value j; high nibble: value j + 16 (ggml's q4_0 layout).
            let lo = (q[j] + 8) as u8;
            let hi = (q[j + BLOCK / 2] + 8) as u8;
            bytes.push(lo | (hi << 4));
        }
    }
    let storage = QStorage::from_data(Cow::Owned(bytes), &Device::Cpu, GgmlDType::Q4_0)?;
    Ok(QTensor::new(storage, dims)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn squared_error(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn reads_back_through_ggml_and_beats_max_scaling() {
        // Heavy-tailed rows, like trained weights: Gaussian with a few outliers, seeded.
        let dev = Device::Cpu;
        let mut state = 0x2545f4914f6cdd1du64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let values: Vec<f32> = (0..64 * 128)
            .map(|_| {
                let (u1, u2) = (uniform().max(1e-7), uniform());
                let gaussian = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos() * 0.02;
                if uniform() > 0.97 {
                    gaussian + 0.2
                } else {
                    gaussian
                }
            })
            .collect();
        let w = Tensor::from_vec(values, (64, 128), &dev).unwrap();
        let ours = q4_0(&w).unwrap();
        assert_eq!(ours.dtype(), GgmlDType::Q4_0);
        assert_eq!(ours.shape().dims(), &[64, 128]);
        let ggml = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
        let ours_err = squared_error(&ours.dequantize(&dev).unwrap(), &w);
        let ggml_err = squared_error(&ggml.dequantize(&dev).unwrap(), &w);
        assert!(ours_err < 0.97 * ggml_err, "least-squares {ours_err} vs max-scaled {ggml_err}");
        // Same storage size as ggml's.
        assert_eq!(ours.storage_size_in_bytes(), ggml.storage_size_in_bytes());
    }

    #[test]
    fn exact_levels_survive() {
        // A block that is exactly representable comes back exactly.
        let xs: Vec<f32> = (0..32).map(|i| ((i % 16) as f32 - 8.0) * 0.5).collect();
        let t = Tensor::from_vec(xs.clone(), (1, 32), &Device::Cpu).unwrap();
        let back = q4_0(&t).unwrap().dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(back, xs);
    }

    #[test]
    fn zero_block_stays_zero() {
        let t = Tensor::zeros((2, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
        let back = q4_0(&t).unwrap().dequantize(&Device::Cpu).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(back, 0.0);
    }
}
