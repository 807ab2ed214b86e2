//! The wgpu device the kernels run on: adapter choice, limits, and the error plumbing that
//! turns wgpu's failures (validation, out of memory, device lost) into `Error::Gpu` values
//! instead of wgpu's default panic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::error::{Error, Result};

/// What the page or CLI asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// WebGPU when a hardware adapter exists and its limits fit the model; else the CPU.
    #[default]
    Auto,
    /// WebGPU on whatever adapter there is (software ones included), or an error.
    WebGpu,
    Cpu,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "webgpu" | "gpu" => Ok(Backend::WebGpu),
            "cpu" | "wasm" => Ok(Backend::Cpu),
            other => Err(Error::InvalidArgument {
                field: "backend".into(),
                message: format!("unknown backend {other:?}: use auto, webgpu or cpu"),
            }),
        }
    }
}

/// The adapter in use, for messages and bench tables.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    /// A CPU implementation of the API (lavapipe, SwiftShader, WARP): correct but slower
    /// than the runtime's own CPU path, so `auto` does not pick it.
    pub software: bool,
    pub max_binding_bytes: u64,
}

/// A device and queue, plus what went wrong on them since the last check.
#[derive(Clone)]
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    lost: Arc<AtomicBool>,
    uncaptured: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext").field("adapter", &self.adapter).finish()
    }
}

fn instance() -> wgpu::Instance {
    #[cfg(target_arch = "wasm32")]
    let descriptor = wgpu::InstanceDescriptor {
        backends: wgpu::Backends::BROWSER_WEBGPU,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    };
    // Natively honour WGPU_BACKEND / WGPU_ADAPTER_NAME so a run can pick its driver.
    #[cfg(not(target_arch = "wasm32"))]
    let descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    wgpu::Instance::new(descriptor)
}

impl GpuContext {
    /// Opens the best adapter there is and a device with the adapter's own limits (the
    /// defaults cap storage bindings at 128 MiB, below BERT-base's embedding table).
    pub async fn new() -> Result<Self> {
        let adapter = instance()
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("no WebGPU adapter ({e})")))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("bedside"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("the adapter {:?} refused a device ({e})", info.name)))?;

        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        device.set_device_lost_callback(move |_reason, _message| flag.store(true, Ordering::SeqCst));
        // wgpu panics on errors nobody captured; keep the first one for the next check.
        let uncaptured = Arc::new(Mutex::new(None));
        let slot = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));

        let software = info.device_type == wgpu::DeviceType::Cpu;
        let adapter = AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend).to_lowercase(),
            device_type: format!("{:?}", info.device_type),
            software,
            max_binding_bytes: limits.max_storage_buffer_binding_size.min(limits.max_buffer_size),
        };
        Ok(Self { device, queue, adapter, lost, uncaptured })
    }

    /// An error if the device was lost or something failed outside an error scope.
    pub(crate) fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::Gpu("the device was lost".into()));
        }
        let slot = self.uncaptured.lock().unwrap_or_else(|p| p.into_inner()).take();
        match slot {
            Some(message) => Err(Error::Gpu(message)),
            None => Ok(()),
        }
    }

    /// Runs `f` inside out-of-memory and validation error scopes: a failed allocation or
    /// a rejected shader becomes an `Err`, not a panic.
    pub(crate) async fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let invalid = validation.pop().await;
        let out_of_memory = oom.pop().await;
        if let Some(e) = out_of_memory {
            return Err(Error::Gpu(format!("out of memory while {what}: {e}")));
        }
        if let Some(e) = invalid {
            return Err(Error::Gpu(format!("{what}: {e}")));
        }
        self.check()?;
        Ok(value)
    }

    /// Copies `size` bytes of `source` back to the CPU (waits for queued work).
    pub(crate) async fn read_f32(&self, source: &wgpu::Buffer, size: u64) -> Result<Vec<f32>> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(source, 0, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        let (sender, receiver) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            let _ = sender.send(result);
        });
        // Natively nothing drives the callback unless we wait; the browser drives it.
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))?;
        let mapped = receiver.await.map_err(|_| Error::Gpu("the device dropped a read".into()))?;
        mapped.map_err(|e| Error::Gpu(format!("reading results back: {e}")))?;
        let values = {
            let view = staging.get_mapped_range(..).map_err(|e| Error::Gpu(format!("reading results back: {e}")))?;
            bytemuck::pod_collect_to_vec::<u8, f32>(&view)
        };
        staging.unmap();
        self.check()?;
        Ok(values)
    }
}
