//! Random weights for a given `BertConfig`: BERT-base-shaped (or any-shaped) models for
//! tests and benches where no checkpoint of that shape can be downloaded. Values are
//! uniform in ±0.04 (LayerNorm scales near 1), small enough that activations stay in the
//! range real checkpoints have.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::config::BertConfig;
use super::rng::SplitMix64;
use super::weights::{Weight, Weights};
use crate::error::Result;

/// Every tensor `Bert` (and, with `head_outputs`, `SequenceHead` with a pooler) reads,
/// filled from `seed`. With `quant`, matrices other than the position and token-type
/// tables are block-quantized as a bundle would store them.
pub fn random_weights(
    config: &BertConfig,
    head_outputs: Option<usize>,
    quant: Option<GgmlDType>,
    seed: u64,
) -> Result<Weights> {
    let (h, i) = (config.hidden_size, config.intermediate_size);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("embeddings.word_embeddings.weight".into(), vec![config.vocab_size, h]),
        ("embeddings.position_embeddings.weight".into(), vec![config.max_position_embeddings, h]),
        ("embeddings.token_type_embeddings.weight".into(), vec![config.type_vocab_size, h]),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for l in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for (name, rows, cols) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ] {
            shapes.push((format!("{p}.{name}.weight"), vec![rows, cols]));
            shapes.push((format!("{p}.{name}.bias"), vec![rows]));
        }
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            shapes.push((format!("{p}.{norm}.weight"), vec![h]));
            shapes.push((format!("{p}.{norm}.bias"), vec![h]));
        }
    }
    if let Some(n) = head_outputs {
        shapes.extend([
            ("pooler.dense.weight".into(), vec![h, h]),
            ("pooler.dense.bias".into(), vec![h]),
            ("classifier.weight".into(), vec![n, h]),
            ("classifier.bias".into(), vec![n]),
        ]);
    }
    let mut rng = SplitMix64::new(seed);
    let mut weights = Weights::new("random");
    for (name, shape) in shapes {
        let n: usize = shape.iter().product();
        let centre = if name.ends_with("LayerNorm.weight") { 1.0 } else { 0.0 };
        let values: Vec<f32> = (0..n).map(|_| centre + 0.08 * (rng.next_f64() as f32 - 0.5)).collect();
        let tensor = Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)?;
        let table = name.contains("position_embeddings") || name.contains("token_type_embeddings");
        let weight = match quant {
            Some(q) if shape.len() == 2 && !table && shape[1] % q.block_size() == 0 => {
                Weight::Quantized(Arc::new(QTensor::quantize(&tensor, q)?))
            }
            _ => Weight::Dense(tensor),
        };
        weights.insert(name, weight);
    }
    Ok(weights)
}
