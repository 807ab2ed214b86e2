//! `Weights`: the tensors of one model under canonical names, whatever file they came from.
//!
//! Canonical names are the Hugging Face `BertModel` names without any wrapper prefix
//! (`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`,
//! `pooler.dense.weight`, `classifier.weight`). Checkpoints saved from
//! `BertForSequenceClassification` (`bert.` prefix), RoBERTa's heads (`roberta.`),
//! sentence-transformers (`0.auto_model.`),
//! and old TF conversions (`LayerNorm.gamma`/`beta`) are mapped onto them by [`canonical_name`].
//! The loader, the bundle writer and the model all speak these names.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// Wrapper prefixes that different heads and libraries put in front of the encoder's names.
const WRAPPER_PREFIXES: &[&str] = &["bert.", "roberta.", "0.auto_model.", "auto_model.", "model."];

/// Maps a checkpoint tensor name onto Bedside's canonical name.
pub fn canonical_name(name: &str) -> String {
    let mut name = name;
    for prefix in WRAPPER_PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest;
            break;
        }
    }
    // TF-converted checkpoints (original BioBERT, ClinicalBERT) call LayerNorm's affine
    // parameters gamma/beta.
    if let Some(stem) = name.strip_suffix("LayerNorm.gamma") {
        return format!("{stem}LayerNorm.weight");
    }
    if let Some(stem) = name.strip_suffix("LayerNorm.beta") {
        return format!("{stem}LayerNorm.bias");
    }
    name.to_string()
}

/// One stored tensor: plain (f32, from a checkpoint or a trainer) or quantized (from a bundle).
#[derive(Debug, Clone)]
pub enum Weight {
    Dense(Tensor),
    Quantized(Arc<QTensor>),
}

impl Weight {
    pub fn dims(&self) -> &[usize] {
        match self {
            Weight::Dense(t) => t.dims(),
            Weight::Quantized(q) => q.shape().dims(),
        }
    }

    /// The tensor in f32 (dequantizing if needed).
    pub fn to_f32(&self) -> Result<Tensor> {
        Ok(match self {
            Weight::Dense(t) => t.to_dtype(DType::F32)?,
            Weight::Quantized(q) => q.dequantize(&Device::Cpu)?,
        })
    }

    /// A matmul operand, in f32 (the dense path: checkpoints, f32/f16 bundles, or quantized
    /// weights when integer matmuls are off).
    pub fn to_matmul(&self) -> Result<Tensor> {
        self.to_f32()
    }
}

/// How the CPU path multiplies by q8_0/q4_0 weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantizedMatmul {
    /// Integer dot products with 8-bit block-quantized activations (`model::packed::pairs`): the
    /// bundle's weights stay 8-bit in memory and run ~2× faster in wasm; outputs move by about
    /// the activations' rounding (embedding cosine vs f32 ≥ 0.999 on MiniLM). The default
    /// natively and in the simd128 wasm build.
    Integer,
    /// The integer dot products of the relaxed-SIMD wasm build (`model::packed::quads`), its
    /// default: activations meet q8_0 weights with 7 bits, q4_0 ones with 8 (so q4_0 tensors give
    /// `Integer`'s outputs; q4_0 bundles keep a few tensors at q8_0).
    /// Elsewhere it runs portable code, slower, so that the CLI can reproduce that build's numbers.
    Relaxed,
    /// Dequantize the weights to f32 at load and run the f32 matmul: the reference numerics
    /// (the WebGPU backend computes the same way).
    Dequantized,
}

impl Default for QuantizedMatmul {
    /// What this build runs fastest: `Relaxed` in the relaxed-SIMD wasm build, else `Integer`.
    fn default() -> Self {
        if cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd")) {
            Self::Relaxed
        } else {
            Self::Integer
        }
    }
}

impl std::str::FromStr for QuantizedMatmul {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "integer" | "int8" => Ok(Self::Integer),
            "relaxed" | "relaxed-simd" => Ok(Self::Relaxed),
            "dequantized" | "f32" => Ok(Self::Dequantized),
            other => Err(Error::InvalidArgument {
                field: "quantized_matmul".into(),
                message: format!("unknown quantized matmul {other:?}: use integer, relaxed or dequantized"),
            }),
        }
    }
}

/// Named tensors, plus where they came from (for error messages). Remembers which names
/// a model asked for, so an export writes exactly the tensors the model uses (and not, say,
/// a checkpoint's masked-LM head).
#[derive(Debug)]
pub struct Weights {
    tensors: HashMap<String, Weight>,
    source_kind: &'static str,
    used: Mutex<BTreeSet<String>>,
    quantized_matmul: QuantizedMatmul,
}

