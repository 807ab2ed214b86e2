//! Weights → GPU buffers, once per model. Block-quantized matrices stay quantized: their
//! int8 / nibble payloads are copied as they are in the bundle and dequantised by the
//! kernels; only the per-block f16 scales are widened to f32 (see weights_q8_0.wgsl).
//! f16 matrices stay f16.

use candle_core::quantized::GgmlDType;
use half::f16;
use wgpu::util::DeviceExt;

use super::context::GpuContext;
use super::kernels::WeightFormat;
use crate::error::{Error, Result};
use crate::model::Weight;

/// A weight matrix [rows, cols] on the GPU.
pub(crate) struct GpuMatrix {
    pub format: WeightFormat,
    pub values: wgpu::Buffer,
    /// Per-block scales (quantized formats).
    pub scales: Option<wgpu::Buffer>,
    pub rows: usize,
    pub cols: usize,
}

impl GpuMatrix {
    /// The bindings `load_w` reads: values at 2, scales at 3.
    pub fn bindings(&self) -> Vec<(u32, &wgpu::Buffer)> {
        let mut b = vec![(2, &self.values)];
        if let Some(scales) = &self.scales {
            b.push((3, scales));
        }
        b
    }
}

/// A matrix's values on the host, in the layout the kernels read.
enum HostMatrix {
    F32(Vec<f32>),
    F16(Vec<u8>),
    Blocks { format: WeightFormat, payload: Vec<u8>, scales: Vec<f32> },
}

fn host(name: &str, weight: &Weight) -> Result<HostMatrix> {
    if let Weight::Quantized(q) = weight {
        let layout = match q.dtype() {
            GgmlDType::Q8_0 => Some((WeightFormat::Q8_0, 34)),
            GgmlDType::Q4_0 => Some((WeightFormat::Q4_0, 18)),
            _ => None,
        };
        if q.dtype() == GgmlDType::F16 {
            return Ok(HostMatrix::F16(q.data()?.into_owned()));
        }
        if let Some((format, block_bytes)) = layout {
            let data = q.data()?;
            if data.len() % block_bytes != 0 {
                return Err(Error::Gpu(format!("tensor {name}: {} bytes is not a whole number of blocks", data.len())));
            }
            let blocks = data.len() / block_bytes;
            let mut payload = Vec::with_capacity(blocks * (block_bytes - 2));
            let mut scales = Vec::with_capacity(blocks);
            for block in data.chunks_exact(block_bytes) {
                scales.push(f16::from_le_bytes([block[0], block[1]]).to_f32());
                payload.extend_from_slice(&block[2..]);
            }
            return Ok(HostMatrix::Blocks { format, payload, scales });
        }
    }
    // f32, f16 and any other storage run as f32.
    Ok(HostMatrix::F32(weight.to_f32()?.flatten_all()?.to_vec1::<f32>()?))
}

impl GpuContext {
    fn storage(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        let size = bytes.len() as u64;
        if size > self.adapter.max_binding_bytes {
            return Err(Error::Gpu(format!(
                "{label} needs {size} bytes in one binding; the adapter allows {}",
                self.adapter.max_binding_bytes
            )));
        }
        // Zero-sized bindings are invalid; a 4-byte buffer stands in for an empty one.
        let contents: &[u8] = if bytes.is_empty() { &[0; 4] } else { bytes };
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: wgpu::BufferUsages::STORAGE,
        }))
    }

    pub(crate) fn upload_f32(&self, label: &str, values: &[f32]) -> Result<wgpu::Buffer> {
        self.storage(label, bytemuck::cast_slice(values))
    }

    /// Uploads the row-wise concatenation of `parts` (each [rows_i, cols]) as one matrix:
    /// query, key and value become one [3·hidden, hidden] matrix and one matmul. Parts
    /// stored in different formats all run as f32.
    pub(crate) fn upload_matrix(&self, label: &str, parts: &[(&str, &Weight)]) -> Result<GpuMatrix> {
        let cols = parts.first().and_then(|(_, w)| w.dims().get(1).copied()).unwrap_or(0);
        let mut rows = 0;
        for (name, w) in parts {
            match w.dims() {
                [r, c] if *c == cols => rows += r,
                dims => {
                    return Err(Error::Gpu(format!("tensor {name}: shape {dims:?} cannot join a [_, {cols}] matrix")))
                }
            }
        }
        let hosts = parts.iter().map(|(name, w)| host(name, w)).collect::<Result<Vec<_>>>()?;
        if hosts.iter().all(|h| matches!(h, HostMatrix::F16(_))) {
            let mut halves = Vec::new();
            for h in hosts {
                if let HostMatrix::F16(bytes) = h {
                    halves.extend(bytes);
                }
            }
            // Whole u32 words: an odd count of halves gets one of padding.
            halves.resize(halves.len().next_multiple_of(4), 0);
            return Ok(GpuMatrix {
                format: WeightFormat::F16,
                values: self.storage(label, &halves)?,
                scales: None,
                rows,
                cols,
            });
        }
        let quantized_as = match hosts.first() {
            Some(HostMatrix::Blocks { format, .. }) => Some(*format),
            _ => None,
        };
        let all_same =
            hosts.iter().all(|h| matches!(h, HostMatrix::Blocks { format, .. } if Some(*format) == quantized_as));
        if let (Some(format), true) = (quantized_as, all_same) {
            let mut payload = Vec::new();
            let mut scales = Vec::new();
            for h in hosts {
                if let HostMatrix::Blocks { payload: p, scales: s, .. } = h {
                    payload.extend(p);
                    scales.extend(s);
                }
            }
            return Ok(GpuMatrix {
                format,
                values: self.storage(label, &payload)?,
                scales: Some(self.upload_f32(label, &scales)?),
                rows,
                cols,
            });
        }
        let mut values = Vec::with_capacity(rows * cols);
        for ((name, w), h) in parts.iter().zip(hosts) {
            match h {
                HostMatrix::F32(v) => values.extend(v),
                HostMatrix::Blocks { .. } | HostMatrix::F16(_) => values.extend(host_f32(name, w)?),
            }
        }
        Ok(GpuMatrix { format: WeightFormat::F32, values: self.upload_f32(label, &values)?, scales: None, rows, cols })
    }
}

fn host_f32(_name: &str, weight: &Weight) -> Result<Vec<f32>> {
    Ok(weight.to_f32()?.flatten_all()?.to_vec1::<f32>()?)
}
