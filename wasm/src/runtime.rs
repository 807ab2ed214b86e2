//! `Model`: the public face of the runtime. Bytes (or a checkpoint directory) in;
//! embeddings and predictions out. Calls the pipeline steps in order:
//! tokenize → window → encode → pool / head → aggregate.

use candle_core::{Tensor, D};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::bundle::{self, Manifest, Task};
use crate::error::{Error, Result};
use crate::model::{Bert, SequenceHead, Weights};
use crate::pipeline::encode::encode;
use crate::pipeline::pool::{normalize, pool};
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

#[derive(Debug, Clone)]
pub struct Model {
    manifest: Manifest,
    tokenizer: TextTokenizer,
    bert: Bert,
    head: Option<SequenceHead>,
    window: WindowSpec,
}

impl Model {
    /// Loads a bundle (the bytes of a `.gguf` file made by `bedside export`).
    pub fn load(bytes: &[u8]) -> Result<Self> {
        let bundle = bundle::read(bytes)?;
        Self::from_parts(bundle.manifest, &bundle.tokenizer_json, &bundle.weights)
    }

    /// Builds a model from its parts; `weights` may be f32 or quantized.
    pub fn from_parts(manifest: Manifest, tokenizer_json: &str, weights: &Weights) -> Result<Self> {
        manifest.validate()?;
        let special = &manifest.special_tokens;
        let tokenizer = TextTokenizer::from_json(tokenizer_json, &special.cls, &special.sep, &special.pad)?;
        if tokenizer.vocab_size() > manifest.config.vocab_size {
            return Err(Error::config(
                "vocab_size",
                format!(
                    "the tokenizer has {} tokens but the model's embedding table only {}",
                    tokenizer.vocab_size(),
                    manifest.config.vocab_size
                ),
            ));
        }
        let bert = Bert::load(weights, &manifest.config)?;
        let head = match manifest.task {
            Task::Embedding => None,
            _ => Some(SequenceHead::load(weights, &manifest.config, manifest.head_outputs)?),
        };
        let window = WindowSpec::new(manifest.max_seq_len, manifest.stride)?;
        Ok(Self { manifest, tokenizer, bert, head, window })
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

    /// The ids the encoder sees for `text` when embedding it: [CLS] … [SEP], truncated to
    /// the window like sentence-transformers does.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let tokens = self.tokenizer.tokenize(text, 0)?;
        Ok(window::truncate(&tokens, self.window, self.tokenizer.special_ids()).ids)
    }

    /// One vector per text, in order. Texts longer than `max_seq_len` tokens are truncated
    /// (as sentence-transformers does); pooling and normalisation follow the manifest.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let special = self.tokenizer.special_ids();
        let mut windows = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let tokens = self.tokenizer.tokenize(text, index)?;
            windows.push(window::truncate(&tokens, self.window, special).ids);
        }
        // Sort by length so each batch pads little; answers go back in input order.
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by_key(|&i| windows[i].len());
        let mut out = vec![Vec::new(); windows.len()];
        for chunk in order.chunks(EMBED_BATCH) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| windows[i].as_slice()).collect();
            let vectors = self.pooled(&batch)?.to_vec2::<f32>()?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn pooled(&self, batch: &[&[u32]]) -> Result<Tensor> {
        let encoded = encode(&self.bert, batch, self.tokenizer.special_ids().pad)?;
        let pooled = pool(&encoded.hidden, &encoded.mask, self.manifest.pooling)?;
        if self.manifest.normalize {
            normalize(&pooled)
        } else {
            Ok(pooled)
        }
    }

    /// Classifies a note of any length: windows, per-window probabilities, aggregation.
    pub fn classify(&self, text: &str) -> Result<Prediction> {
        let head = self.head.as_ref().ok_or(Error::WrongTask {
            task: self.manifest.task.as_str().to_string(),
            operation: "classify",
            needs: "a classification, binary or multilabel bundle",
        })?;
        let tokens = self.tokenizer.tokenize(text, 0)?;
        let windows = window::split(&tokens, self.window, self.tokenizer.special_ids());
        let mut window_probs = Vec::with_capacity(windows.len());
        for batch in windows.chunks(WINDOW_BATCH) {
            let ids: Vec<&[u32]> = batch.iter().map(|w| w.ids.as_slice()).collect();
            let encoded = encode(&self.bert, &ids, self.tokenizer.special_ids().pad)?;
            let logits = head.forward(&encoded.hidden)?;
            window_probs.extend(self.probabilities(&logits)?);
        }
        Ok(self.decide(&windows, window_probs))
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
