//! `Model`: the public face of the runtime. Bytes (or a checkpoint directory) in;
//! embeddings and predictions out. Calls the pipeline steps in order:
//! tokenize → window → encode → pool / head → aggregate (sequence heads) or entities (token
//! heads) → redact (de-identification).

use candle_core::{Tensor, D};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::bundle::{self, Manifest, Task};
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::{AdapterSummary, Backend, GpuBert, GpuContext, GpuOutput};
use crate::model::{Bert, Head, QuantizedMatmul, SequenceHead, TokenHead, Weights};
use crate::pipeline::encode::encode;
use crate::pipeline::entities::{self, token_probabilities, Entity, EntityAggregation, ScoredToken};
use crate::pipeline::pool::{normalize, pool};
use crate::pipeline::redact::{redact, Redacted};
use crate::pipeline::scrub::{Scrubbed, Scrubber};
use crate::pipeline::tokenize::TextTokenizer;
use crate::pipeline::window::{self, Window, WindowSpec};

/// Windows run through the encoder at once. Bounds memory for long notes: activations
/// grow with batch × window² (attention), not with note length.
pub const WINDOW_BATCH: usize = 8;
/// Texts embedded per forward pass.
pub const EMBED_BATCH: usize = 16;

/// Probabilities keyed by label, serialised as a JSON object in label order.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelScores(pub Vec<(String, f32)>);

impl LabelScores {
    pub fn get(&self, label: &str) -> Option<f32> {
        self.0.iter().find(|(l, _)| l == label).map(|(_, p)| *p)
    }
}

impl Serialize for LabelScores {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (label, p) in &self.0 {
            map.serialize_entry(label, p)?;
        }
        map.end()
    }
}

/// One window of a note and what the model made of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chunk {
    pub index: usize,
    /// Byte range of the note (UTF-8) this window covers.
    pub start: usize,
    pub end: usize,
    pub num_tokens: usize,
    /// This window's probability for the note's predicted label: the highest-scoring
    /// chunk is the passage that drove the prediction.
    pub score: f32,
    pub probabilities: LabelScores,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The predicted label (multi-label: the most probable one).
    pub label: String,
    /// Probability of `label` (binary: of the decided outcome).
    pub score: f32,
    pub probabilities: LabelScores,
    /// Every label at or above the decision threshold (multi-label); `[label]` otherwise.
    pub labels: Vec<String>,
    /// `score` is below the bundle's `min_confidence`: a human should look.
    pub uncertain: bool,
    pub chunks: Vec<Chunk>,
}

/// Why the model runs on the CPU although WebGPU was asked for: a sentence for people, and the
/// technical reason.
#[derive(Debug, Clone)]
struct BackendNote {
    plain: &'static str,
    detail: String,
}

const NO_GPU: &str = "No GPU is available here, so the model runs on the CPU.";
const SOFTWARE_GPU: &str = "Only a software GPU is available here, slower than the CPU, so the model runs on the CPU.";
const GPU_TOO_SMALL: &str = "The GPU here cannot hold this model, so it runs on the CPU.";
const GPU_STOPPED: &str = "The GPU stopped working, so the model switched to the CPU.";

#[derive(Debug, Clone)]
pub struct Model {
    manifest: Manifest,
    tokenizer: TextTokenizer,
    bert: Bert,
    head: Option<Head>,
    window: WindowSpec,
    /// The manifest's `scrub`: the model was trained on scrubbed text, so notes are scrubbed
    /// the same way before it reads them ([`Model::model_text`]).
    scrubber: Option<Scrubber>,
    /// The WebGPU copy of the encoder, while it is in use. The CPU one above stays: it is
    /// where a lost device or a failed allocation falls back to.
    gpu: Arc<Mutex<Option<Arc<GpuBert>>>>,
    /// Why the model is not (or no longer) on WebGPU, when it was asked to be.
    backend_note: Arc<Mutex<Option<BackendNote>>>,
    /// Set when loaded from bundle bytes.
    provenance: Option<Provenance>,
}

