//! `GpuBert`: model/bert.rs's forward pass lowered onto the WGSL kernels.
//!
//! Not a second model definition: it reads the same canonical weight names and runs the
//! same steps in the same order (embeddings + LayerNorm; per layer attention, output
//! projection, residual + LayerNorm, intermediate + activation, output, residual +
//! LayerNorm; [CLS] → pooler → classifier), and tests/webgpu.rs holds it to the CPU
//! path's numbers. The two fusions are exact rewrites: query/key/value as one matmul, and
//! the attention scores kept in workgroup memory.

use std::sync::Mutex;

use super::context::GpuContext;
use super::kernels::{row_grid, Activation, Dispatches, Kernels, P, PARAMS_STRIDE};
use super::upload::GpuMatrix;
use crate::error::{Error, Result};
use crate::model::{BertConfig, HeadFeatures, Weights};
use crate::pipeline::encode::pad;
use crate::pipeline::pool::Pooling;

/// What a forward pass hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuOutput {
    /// Last hidden states, [batch, seq_len, hidden].
    Hidden,
    /// One vector per sequence, [batch, hidden].
    Pooled { pooling: Pooling, normalize: bool },
    /// The classification head's logits, [batch, outputs].
    Logits,
}

struct GpuLinear {
    weight: GpuMatrix,
    bias: wgpu::Buffer,
}

struct Norm {
    gamma: wgpu::Buffer,
    beta: wgpu::Buffer,
}

struct GpuLayer {
    qkv: GpuLinear,
    attention_output: GpuLinear,
    attention_norm: Norm,
    intermediate: GpuLinear,
    output: GpuLinear,
    output_norm: Norm,
}

struct GpuHead {
    features: HeadFeatures,
    /// Only when the features go through it.
    pooler: Option<GpuLinear>,
    classifier: GpuLinear,
}

/// Activation buffers, kept between calls and grown when a batch needs more.
struct Scratch {
    tokens: usize,
    batch: usize,
    ids: wgpu::Buffer,
    mask: wgpu::Buffer,
    hidden: wgpu::Buffer,
    attended: wgpu::Buffer,
    qkv: wgpu::Buffer,
    context: wgpu::Buffer,
    projected: wgpu::Buffer,
    inner: wgpu::Buffer,
    pooled: wgpu::Buffer,
    pooler_out: wgpu::Buffer,
    logits: wgpu::Buffer,
}

pub struct GpuBert {
    ctx: GpuContext,
    kernels: Kernels,
    config: BertConfig,
    word_embeddings: GpuMatrix,
    position_embeddings: wgpu::Buffer,
    token_type_row: wgpu::Buffer,
    embedding_norm: Norm,
    layers: Vec<GpuLayer>,
    head: Option<GpuHead>,
    head_outputs: usize,
    params: wgpu::Buffer,
    scratch: Mutex<Option<Scratch>>,
}

impl std::fmt::Debug for GpuBert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuBert").field("adapter", &self.ctx.adapter).field("layers", &self.layers.len()).finish()
    }
}

/// Largest head size attention.wgsl keeps in workgroup memory.
const MAX_HEAD_DIM: usize = 256;
/// Longest sequence attention.wgsl keeps a score row for (32 KiB of workgroup memory).
const MAX_SEQ: usize = 4096;

fn f32s(weights: &Weights, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    Ok(weights.get_f32(name, shape)?.flatten_all()?.to_vec1::<f32>()?)
}

