//! The WebGPU backend: the encoder's forward pass as WGSL compute kernels on wgpu, in the
//! browser (WebGPU) and natively (Vulkan, Metal, DX12). candle has no WebGPU backend; this
//! is the runtime's own, chosen per model with [`Backend`] behind the same `Model` API.
//!
//! Layout: `context` (adapter, device, errors), `kernels` (WGSL sources in `wgsl/`, the
//! dispatch list), `upload` (weights → buffers, quantized blocks kept as they are),
//! `encoder` (bert.rs's forward pass on those kernels).

mod context;
mod encoder;
mod kernels;
mod upload;

pub use context::{AdapterSummary, Backend, GpuContext};
pub use encoder::{GpuBert, GpuOutput};

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