/// What a bundle says about itself, after its checksum was verified.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Provenance {
    /// "sha256:…", recomputed by the runtime and equal to the stored one.
    pub checksum: String,
    /// `general.name`.
    pub name: String,
    /// Whether the checksum covers `name` (format 3 on) or only manifest, tokenizer and tensors.
    pub coverage: bundle::ChecksumCoverage,
    pub format_version: u32,
}

/// A note as the model reads it: the note itself, or the note scrubbed as the model's
/// training text was (see [`Model::model_text`]).
enum ModelText<'a> {
    Note(&'a str),
    Scrubbed(Scrubbed),
}

impl ModelText<'_> {
    fn as_str(&self) -> &str {
        match self {
            ModelText::Note(text) => text,
            ModelText::Scrubbed(scrubbed) => &scrubbed.text,
        }
    }

    /// A byte span of [`ModelText::as_str`] → the span of the note it came from. A span that
    /// touches a placeholder covers all of the text the placeholder replaced.
    fn to_note_span(&self, start: usize, end: usize) -> (usize, usize) {
        match self {
            ModelText::Note(_) => (start, end),
            ModelText::Scrubbed(scrubbed) => scrubbed.to_original_span(start, end),
        }
    }

    /// Entities found in [`ModelText::as_str`], with spans into the note. Pieces of one
    /// placeholder (`[`, `date`, `]`) map to the same span: consecutive entities with the
    /// same label and span become one, with the highest score.
    fn entities_in_note(&self, found: Vec<Entity>) -> Vec<Entity> {
        if let ModelText::Note(_) = self {
            return found;
        }
        let mut out: Vec<Entity> = Vec::with_capacity(found.len());
        for mut entity in found {
            (entity.start, entity.end) = self.to_note_span(entity.start, entity.end);
            match out.last_mut() {
                Some(last) if (last.start, last.end, &last.label) == (entity.start, entity.end, &entity.label) => {
                    last.score = last.score.max(entity.score);
                }
                _ => out.push(entity),
            }
        }
        out
    }
}

/// Runs a runtime future to completion on the calling thread. Natively that may wait for
/// the GPU; in wasm the page cannot block, so a future that would have to wait (WebGPU)
/// is an error pointing at the async API, and the CPU path (always ready) just runs.
pub fn block_on<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        pollster::block_on(future)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(value) => value,
            std::task::Poll::Pending => {
                Err(Error::Gpu("this model runs on WebGPU: use the async calls (embedAsync, classifyAsync)".into()))
            }
        }
    }
}

impl Model {
    /// Loads a bundle (the bytes of a `.gguf` file made by `bedside export`).
    pub fn load(bytes: &[u8]) -> Result<Self> {
        block_on(Self::load_pinned(bytes, Backend::Cpu, QuantizedMatmul::default(), None))
    }

    /// Loads a bundle and puts its encoder on `backend` (see [`Model::from_parts_on`]).
    pub async fn load_on(bytes: &[u8], backend: Backend) -> Result<Self> {
        Self::load_with(bytes, backend, QuantizedMatmul::default()).await
    }

    /// [`Model::load_on`], choosing how the CPU path multiplies by q8_0/q4_0 weights:
    /// integer kernels (the default, fast) or dequantized f32 (the reference numerics, which
    /// the WebGPU backend also computes).
    pub async fn load_with(bytes: &[u8], backend: Backend, quantized_matmul: QuantizedMatmul) -> Result<Self> {
        Self::load_pinned(bytes, backend, quantized_matmul, None).await
    }

    /// [`Model::load_with`], refusing any bundle whose checksum is not `pin`.
    pub async fn load_pinned(
        bytes: &[u8],
        backend: Backend,
        quantized_matmul: QuantizedMatmul,
        pin: Option<&bundle::Pin>,
    ) -> Result<Self> {
        let mut bundle = bundle::read_pinned(bytes, pin)?;
        bundle.weights.set_quantized_matmul(quantized_matmul);
        let mut model = Self::from_parts_on(bundle.manifest, &bundle.tokenizer_json, &bundle.weights, backend).await?;
        model.provenance = Some(Provenance {
            checksum: bundle.checksum,
            name: bundle.name,
            coverage: bundle.coverage,
            format_version: model.manifest.format_version,
        });
        Ok(model)
    }