impl GpuBert {
    /// Uploads the encoder (and the head, when `head_spec` gives its outputs and features) to `ctx`.
    pub async fn load(
        ctx: GpuContext,
        w: &Weights,
        c: &BertConfig,
        head_spec: Option<(usize, HeadFeatures)>,
    ) -> Result<Self> {
        c.validate()?;
        if c.head_dim() > MAX_HEAD_DIM || c.max_positions() > MAX_SEQ {
            return Err(Error::Gpu(format!(
                "head size {} / {} positions exceed the kernels' {MAX_HEAD_DIM} / {MAX_SEQ}",
                c.head_dim(),
                c.max_positions()
            )));
        }
        let kernels = Kernels::new(&ctx, c.max_positions()).await?;
        let ctx2 = ctx.clone();
        let parts = ctx.scoped("uploading the weights", move || Self::upload(&ctx2, w, c, head_spec)).await??;
        let (word_embeddings, position_embeddings, token_type_row, embedding_norm, layers, head) = parts;
        // One parameter slot per dispatch: embeddings, 7 per layer, pooling and the head.
        let slots = 1 + 7 * c.num_hidden_layers as u64 + 4;
        let params = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: slots * PARAMS_STRIDE,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Self {
            ctx,
            kernels,
            config: c.clone(),
            word_embeddings,
            position_embeddings,
            token_type_row,
            embedding_norm,
            layers,
            head,
            head_outputs: head_spec.map_or(0, |(outputs, _)| outputs),
            params,
            scratch: Mutex::new(None),
        })
    }

    #[allow(clippy::type_complexity)]
    fn upload(
        ctx: &GpuContext,
        w: &Weights,
        c: &BertConfig,
        head: Option<(usize, HeadFeatures)>,
    ) -> Result<(GpuMatrix, wgpu::Buffer, wgpu::Buffer, Norm, Vec<GpuLayer>, Option<GpuHead>)> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let norm = |prefix: &str| -> Result<Norm> {
            Ok(Norm {
                gamma: ctx.upload_f32(prefix, &f32s(w, &format!("{prefix}.weight"), &[h])?)?,
                beta: ctx.upload_f32(prefix, &f32s(w, &format!("{prefix}.bias"), &[h])?)?,
            })
        };
        // Rows of several linears stacked into one (query | key | value).
        let linear = |prefixes: &[String], rows: usize, cols: usize| -> Result<GpuLinear> {
            let names: Vec<String> = prefixes.iter().map(|p| format!("{p}.weight")).collect();
            let parts = names.iter().map(|n| Ok((n.as_str(), w.get(n, &[rows, cols])?))).collect::<Result<Vec<_>>>()?;
            let weight = ctx.upload_matrix(&prefixes[0], &parts)?;
            let mut bias = Vec::with_capacity(rows * prefixes.len());
            for p in prefixes {
                let name = format!("{p}.bias");
                if w.contains(&name) {
                    bias.extend(f32s(w, &name, &[rows])?);
                } else {
                    bias.extend(std::iter::repeat_n(0.0, rows));
                }
            }
            Ok(GpuLinear { weight, bias: ctx.upload_f32(&prefixes[0], &bias)? })
        };

        let word = w.get("embeddings.word_embeddings.weight", &[c.vocab_size, h])?;
        let word_embeddings = ctx.upload_matrix("word_embeddings", &[("embeddings.word_embeddings.weight", word)])?;
        let positions = f32s(w, "embeddings.position_embeddings.weight", &[c.max_position_embeddings, h])?;
        // From RoBERTa's first position on (see `Bert`'s embeddings): position i is row i.
        let positions = &positions[c.position_offset() * h..];
        let token_types = f32s(w, "embeddings.token_type_embeddings.weight", &[c.type_vocab_size, h])?;
        let position_embeddings = ctx.upload_f32("position_embeddings", positions)?;
        let token_type_row = ctx.upload_f32("token_type_embeddings", &token_types[..h])?;
        let embedding_norm = norm("embeddings.LayerNorm")?;

        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let qkv = ["query", "key", "value"].map(|n| format!("{p}.attention.self.{n}"));
            layers.push(GpuLayer {
                qkv: linear(&qkv, h, h)?,
                attention_output: linear(&[format!("{p}.attention.output.dense")], h, h)?,
                attention_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                intermediate: linear(&[format!("{p}.intermediate.dense")], i, h)?,
                output: linear(&[format!("{p}.output.dense")], h, i)?,
                output_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let (pooler_name, output_name) = c.architecture().sequence_head_names();
        let head = match head {
            None => None,
            Some((n, features)) => Some(GpuHead {
                features,
                pooler: if features == HeadFeatures::Pooler && w.contains(&format!("{pooler_name}.weight")) {
                    Some(linear(&[pooler_name.to_string()], h, h)?)
                } else {
                    None
                },
                classifier: linear(&[output_name.to_string()], n, h)?,
            }),
        };
        Ok((word_embeddings, position_embeddings, token_type_row, embedding_norm, layers, head))
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    fn buffer(&self, label: &str, bytes: usize, extra: wgpu::BufferUsages) -> wgpu::Buffer {
        self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | extra,
            mapped_at_creation: false,
        })
    }

    fn scratch(&self, tokens: usize, batch: usize) -> Scratch {
        let (h, i) = (self.config.hidden_size, self.config.intermediate_size);
        let f = std::mem::size_of::<f32>();
        let copy_dst = wgpu::BufferUsages::COPY_DST;
        let none = wgpu::BufferUsages::empty();
        Scratch {
            tokens,
            batch,
            ids: self.buffer("ids", tokens * 4, copy_dst),
            mask: self.buffer("mask", tokens * f, copy_dst),
            hidden: self.buffer("hidden", tokens * h * f, none),
            attended: self.buffer("attended", tokens * h * f, none),
            qkv: self.buffer("qkv", tokens * 3 * h * f, none),
            context: self.buffer("context", tokens * h * f, none),
            projected: self.buffer("projected", tokens * h * f, none),
            inner: self.buffer("inner", tokens * i * f, none),
            pooled: self.buffer("pooled", batch * h * f, none),
            pooler_out: self.buffer("pooler_out", batch * h * f, none),
            logits: self.buffer("logits", batch * self.head_outputs.max(1) * f, none),
        }
    }

    fn linear<'a>(
        &'a self,
        d: &mut Dispatches<'a>,
        layer: &'a GpuLinear,
        x: &'a wgpu::Buffer,
        y: &'a wgpu::Buffer,
        rows: usize,
        activation: Activation,
    ) {
        let m = &layer.weight;
        let mut buffers = m.bindings();
        buffers.extend([(1, x), (4, &layer.bias), (5, y)]);
        let grid = (m.rows.div_ceil(64) as u32, rows.div_ceil(64) as u32, 1);
        d.add(
            self.kernels.matmul(m.format),
            &[P::U(rows), P::U(m.rows), P::U(m.cols), P::U(activation as usize)],
            &buffers,
            grid,
        );
    }

    /// Runs a batch of token-id windows (padded here to the longest) and returns `output`
    /// as a flat row-major vector.
    pub async fn run(&self, batch: &[&[u32]], pad_id: u32, output: GpuOutput) -> Result<Vec<f32>> {
        self.ctx.check()?;
        let padded = pad(batch, pad_id);
        let (b, seq_len) = (batch.len(), padded.seq_len);
        let tokens = b * seq_len;
        if tokens == 0 {
            return Ok(Vec::new());
        }
        let c = &self.config;
        if seq_len > c.max_positions() {
            return Err(Error::Window(format!(
                "a window of {seq_len} tokens is longer than the model's {} positions",
                c.max_positions()
            )));
        }
        if output == GpuOutput::Logits && self.head.is_none() {
            return Err(Error::Gpu("this model has no classification head".into()));
        }
        let h = c.hidden_size;
        self.ensure_scratch(tokens, b).await?;
        // Hold the scratch lock only while recording and submitting: the read below awaits,
        // and another call may start meanwhile (the queue keeps the two in order).
        let (result, bytes) = {
            let slot = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
            let s = slot
                .as_ref()
                .filter(|s| s.tokens >= tokens && s.batch >= b)
                .ok_or_else(|| Error::Gpu("activation buffers were resized by a concurrent call".into()))?;
            self.ctx.queue.write_buffer(&s.ids, 0, bytemuck::cast_slice(&padded.ids));
            self.ctx.queue.write_buffer(&s.mask, 0, bytemuck::cast_slice(&padded.mask));

            let mut d = Dispatches::new(&self.ctx, &self.params);
            let word = &self.word_embeddings;
            let mut buffers = word.bindings();
            buffers.extend([
                (1, &s.ids),
                (4, &self.position_embeddings),
                (5, &self.token_type_row),
                (6, &self.embedding_norm.gamma),
                (7, &self.embedding_norm.beta),
                (8, &s.hidden),
            ]);
            let eps = c.layer_norm_eps as f32;
            d.add(
                self.kernels.embed(word.format),
                &[P::U(tokens), P::U(seq_len), P::U(h), P::U(c.vocab_size), P::F(eps)],
                &buffers,
                row_grid(tokens),
            );
            let scale = 1.0 / (c.head_dim() as f32).sqrt();
            let activation = Activation::from(c.hidden_act);
            for layer in &self.layers {
                self.linear(&mut d, &layer.qkv, &s.hidden, &s.qkv, tokens, Activation::None);
                d.add(
                    &self.kernels.attention,
                    &[P::U(seq_len), P::U(c.num_attention_heads), P::U(c.head_dim()), P::U(h), P::F(scale)],
                    &[(1, &s.qkv), (2, &s.mask), (3, &s.context)],
                    (seq_len as u32, c.num_attention_heads as u32, b as u32),
                );
                self.linear(&mut d, &layer.attention_output, &s.context, &s.projected, tokens, Activation::None);
                self.norm(&mut d, &layer.attention_norm, &s.projected, &s.hidden, &s.attended, tokens);
                self.linear(&mut d, &layer.intermediate, &s.attended, &s.inner, tokens, activation);
                self.linear(&mut d, &layer.output, &s.inner, &s.projected, tokens, Activation::None);
                self.norm(&mut d, &layer.output_norm, &s.projected, &s.attended, &s.hidden, tokens);
            }
            let pooling = match output {
                GpuOutput::Hidden => None,
                GpuOutput::Pooled { pooling, normalize } => Some((pooling, normalize)),
                GpuOutput::Logits => {
                    let head = self.head.as_ref().ok_or_else(|| Error::Gpu("no head".into()))?;
                    Some((head.features.pooling(), false))
                }
            };
            if let Some((pooling, normalize)) = pooling {
                let mode = match pooling {
                    Pooling::Cls => 0,
                    Pooling::Mean => 1,
                };
                d.add(
                    &self.kernels.pool,
                    &[P::U(b), P::U(seq_len), P::U(h), P::U(mode), P::U(usize::from(normalize))],
                    &[(1, &s.hidden), (2, &s.mask), (3, &s.pooled)],
                    (b as u32, 1, 1),
                );
            }
            let result = match output {
                GpuOutput::Hidden => (s.hidden.clone(), tokens * h),
                GpuOutput::Pooled { .. } => (s.pooled.clone(), b * h),
                GpuOutput::Logits => {
                    let head = self.head.as_ref().ok_or_else(|| Error::Gpu("no head".into()))?;
                    let features = match &head.pooler {
                        Some(pooler) => {
                            self.linear(&mut d, pooler, &s.pooled, &s.pooler_out, b, Activation::Tanh);
                            &s.pooler_out
                        }
                        None => &s.pooled,
                    };
                    self.linear(&mut d, &head.classifier, features, &s.logits, b, Activation::None);
                    (s.logits.clone(), b * self.head_outputs)
                }
            };
            d.submit();
            result
        };
        let mut values = self.ctx.read_f32(&result, (bytes * 4) as u64).await?;
        values.truncate(bytes);
        Ok(values)
    }

    /// Makes sure the activation buffers hold `tokens` tokens in `batch` sequences,
    /// catching a failed allocation as an error.
    async fn ensure_scratch(&self, tokens: usize, batch: usize) -> Result<()> {
        let need = {
            let slot = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some(s) if s.tokens >= tokens && s.batch >= batch => None,
                Some(s) => Some((s.tokens.max(tokens), s.batch.max(batch))),
                None => Some((tokens, batch)),
            }
        };
        if let Some((tokens, batch)) = need {
            let fresh = self.ctx.scoped("allocating activation buffers", || self.scratch(tokens, batch)).await?;
            let mut slot = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
            // Another call may have grown it meanwhile: keep the larger.
            if slot.as_ref().is_none_or(|s| s.tokens < fresh.tokens || s.batch < fresh.batch) {
                *slot = Some(fresh);
            }
        }
        Ok(())
    }

    fn norm<'a>(
        &'a self,
        d: &mut Dispatches<'a>,
        norm: &'a Norm,
        a: &'a wgpu::Buffer,
        b: &'a wgpu::Buffer,
        y: &'a wgpu::Buffer,
        rows: usize,
    ) {
        d.add(
            &self.kernels.layer_norm,
            &[P::U(rows), P::U(self.config.hidden_size), P::F(self.config.layer_norm_eps as f32)],
            &[(1, a), (2, b), (3, &norm.gamma), (4, &norm.beta), (5, y)],
            row_grid(rows),
        );
    }
}
