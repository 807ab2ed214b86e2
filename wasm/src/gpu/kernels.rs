//! The WGSL kernels, compiled once per model, and the dispatch list a forward pass fills.

use std::num::NonZeroU64;

use super::context::GpuContext;
use crate::error::Result;
use crate::model::Activation as ModelActivation;

const WEIGHTS_F32: &str = include_str!("wgsl/weights_f32.wgsl");
const WEIGHTS_F16: &str = include_str!("wgsl/weights_f16.wgsl");
const WEIGHTS_Q8_0: &str = include_str!("wgsl/weights_q8_0.wgsl");
const WEIGHTS_Q4_0: &str = include_str!("wgsl/weights_q4_0.wgsl");
const ACTIVATION: &str = include_str!("wgsl/activation.wgsl");
const REDUCE: &str = include_str!("wgsl/reduce.wgsl");
const NORMALIZE_ROW: &str = include_str!("wgsl/normalize_row.wgsl");
const MATMUL: &str = include_str!("wgsl/matmul.wgsl");
const EMBED: &str = include_str!("wgsl/embed.wgsl");
const LAYER_NORM: &str = include_str!("wgsl/layer_norm.wgsl");
const ATTENTION: &str = include_str!("wgsl/attention.wgsl");
const POOL: &str = include_str!("wgsl/pool.wgsl");

/// Bytes between two dispatches' parameters in the shared uniform buffer (WebGPU's
/// minimum uniform offset alignment).
pub(crate) const PARAMS_STRIDE: u64 = 256;
const PARAMS_BYTES: u64 = 32;

/// How a weight matrix sits in GPU memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    F32,
    F16,
    Q8_0,
    Q4_0,
}

const FORMATS: [WeightFormat; 4] = [WeightFormat::F32, WeightFormat::F16, WeightFormat::Q8_0, WeightFormat::Q4_0];

impl WeightFormat {
    fn index(self) -> usize {
        self as usize
    }

    fn source(self) -> &'static str {
        match self {
            WeightFormat::F32 => WEIGHTS_F32,
            WeightFormat::F16 => WEIGHTS_F16,
            WeightFormat::Q8_0 => WEIGHTS_Q8_0,
            WeightFormat::Q4_0 => WEIGHTS_Q4_0,
        }
    }
}

/// Activation codes shared with activation.wgsl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None = 0,
    Gelu = 1,
    GeluTanh = 2,
    Relu = 3,
    Tanh = 4,
}

impl From<ModelActivation> for Activation {
    fn from(a: ModelActivation) -> Self {
        match a {
            ModelActivation::Gelu => Activation::Gelu,
            ModelActivation::GeluApproximate => Activation::GeluTanh,
            ModelActivation::Relu => Activation::Relu,
        }
    }
}

pub(crate) struct Kernels {
    matmul: [wgpu::ComputePipeline; 4],
    embed: [wgpu::ComputePipeline; 4],
    pub layer_norm: wgpu::ComputePipeline,
    pub attention: wgpu::ComputePipeline,
    pub pool: wgpu::ComputePipeline,
}

fn pipeline(ctx: &GpuContext, label: &str, parts: &[&str]) -> wgpu::ComputePipeline {
    let source: String = parts.join("\n");
    let module = ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    })
}

impl Kernels {
    /// Compiles every kernel; `max_seq` sizes attention's score row in workgroup memory.
    pub async fn new(ctx: &GpuContext, max_seq: usize) -> Result<Self> {
        let max_seq = format!("const MAX_SEQ: u32 = {max_seq}u;");
        ctx.scoped("compiling the kernels", || Kernels {
            matmul: FORMATS.map(|f| pipeline(ctx, "matmul", &[f.source(), ACTIVATION, MATMUL])),
            embed: FORMATS.map(|f| pipeline(ctx, "embed", &[f.source(), REDUCE, NORMALIZE_ROW, EMBED])),
            layer_norm: pipeline(ctx, "layer_norm", &[REDUCE, NORMALIZE_ROW, LAYER_NORM]),
            attention: pipeline(ctx, "attention", &[&max_seq, REDUCE, ATTENTION]),
            pool: pipeline(ctx, "pool", &[REDUCE, POOL]),
        })
        .await
    }

    pub fn matmul(&self, format: WeightFormat) -> &wgpu::ComputePipeline {
        &self.matmul[format.index()]
    }

    pub fn embed(&self, format: WeightFormat) -> &wgpu::ComputePipeline {
        &self.embed[format.index()]
    }
}

/// Workgroup grid for `rows` one-workgroup-per-row dispatches (rows past 65 535 wrap into y).
pub(crate) fn row_grid(rows: usize) -> (u32, u32, u32) {
    let rows = rows as u32;
    if rows <= 65_535 {
        (rows, 1, 1)
    } else {
        (65_535, rows.div_ceil(65_535), 1)
    }
}

/// The dispatches of one forward pass: each with its parameters (packed into one uniform
/// buffer written once) and its bind group. Encoded into a single compute pass.
pub(crate) struct Dispatches<'a> {
    ctx: &'a GpuContext,
    params_buffer: &'a wgpu::Buffer,
    params: Vec<u8>,
    steps: Vec<(&'a wgpu::ComputePipeline, wgpu::BindGroup, (u32, u32, u32))>,
}

/// A dispatch parameter: u32 or f32, both 4 bytes in the uniform struct.
#[derive(Clone, Copy)]
pub(crate) enum P {
    U(usize),
    F(f32),
}

impl<'a> Dispatches<'a> {
    pub fn new(ctx: &'a GpuContext, params_buffer: &'a wgpu::Buffer) -> Self {
        Self { ctx, params_buffer, params: Vec::new(), steps: Vec::new() }
    }

    /// Queues `pipeline` over `grid` workgroups with uniform `params` at binding 0 and
    /// `buffers` at their binding numbers.
    pub fn add(
        &mut self,
        pipeline: &'a wgpu::ComputePipeline,
        params: &[P],
        buffers: &[(u32, &wgpu::Buffer)],
        grid: (u32, u32, u32),
    ) {
        let offset = self.params.len() as u64;
        for p in params {
            let word = match *p {
                P::U(v) => v as u32,
                P::F(v) => v.to_bits(),
            };
            self.params.extend_from_slice(&word.to_le_bytes());
        }
        self.params.resize((offset + PARAMS_STRIDE) as usize, 0);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: self.params_buffer,
                offset,
                size: NonZeroU64::new(PARAMS_BYTES),
            }),
        }];
        entries.extend(
            buffers.iter().map(|(binding, buffer)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: buffer.as_entire_binding(),
            }),
        );
        let bind_group = self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        self.steps.push((pipeline, bind_group, grid));
    }

    /// Writes the parameters and submits every dispatch in order.
    pub fn submit(self) {
        self.ctx.queue.write_buffer(self.params_buffer, 0, &self.params);
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for (pipeline, bind_group, (x, y, z)) in &self.steps {
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, bind_group, &[]);
                pass.dispatch_workgroups(*x, *y, *z);
            }
        }
        self.ctx.queue.submit([encoder.finish()]);
    }
}