    /// The verified checksum and name of the bundle this model was loaded from.
    pub fn provenance(&self) -> Option<&Provenance> {
        self.provenance.as_ref()
    }

    /// Loads a Hugging Face checkpoint directory (f32) onto `backend`.
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn from_checkpoint_dir_on(dir: &std::path::Path, backend: Backend) -> Result<Self> {
        let checkpoint = crate::checkpoint::Checkpoint::from_dir(dir)?;
        let manifest = checkpoint.default_manifest(bundle::Quantization::F32)?;
        Self::from_parts_on(manifest, &checkpoint.tokenizer_json, &checkpoint.weights, backend).await
    }

    /// [`Model::from_parts`], then the encoder on `backend`: `Cpu` stays on the CPU;
    /// `WebGpu` uploads to the adapter there is or fails; `Auto` uses WebGPU on a hardware
    /// adapter whose limits fit the model and otherwise stays on the CPU, saying why in
    /// [`Model::backend_note`].
    pub async fn from_parts_on(
        manifest: Manifest,
        tokenizer_json: &str,
        weights: &Weights,
        backend: Backend,
    ) -> Result<Self> {
        let model = Self::from_parts(manifest, tokenizer_json, weights)?;
        if backend == Backend::Cpu {
            return Ok(model);
        }
        // Each step's failure has its own plain sentence (the page shows it); the error is the
        // detail.
        let started = async {
            let ctx = GpuContext::new().await.map_err(|e| (NO_GPU, e))?;
            if backend == Backend::Auto && ctx.adapter.software {
                let detail = format!("only a software adapter ({}), slower than the CPU path", ctx.adapter.name);
                return Err((SOFTWARE_GPU, Error::Gpu(detail)));
            }
            // A token head runs on the CPU over the GPU's hidden states: one small matmul.
            let head = match &model.head {
                Some(Head::Sequence(h)) => Some((h.num_outputs(), h.head_features())),
                _ => None,
            };
            GpuBert::load(ctx, weights, &model.manifest.config, head).await.map_err(|e| (GPU_TOO_SMALL, e))
        };
        match started.await {
            Ok(gpu) => {
                // In wasm wgpu's handles are !Send; the page is single-threaded there.
                #[allow(clippy::arc_with_non_send_sync)]
                let gpu = Arc::new(gpu);
                *model.gpu.lock().unwrap_or_else(|p| p.into_inner()) = Some(gpu);
                Ok(model)
            }
            Err((plain, e)) if backend == Backend::Auto => {
                model.set_note(plain, e.to_string());
                Ok(model)
            }
            Err((_, e)) => Err(e),
        }
    }

    /// Builds a model from its parts; `weights` may be f32 or quantized.
    pub fn from_parts(manifest: Manifest, tokenizer_json: &str, weights: &Weights) -> Result<Self> {
        manifest.validate()?;
        let special = &manifest.special_tokens;
        let tokenizer = TextTokenizer::from_json(tokenizer_json, &special.cls, &special.sep, &special.pad)?;
        // Ids, not entries: a vocabulary with gaps can name an id past the table.
        tokenizer.check_fits(manifest.config.vocab_size, "the tokenizer")?;
        let bert = Bert::load(weights, &manifest.config)?;
        let head = match manifest.task {
            Task::Embedding => None,
            Task::TokenClassification => {
                Some(Head::Token(TokenHead::load(weights, &manifest.config, manifest.head_outputs)?))
            }
            _ => Some(Head::Sequence(SequenceHead::load(
                weights,
                &manifest.config,
                manifest.head_outputs,
                manifest.head_features,
            )?)),
        };
        // A bundle holds exactly the tensors its model reads (export writes `used_names`):
        // anything else is payload the checksum would vouch for but nothing checks.
        if weights.source_kind() == "bundle" {
            let unused = weights.unused_names();
            if let Some(first) = unused.first() {
                return Err(Error::BadBundle(format!(
                    "{} tensor(s) the model does not read, e.g. `{first}`",
                    unused.len()
                )));
            }
        }
        let window = WindowSpec::new(manifest.max_seq_len, manifest.stride)?;
        let scrubber = manifest.scrub.as_ref().map(|settings| settings.scrubber());
        #[allow(clippy::arc_with_non_send_sync)] // see `from_parts_on`
        Ok(Self {
            manifest,
            tokenizer,
            bert,
            head,
            window,
            scrubber,
            gpu: Arc::new(Mutex::new(None)),
            backend_note: Arc::new(Mutex::new(None)),
            provenance: None,
        })
    }