impl Weights {
    pub fn new(source_kind: &'static str) -> Self {
        Self {
            tensors: HashMap::new(),
            source_kind,
            used: Mutex::new(BTreeSet::new()),
            quantized_matmul: QuantizedMatmul::default(),
        }
    }

    /// Builds from checkpoint tensors, renaming them to canonical names and converting
    /// half-precision storage to f32.
    pub fn from_checkpoint(tensors: impl IntoIterator<Item = (String, Tensor)>) -> Result<Self> {
        let mut weights = Self::new("checkpoint");
        for (name, tensor) in tensors {
            let tensor = match tensor.dtype() {
                DType::F32 => tensor,
                DType::F16 | DType::BF16 | DType::F64 => tensor.to_dtype(DType::F32)?,
                // Integer buffers (position_ids, token_type_ids) are not weights.
                _ => continue,
            };
            weights.insert(canonical_name(&name), Weight::Dense(tensor));
        }
        Ok(weights)
    }

    pub fn set_quantized_matmul(&mut self, kind: QuantizedMatmul) {
        self.quantized_matmul = kind;
    }

    /// The quantized tensor to run through integer matmuls and how, when `weight` is
    /// q8_0/q4_0 and integer matmuls are on.
    pub fn integer_operand<'a>(&self, weight: &'a Weight) -> Option<(&'a QTensor, QuantizedMatmul)> {
        match weight {
            Weight::Quantized(q)
                if self.quantized_matmul != QuantizedMatmul::Dequantized
                    && matches!(q.dtype(), GgmlDType::Q8_0 | GgmlDType::Q4_0) =>
            {
                Some((q, self.quantized_matmul))
            }
            _ => None,
        }
    }

    /// Whether `weight` is an f32/f16 matrix of a bundle (inference only) in a wasm build, which
    /// runs through `model::packed::dense` (packed once at load) rather than candle's matmul.
    /// Natively candle's gemm stays: with FMA and wider registers it is faster there (the two
    /// agree to ~1e-7).
    pub fn dense_operand(&self, weight: &Weight) -> bool {
        cfg!(target_arch = "wasm32")
            && self.source_kind == "bundle"
            && matches!(weight, Weight::Quantized(q) if matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16))
    }

    pub fn insert(&mut self, name: String, weight: Weight) {
        self.tensors.insert(name, weight);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn mark_used(&self, name: &str) {
        // A poisoned lock only means another loader panicked; the set is still valid.
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.insert(name.to_string());
    }

    /// Names fetched so far by `get`/`get_any`, sorted.
    pub fn used_names(&self) -> Vec<String> {
        self.used.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// Names never fetched by `get`/`get_any`, sorted.
    pub fn unused_names(&self) -> Vec<String> {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let mut unused: Vec<String> = self.tensors.keys().filter(|n| !used.contains(*n)).cloned().collect();
        unused.sort();
        unused
    }

    /// Where the tensors came from: "bundle", "checkpoint", "training" ….
    pub fn source_kind(&self) -> &'static str {
        self.source_kind
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    /// The tensor `name`, checked against `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&Weight> {
        let weight = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::MissingTensor { name: name.to_string(), source_kind: self.source_kind })?;
        self.mark_used(name);
        if weight.dims() != shape {
            return Err(Error::TensorShape {
                name: name.to_string(),
                expected: shape.to_vec(),
                got: weight.dims().to_vec(),
            });
        }
        Ok(weight)
    }

    /// The tensor `name`, whatever its shape.
    pub fn get_any(&self, name: &str) -> Result<&Weight> {
        let weight = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::MissingTensor { name: name.to_string(), source_kind: self.source_kind })?;
        self.mark_used(name);
        Ok(weight)
    }

    /// Like [`Weights::get`], returned as an f32 tensor.
    pub fn get_f32(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.get(name, shape)?.to_f32()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Weight)> {
        self.tensors.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_name;

    #[test]
    fn maps_wrapper_prefixes_and_tf_layer_norm_names() {
        assert_eq!(
            canonical_name("bert.encoder.layer.3.output.LayerNorm.gamma"),
            "encoder.layer.3.output.LayerNorm.weight"
        );
        assert_eq!(canonical_name("0.auto_model.embeddings.LayerNorm.beta"), "embeddings.LayerNorm.bias");
        assert_eq!(canonical_name("classifier.weight"), "classifier.weight");
        assert_eq!(canonical_name("bert.pooler.dense.bias"), "pooler.dense.bias");
    }
}