    /// "webgpu" or "cpu": where the encoder runs now.
    pub fn backend(&self) -> &'static str {
        if self.gpu().is_some() {
            "webgpu"
        } else {
            "cpu"
        }
    }

    /// The WebGPU adapter in use, if any.
    pub fn adapter(&self) -> Option<AdapterSummary> {
        self.gpu().map(|g| g.context().adapter.clone())
    }

    /// Why WebGPU is not in use although it was asked for, as one plain sentence a clinician
    /// can read ("No GPU is available here, so the model runs on the CPU.").
    pub fn backend_note(&self) -> Option<String> {
        self.note().map(|n| n.plain.to_string())
    }

    /// The technical reason behind [`Model::backend_note`] (the adapter, limit or driver
    /// message), for logs and developer tools.
    pub fn backend_detail(&self) -> Option<String> {
        self.note().map(|n| n.detail)
    }

    /// Whether the model left WebGPU mid-run (a lost device, a failed allocation).
    pub fn switched_to_cpu(&self) -> bool {
        self.note().is_some_and(|n| n.plain == GPU_STOPPED)
    }

    fn note(&self) -> Option<BackendNote> {
        self.backend_note.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Destroys the WebGPU device under the model, as a driver reset or a lost tab would:
    /// for tests of the fallback to the CPU.
    #[doc(hidden)]
    pub fn simulate_gpu_loss(&self) {
        if let Some(gpu) = self.gpu() {
            gpu.context().device.destroy();
        }
    }

    fn set_note(&self, plain: &'static str, detail: String) {
        *self.backend_note.lock().unwrap_or_else(|p| p.into_inner()) = Some(BackendNote { plain, detail });
    }

    fn gpu(&self) -> Option<Arc<GpuBert>> {
        self.gpu.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs `output` on WebGPU when it is in use. A GPU failure switches this model to
    /// the CPU for good (with a note) and returns `None`, so the caller computes there.
    async fn on_gpu(&self, batch: &[&[u32]], output: GpuOutput) -> Result<Option<Vec<f32>>> {
        let Some(gpu) = self.gpu() else { return Ok(None) };
        match gpu.run(batch, self.tokenizer.special_ids().pad, output).await {
            Ok(values) => Ok(Some(values)),
            Err(Error::Gpu(message)) => {
                *self.gpu.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.set_note(GPU_STOPPED, message);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Loads a Hugging Face checkpoint directory with its default manifest (f32).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_checkpoint_dir(dir: &std::path::Path) -> Result<Self> {
        let checkpoint = crate::checkpoint::Checkpoint::from_dir(dir)?;
        let manifest = checkpoint.default_manifest(bundle::Quantization::F32)?;
        Self::from_parts(manifest, &checkpoint.tokenizer_json, &checkpoint.weights)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// `text` as the model reads it: the note itself, or, when the manifest says the model
    /// was trained on scrubbed text, the note scrubbed the same way. Every text entry point
    /// goes through here, and maps the offsets it returns back with
    /// [`ModelText::to_note_span`]. A note that scrubs to nothing is `EmptyText` when it is
    /// tokenized.
    fn model_text<'a>(&self, text: &'a str) -> ModelText<'a> {
        match &self.scrubber {
            Some(scrubber) => ModelText::Scrubbed(scrubber.scrub(text)),
            None => ModelText::Note(text),
        }
    }

    /// The ids the encoder sees for `text` when embedding it: [CLS] … [SEP], truncated to
    /// the window like sentence-transformers does (after scrubbing, if the model was trained
    /// on scrubbed text).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let text = self.model_text(text);
        let tokens = self.tokenizer.tokenize(text.as_str(), 0)?;
        Ok(window::truncate(&tokens, self.window, self.tokenizer.special_ids()).ids)
    }

    /// One vector per text, in order. Texts longer than `max_seq_len` tokens are truncated
    /// (as sentence-transformers does); pooling and normalisation follow the manifest.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        block_on(self.embed_async(texts))
    }

    /// [`Model::embed`] on whichever backend the model runs on.
    pub async fn embed_async(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let special = self.tokenizer.special_ids();
        let mut windows = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let tokens = self.tokenizer.tokenize(self.model_text(text).as_str(), index)?;
            windows.push(window::truncate(&tokens, self.window, special).ids);
        }
        // Sort by length so each batch pads little; answers go back in input order.
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by_key(|&i| windows[i].len());
        let mut out = vec![Vec::new(); windows.len()];
        for chunk in order.chunks(EMBED_BATCH) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| windows[i].as_slice()).collect();
            let vectors = self.pooled(&batch).await?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    async fn pooled(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let output = GpuOutput::Pooled { pooling: self.manifest.pooling, normalize: self.manifest.normalize };
        if let Some(flat) = self.on_gpu(batch, output).await? {
            return Ok(flat.chunks(self.manifest.config.hidden_size).map(<[f32]>::to_vec).collect());
        }
        Ok(self.pooled_cpu(batch)?.to_vec2::<f32>()?)
    }

    fn pooled_cpu(&self, batch: &[&[u32]]) -> Result<Tensor> {
        let encoded = encode(&self.bert, batch, self.tokenizer.special_ids().pad)?;
        let pooled = pool(&encoded.hidden, &encoded.mask, self.manifest.pooling)?;
        if self.manifest.normalize {
            normalize(&pooled)
        } else {
            Ok(pooled)
        }
    }

    /// Classifies a note of any length: windows, per-window probabilities, aggregation.
    /// Chunk offsets are byte offsets into `text`, also when the model reads it scrubbed.
    pub fn classify(&self, text: &str) -> Result<Prediction> {
        block_on(self.classify_async(text))
    }

    /// [`Model::classify`] on whichever backend the model runs on.
    pub async fn classify_async(&self, text: &str) -> Result<Prediction> {
        let Some(Head::Sequence(head)) = &self.head else {
            return Err(Error::WrongTask {
                task: self.manifest.task.as_str().to_string(),
                operation: "classify",
                needs: "a classification, binary or multilabel bundle",
            });
        };
        let text = self.model_text(text);
        let tokens = self.tokenizer.tokenize(text.as_str(), 0)?;
        let windows = window::split(&tokens, self.window, self.tokenizer.special_ids());
        let mut window_probs = Vec::with_capacity(windows.len());
        for batch in windows.chunks(WINDOW_BATCH) {
            let ids: Vec<&[u32]> = batch.iter().map(|w| w.ids.as_slice()).collect();
            let logits = match self.on_gpu(&ids, GpuOutput::Logits).await? {
                Some(flat) => Tensor::from_vec(flat, (ids.len(), head.num_outputs()), &candle_core::Device::Cpu)?,
                None => {
                    let encoded = encode(&self.bert, &ids, self.tokenizer.special_ids().pad)?;
                    head.forward(&encoded.hidden, &encoded.mask)?
                }
            };
            window_probs.extend(self.probabilities(&logits)?);
        }
        let mut prediction = self.decide(&windows, window_probs);
        for chunk in &mut prediction.chunks {
            (chunk.start, chunk.end) = text.to_note_span(chunk.start, chunk.end);
        }
        Ok(prediction)
    }

    /// The token head, or the error a caller of `operation` gets from another model.
    fn token_head(&self, operation: &'static str) -> Result<&TokenHead> {
        match &self.head {
            Some(Head::Token(head)) => Ok(head),
            _ => Err(Error::WrongTask {
                task: self.manifest.task.as_str().to_string(),
                operation,
                needs: "a token-classification bundle",
            }),
        }
    }

    /// Token logits of a batch of windows: [window][position][label], specials included.
    async fn window_token_logits(&self, head: &TokenHead, batch: &[&[u32]]) -> Result<Vec<Vec<Vec<f32>>>> {
        let hidden = match self.on_gpu(batch, GpuOutput::Hidden).await? {
            Some(flat) => {
                let seq = batch.iter().map(|w| w.len()).max().unwrap_or(0);
                Tensor::from_vec(flat, (batch.len(), seq, self.manifest.config.hidden_size), &candle_core::Device::Cpu)?
            }
            None => encode(&self.bert, batch, self.tokenizer.special_ids().pad)?.hidden,
        };
        Ok(head.forward(&hidden)?.to_vec3::<f32>()?)
    }

    /// The logits of the first window of `text` (as a short text is, the whole of it), one
    /// row per position, [CLS]/`<s>` and [SEP]/`</s>` rows included: what transformers'
    /// `AutoModelForTokenClassification` returns for `tokenizer(text)`.
    pub async fn token_logits_async(&self, text: &str) -> Result<Vec<Vec<f32>>> {
        let head = self.token_head("token_logits")?;
        let text = self.model_text(text);
        let tokens = self.tokenizer.tokenize(text.as_str(), 0)?;
        let window = window::truncate(&tokens, self.window, self.tokenizer.special_ids());
        let mut rows = self.window_token_logits(head, &[window.ids.as_slice()]).await?;
        let mut rows = rows.pop().unwrap_or_default();
        rows.truncate(window.ids.len());
        Ok(rows)
    }

    pub fn token_logits(&self, text: &str) -> Result<Vec<Vec<f32>>> {
        block_on(self.token_logits_async(text))
    }

    /// The entities of a note of any length, by the bundle's aggregation (`simple` unless
    /// the trainer chose another): label, UTF-8 byte span into `text` (also when the model
    /// reads it scrubbed: an entity on a placeholder covers the whole replaced text), score.
    pub fn tag(&self, text: &str) -> Result<Vec<Entity>> {
        block_on(self.tag_async(text, None))
    }

    /// [`Model::tag`] with an aggregation strategy (`None`: the bundle's), on whichever
    /// backend the model runs on. Windows overlap by the bundle's stride; each token takes
    /// its label probabilities from the window where it is most central.
    pub async fn tag_async(&self, text: &str, aggregation: Option<EntityAggregation>) -> Result<Vec<Entity>> {
        let head = self.token_head("tag")?;
        let text = self.model_text(text);
        let tokens = self.tokenizer.tokenize(text.as_str(), 0)?;
        let windows = window::split(&tokens, self.window, self.tokenizer.special_ids());
        let mut logits = Vec::with_capacity(windows.len());
        for batch in windows.chunks(WINDOW_BATCH) {
            let ids: Vec<&[u32]> = batch.iter().map(|w| w.ids.as_slice()).collect();
            logits.extend(self.window_token_logits(head, &ids).await?);
        }
        let probabilities = token_probabilities(&windows, &logits, tokens.len());
        let scored: Vec<ScoredToken> = probabilities
            .into_iter()
            .enumerate()
            .map(|(t, probabilities)| {
                let (start, end) = tokens.offsets[t];
                let is_subword = self.tokenizer.is_subword(tokens.ids[t], text.as_str(), start, end);
                ScoredToken { start, end, is_subword, probabilities }
            })
            .collect();
        let strategy = aggregation.unwrap_or(self.manifest.entity_aggregation);
        let found = entities::entities(&scored, &self.manifest.labels, strategy, &["O".to_string()]);
        Ok(text.entities_in_note(found))
    }

    /// De-identifies a note: every entity the model finds (and with `rules`, every span the
    /// pattern scrubber finds) replaced by `[LABEL]`; counts per label, never the removed text.
    pub fn deid(&self, text: &str, rules: Option<&Scrubber>) -> Result<Redacted> {
        block_on(self.deid_async(text, rules, None))
    }

    /// [`Model::deid`] with an aggregation strategy (`None`: the bundle's), on whichever
    /// backend the model runs on.
    pub async fn deid_async(
        &self,
        text: &str,
        rules: Option<&Scrubber>,
        aggregation: Option<EntityAggregation>,
    ) -> Result<Redacted> {
        let mut spans: Vec<(usize, usize, String)> = if text.trim().is_empty() {
            Vec::new()
        } else {
            // `[NAME]`, not `[B-NAME]`, whatever the aggregation (`none` keeps tags whole).
            self.tag_async(text, aggregation)
                .await?
                .into_iter()
                .map(|e| (e.start, e.end, entities::group_name(&e.label).to_string()))
                .collect()
        };
        if let Some(scrubber) = rules {
            let scrubbed = scrubber.scrub(text);
            spans.extend(
                scrubbed
                    .replacements
                    .iter()
                    .map(|r| (r.original_start, r.original_end, r.kind.as_str().to_ascii_uppercase())),
            );
        }
        Ok(redact(text, spans))
    }

    /// Logits [windows, outputs] → one probability per label for each window.
    fn probabilities(&self, logits: &Tensor) -> Result<Vec<Vec<f32>>> {
        let task = self.manifest.task;
        let probs = match (task, self.manifest.head_outputs) {
            (Task::Multilabel, _) | (Task::Binary, 1) => candle_nn::ops::sigmoid(logits)?,
            _ => candle_nn::ops::softmax(logits, D::Minus1)?,
        };
        let rows = probs.to_vec2::<f32>()?;
        Ok(match (task, self.manifest.head_outputs) {
            // One sigmoid output is P(positive); spell out both labels.
            (Task::Binary, 1) => rows.into_iter().map(|r| vec![1.0 - r[0], r[0]]).collect(),
            _ => rows,
        })
    }

    fn decide(&self, windows: &[Window], window_probs: Vec<Vec<f32>>) -> Prediction {
        let m = &self.manifest;
        let note_probs = match m.task {
            // Aggregate P(positive) only: the rule is not symmetric, so scoring the negative
            // column by it too would not sum to 1.
            Task::Binary => {
                let positive: Vec<Vec<f32>> = window_probs.iter().map(|w| vec![w[1]]).collect();
                let p = m.aggregation.combine(&positive)[0];
                vec![1.0 - p, p]
            }
            _ => m.aggregation.combine(&window_probs),
        };
        let argmax = |p: &[f32]| p.iter().enumerate().fold(0, |best, (i, &v)| if v > p[best] { i } else { best });
        let (label_index, labels) = match m.task {
            Task::Binary => {
                let positive = note_probs[1] >= m.decision_threshold;
                let i = usize::from(positive);
                (i, vec![m.labels[i].clone()])
            }
            Task::Multilabel => {
                let chosen = m
                    .labels
                    .iter()
                    .zip(&note_probs)
                    .filter(|(_, &p)| p >= m.decision_threshold)
                    .map(|(l, _)| l.clone())
                    .collect();
                (argmax(&note_probs), chosen)
            }
            _ => {
                let i = argmax(&note_probs);
                (i, vec![m.labels[i].clone()])
            }
        };
        let scores = |p: &[f32]| LabelScores(m.labels.iter().cloned().zip(p.iter().copied()).collect());
        let chunks = windows
            .iter()
            .zip(&window_probs)
            .enumerate()
            .map(|(index, (w, p))| Chunk {
                index,
                start: w.start,
                end: w.end,
                num_tokens: w.num_tokens,
                score: p[label_index],
                probabilities: scores(p),
            })
            .collect();
        let score = note_probs[label_index];
        Prediction {
            label: m.labels[label_index].clone(),
            score,
            probabilities: scores(&note_probs),
            labels,
            uncertain: score < m.min_confidence,
            chunks,
        }
    }
}
