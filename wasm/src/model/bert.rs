//! The BERT encoder: Bedside's one model definition (RoBERTa and XLM-RoBERTa are the same
//! graph: their position ids and head names come from [`Architecture`]).
//!
//! Follows Hugging Face `modeling_bert.py` (BertEmbeddings → BertLayer × N; each layer is
//! self-attention + output projection + LayerNorm, then intermediate + GELU + output +
//! LayerNorm). The struct tree mirrors the checkpoint's name tree, so `load` walks the same
//! names the files use. The same code runs weights from checkpoints, training and
//! quantized bundles (see `Linear` for how quantized matrices are multiplied).
//! <https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py>

use std::sync::Arc;

use candle_core::{DType, Tensor};

use super::config::{Activation, Architecture, BertConfig};
use super::mode::Mode;
use super::ops;
use super::packed::dense::Dense;
use super::packed::{PackedLinear, QuantizedLinear};
use super::train_ops;
use super::weights::{Weight, Weights};
use crate::error::Result;
use crate::pipeline::pool::{pool, Pooling};

/// Added to attention scores at padded keys. Large enough that exp() underflows to 0,
/// small enough that adding it to any real score stays finite.
pub(crate) const MASKED_SCORE: f32 = -1.0e30;

/// A dense layer `y = x Wᵀ + b`: an f32 weight (checkpoints, training; dequantized bundle
/// weights), or for inference a bundle weight packed once at load and run by
/// [`packed`](super::packed): f32/f16 ones in f32, q8_0/q4_0 ones in integers with quantized
/// activations.
#[derive(Debug, Clone)]
pub enum Linear {
    Dense { weight: Tensor, bias: Option<Tensor> },
    Packed(Arc<PackedLinear<Dense>>),
    Integer(Arc<QuantizedLinear>),
}

impl Linear {
    pub fn load(w: &Weights, prefix: &str, out_dim: usize, in_dim: usize) -> Result<Self> {
        let weight_name = format!("{prefix}.weight");
        let weight = w.get(&weight_name, &[out_dim, in_dim])?;
        let bias_name = format!("{prefix}.bias");
        let bias = if w.contains(&bias_name) { Some(w.get_f32(&bias_name, &[out_dim])?) } else { None };
        if let Some((q, kind)) = w.integer_operand(weight) {
            let bias = bias.map(|b| b.to_vec1::<f32>()).transpose()?;
            return Ok(Self::Integer(Arc::new(QuantizedLinear::from_qtensor(&weight_name, q, kind, bias)?)));
        }
        if w.dense_operand(weight) {
            let bias = bias.map(|b| b.to_vec1::<f32>()).transpose()?;
            return Ok(Self::Packed(Arc::new(PackedLinear::from_f32(&weight_name, &weight.to_f32()?, bias)?)));
        }
        Ok(Self::Dense { weight: weight.to_matmul()?, bias })
    }

    /// In a training step: [`Self::forward`], with the matmul in the step's precision.
    pub fn forward_t(&self, xs: &Tensor, mode: Mode) -> Result<Tensor> {
        match self {
            Self::Dense { weight, bias } if mode.bf16() => train_ops::dense_bf16(xs, weight, bias.as_ref()),
            _ => self.forward(xs),
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Dense { weight, bias } => train_ops::dense(xs, weight, bias.as_ref()),
            _ if xs.rank() == 3 => {
                let (b, t, d) = xs.dims3()?;
                let ys = self.forward(&xs.reshape((b * t, d))?)?;
                Ok(ys.reshape((b, t, ()))?)
            }
            Self::Packed(linear) => linear.forward(xs),
            Self::Integer(linear) => linear.forward(xs),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn load(w: &Weights, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.get_f32(&format!("{prefix}.weight"), &[dim])?,
            bias: w.get_f32(&format!("{prefix}.bias"), &[dim])?,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, xs: &Tensor, mode: Mode) -> Result<Tensor> {
        let xs = xs.contiguous()?;
        Ok(match mode {
            // candle's fused kernel has no backward pass; ours does.
            Mode::Train(_) => train_ops::layer_norm(&xs, &self.weight, &self.bias, self.eps)?,
            Mode::Eval => candle_nn::ops::layer_norm(&xs, &self.weight, &self.bias, self.eps)?,
        })
    }

    /// A sublayer's end, `LayerNorm(dropout(xs) + residual)`: one fused op when training on
    /// the CPU (the mask drawn where [`Mode::dropout`] would draw it).
    pub fn forward_residual(&self, xs: &Tensor, residual: &Tensor, dropout: f64, mode: Mode) -> Result<Tensor> {
        if matches!(mode, Mode::Train(_)) && train_ops::fused_here(xs) {
            let mask = mode.dropout_mask(xs.elem_count(), dropout);
            if let Some(ys) = train_ops::residual_layer_norm(xs, residual, mask, &self.weight, &self.bias, self.eps)? {
                return Ok(ys);
            }
        }
        self.forward(&(mode.dropout(xs, dropout)? + residual)?, mode)
    }
}

/// Word embeddings: an f32 table, or a quantized one gathered row by row (so a q4_0
/// bundle keeps its largest tensor at 4.5 bits per value in memory).
#[derive(Debug, Clone)]
enum WordEmbeddings {
    Dense(Tensor),
    Quantized(std::sync::Arc<candle_core::quantized::QTensor>),
}

/// `BertEmbeddings`: word + position + token-type (always type 0) embeddings, then LayerNorm.
#[derive(Debug, Clone)]
struct Embeddings {
    word_embeddings: WordEmbeddings,
    position_embeddings: Tensor,
    token_type_row: Tensor,
    layer_norm: LayerNorm,
}

impl Embeddings {
    fn load(w: &Weights, c: &BertConfig) -> Result<Self> {
        let h = c.hidden_size;
        let word_embeddings = match w.get("embeddings.word_embeddings.weight", &[c.vocab_size, h])? {
            Weight::Dense(t) => WordEmbeddings::Dense(t.to_dtype(DType::F32)?),
            Weight::Quantized(q) => WordEmbeddings::Quantized(q.clone()),
        };
        let token_types = w.get_f32("embeddings.token_type_embeddings.weight", &[c.type_vocab_size, h])?;
        Ok(Self {
            word_embeddings,
            // RoBERTa's first token reads row `padding_idx + 1`: keep the rows from there, so
            // position `i` is row `i` of this table for every architecture.
            position_embeddings: w
                .get_f32("embeddings.position_embeddings.weight", &[c.max_position_embeddings, h])?
                .narrow(0, c.position_offset(), c.max_positions())?,
            token_type_row: token_types.get(0)?,
            layer_norm: LayerNorm::load(w, "embeddings.LayerNorm", h, c.layer_norm_eps)?,
        })
    }

    fn forward(&self, input_ids: &Tensor, mode: Mode, dropout: f64) -> Result<Tensor> {
        let (batch, seq_len) = input_ids.dims2()?;
        let words = match &self.word_embeddings {
            WordEmbeddings::Dense(table) => {
                let flat = table.index_select(&input_ids.flatten_all()?, 0)?;
                flat.reshape((batch, seq_len, ()))?
            }
            WordEmbeddings::Quantized(q) => q.embedding(input_ids)?,
        };
        let positions = self.position_embeddings.narrow(0, 0, seq_len)?;
        let xs = words.broadcast_add(&positions)?.broadcast_add(&self.token_type_row)?;
        mode.dropout(&self.layer_norm.forward(&xs, mode)?, dropout)
    }
}

/// The attention's query, key and value projections: three layers, or (integer weights of one
/// format) one stacked layer whose output holds the three side by side.
#[derive(Debug, Clone)]
enum Projections {
    Separate { query: Linear, key: Linear, value: Linear },
    Stacked(Linear),
}

impl Projections {
    fn load(w: &Weights, prefix: &str, h: usize) -> Result<Self> {
        let names = ["query", "key", "value"].map(|p| format!("{prefix}.self.{p}"));
        let mut parts = Vec::new();
        for name in &names {
            let weight_name = format!("{name}.weight");
            let Some((q, kind)) = w.integer_operand(w.get(&weight_name, &[h, h])?) else { break };
            let bias_name = format!("{name}.bias");
            let bias = if w.contains(&bias_name) { Some(w.get_f32(&bias_name, &[h])?.to_vec1::<f32>()?) } else { None };
            parts.push((weight_name, q, kind, bias));
        }
        if parts.len() == names.len() {
            let kind = parts[0].2;
            let parts: Vec<_> = parts.iter().map(|(n, q, _, b)| (n.as_str(), *q, b.clone())).collect();
            if let Some(stacked) = QuantizedLinear::stacked(&parts, kind)? {
                return Ok(Self::Stacked(Linear::Integer(Arc::new(stacked))));
            }
        }
        Ok(Self::Separate {
            query: Linear::load(w, &names[0], h, h)?,
            key: Linear::load(w, &names[1], h, h)?,
            value: Linear::load(w, &names[2], h, h)?,
        })
    }

    /// The three dense layers' weights and biases stacked (Q | K | V), for training's fused
    /// attention; `None` for packed or quantized weights or a layer without bias.
    fn stacked_dense(&self) -> Result<Option<(Tensor, Tensor)>> {
        let Self::Separate { query, key, value } = self else { return Ok(None) };
        let dense = |l: &Linear| match l {
            Linear::Dense { weight, bias: Some(bias) } => Some((weight.clone(), bias.clone())),
            _ => None,
        };
        let (Some(q), Some(k), Some(v)) = (dense(query), dense(key), dense(value)) else { return Ok(None) };
        Ok(Some((Tensor::cat(&[q.0, k.0, v.0], 0)?, Tensor::cat(&[q.1, k.1, v.1], 0)?)))
    }

    /// Query, key and value, `[batch, seq, hidden]` each.
    fn forward(&self, xs: &Tensor, mode: Mode) -> Result<(Tensor, Tensor, Tensor)> {
        match self {
            Self::Separate { query, key, value } => {
                Ok((query.forward_t(xs, mode)?, key.forward_t(xs, mode)?, value.forward_t(xs, mode)?))
            }
            Self::Stacked(qkv) => {
                let all = qkv.forward_t(xs, mode)?;
                let h = all.dim(2)? / 3;
                let part = |i: usize| all.narrow(2, i * h, h).and_then(|t| t.contiguous());
                Ok((part(0)?, part(1)?, part(2)?))
            }
        }
    }
}

/// `BertSelfAttention` + `BertSelfOutput`.
#[derive(Debug, Clone)]
struct Attention {
    projections: Projections,
    output: Linear,
    layer_norm: LayerNorm,
    num_heads: usize,
    head_dim: usize,
    attention_dropout: f64,
    hidden_dropout: f64,
}

impl Attention {
    fn load(w: &Weights, prefix: &str, c: &BertConfig) -> Result<Self> {
        let h = c.hidden_size;
        Ok(Self {
            projections: Projections::load(w, prefix, h)?,
            output: Linear::load(w, &format!("{prefix}.output.dense"), h, h)?,
            layer_norm: LayerNorm::load(w, &format!("{prefix}.output.LayerNorm"), h, c.layer_norm_eps)?,
            num_heads: c.num_attention_heads,
            head_dim: c.head_dim(),
            attention_dropout: c.attention_probs_dropout_prob,
            hidden_dropout: c.hidden_dropout_prob,
        })
    }

    /// [batch, seq, hidden] → [batch, heads, seq, head_dim]
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        Ok(xs.reshape((b, t, self.num_heads, self.head_dim))?.transpose(1, 2)?.contiguous()?)
    }

    fn forward(&self, xs: &Tensor, score_mask: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, t, h) = xs.dims3()?;
        if matches!(mode, Mode::Eval) && ops::runs_attention_here(xs, self.head_dim) {
            let context = match &self.projections {
                Projections::Stacked(qkv) => ops::attention_stacked(&qkv.forward(xs)?, score_mask, self.num_heads)?,
                separate => {
                    let (q, k, v) = separate.forward(xs, mode)?;
                    ops::attention(&q, &k, &v, score_mask, self.num_heads)?
                }
            };
            return self.layer_norm.forward(&(self.output.forward(&context)? + xs)?, mode);
        }
        // The fused attention is f32; a bf16 step takes the composed path, whose two matmuls
        // take the step's precision.
        if matches!(mode, Mode::Train(_)) && !mode.bf16() && train_ops::attention_runs_here(xs) {
            if let Some((weight, bias)) = self.projections.stacked_dense()? {
                // One QKV matmul, then the fused attention (heads read in place, one pass
                // forward and one back); the dropout mask is drawn where the composed path draws it.
                let qkv = train_ops::dense(xs, &weight, Some(&bias))?;
                let dropout = mode.dropout_mask(b * self.num_heads * t * t, self.attention_dropout);
                if let Some(context) = train_ops::attention(&qkv, score_mask, self.num_heads, dropout)? {
                    let projected = self.output.forward(&context)?;
                    return self.layer_norm.forward_residual(&projected, xs, self.hidden_dropout, mode);
                }
            }
        }
        let (q, k, v) = self.projections.forward(xs, mode)?;
        let (q, k, v) = (self.split_heads(&q)?, self.split_heads(&k)?, self.split_heads(&v)?);
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let matmul = |a: &Tensor, b: &Tensor| {
            if mode.bf16() {
                train_ops::bf16_matmul(a, b)
            } else {
                Ok(a.matmul(b)?)
            }
        };
        let scores = matmul(&q, &k.t()?)?;
        let probs = match mode {
            // As with LayerNorm: candle's fused softmax cannot be differentiated; ours can.
            Mode::Train(_) => train_ops::masked_softmax(&scores, score_mask, scale)?,
            Mode::Eval => candle_nn::ops::softmax_last_dim(&(scores * scale)?.broadcast_add(score_mask)?)?,
        };
        let probs = mode.dropout(&probs, self.attention_dropout)?;
        let context = matmul(&probs, &v)?.transpose(1, 2)?.reshape((b, t, h))?;
        self.layer_norm.forward_residual(&self.output.forward_t(&context, mode)?, xs, self.hidden_dropout, mode)
    }
}

/// `BertLayer`: attention, then the feed-forward block (`intermediate` + `output`).
#[derive(Debug, Clone)]
struct Layer {
    attention: Attention,
    intermediate: Linear,
    output: Linear,
    layer_norm: LayerNorm,
    activation: Activation,
    hidden_dropout: f64,
}

impl Layer {
    fn load(w: &Weights, prefix: &str, c: &BertConfig) -> Result<Self> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        Ok(Self {
            attention: Attention::load(w, &format!("{prefix}.attention"), c)?,
            intermediate: Linear::load(w, &format!("{prefix}.intermediate.dense"), i, h)?,
            output: Linear::load(w, &format!("{prefix}.output.dense"), h, i)?,
            layer_norm: LayerNorm::load(w, &format!("{prefix}.output.LayerNorm"), h, c.layer_norm_eps)?,
            activation: c.hidden_act,
            hidden_dropout: c.hidden_dropout_prob,
        })
    }

    fn forward(&self, xs: &Tensor, score_mask: &Tensor, mode: Mode) -> Result<Tensor> {
        let attended = self.attention.forward(xs, score_mask, mode)?;
        let inner = self.intermediate.forward_t(&attended, mode)?;
        let inner = match self.activation {
            Activation::Gelu => match mode {
                Mode::Train(_) => train_ops::gelu_erf(&inner)?,
                Mode::Eval => ops::gelu_erf(&inner)?,
            },
            Activation::GeluApproximate => inner.gelu()?,
            Activation::Relu => inner.relu()?,
        };
        self.layer_norm.forward_residual(&self.output.forward_t(&inner, mode)?, &attended, self.hidden_dropout, mode)
    }
}

/// `BertModel` without the pooler: token ids in, last hidden states out.
#[derive(Debug, Clone)]
pub struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    config: BertConfig,
}

impl Bert {
    pub fn load(w: &Weights, config: &BertConfig) -> Result<Self> {
        config.validate()?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(w, &format!("encoder.layer.{i}"), config))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { embeddings: Embeddings::load(w, config)?, layers, config: config.clone() })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// `input_ids`: [batch, seq] u32; `attention_mask`: [batch, seq] f32 with 1 for real
    /// tokens, 0 for padding. Returns the last hidden states, [batch, seq, hidden].
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        self.forward_t(input_ids, attention_mask, Mode::Eval)
    }

    /// [`Bert::forward`] with dropout live when `mode` is `Train`.
    pub fn forward_t(&self, input_ids: &Tensor, attention_mask: &Tensor, mode: Mode) -> Result<Tensor> {
        let (batch, seq_len) = input_ids.dims2()?;
        // (1 - mask) * MASKED_SCORE, shaped to broadcast over heads and query positions.
        let score_mask = ((attention_mask.to_dtype(DType::F32)?.affine(-1.0, 1.0))? * MASKED_SCORE as f64)?
            .reshape((batch, 1, 1, seq_len))?;
        let mut xs = self.embeddings.forward(input_ids, mode, self.config.hidden_dropout_prob)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &score_mask, mode)?;
        }
        Ok(xs)
    }
}

/// What a sequence head's classifier layer reads from the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadFeatures {
    /// `tanh(pooler.dense · [CLS])`, as `BertForSequenceClassification` does (raw [CLS] when
    /// the checkpoint has no pooler). What fine-tuning trains, and what bundles written
    /// before the field existed mean.
    #[default]
    Pooler,
    /// The raw [CLS] state: "CLS embeddings" in the scikit-learn sense.
    Cls,
    /// The mean of the token states under the attention mask.
    Mean,
}

impl HeadFeatures {
    pub fn as_str(self) -> &'static str {
        match self {
            HeadFeatures::Pooler => "pooler",
            HeadFeatures::Cls => "cls",
            HeadFeatures::Mean => "mean",
        }
    }

    /// How token states are pooled before the (optional) pooler layer.
    pub fn pooling(self) -> Pooling {
        match self {
            HeadFeatures::Mean => Pooling::Mean,
            HeadFeatures::Pooler | HeadFeatures::Cls => Pooling::Cls,
        }
    }
}

impl std::str::FromStr for HeadFeatures {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "pooler" => Ok(HeadFeatures::Pooler),
            "cls" => Ok(HeadFeatures::Cls),
            "mean" => Ok(HeadFeatures::Mean),
            other => Err(format!("unknown head features {other:?}: use cls, mean or pooler")),
        }
    }
}

/// Sequence-classification head: the [`HeadFeatures`] it reads, then the output layer.
/// BERT: `pooler.dense` + tanh on [CLS], then `classifier`; RoBERTa: `classifier.dense` +
/// tanh on `<s>`, then `classifier.out_proj` (names from [`Architecture::sequence_head_names`]).
#[derive(Debug, Clone)]
pub struct SequenceHead {
    /// Loaded only when the features go through it.
    pooler: Option<Linear>,
    classifier: Linear,
    num_outputs: usize,
    features: HeadFeatures,
    dropout: f64,
    /// RoBERTa's head also drops out the `<s>` state before its dense layer.
    dropout_before_pooler: bool,
}

impl SequenceHead {
    pub fn load(w: &Weights, config: &BertConfig, num_outputs: usize, features: HeadFeatures) -> Result<Self> {
        let h = config.hidden_size;
        let (pooler_name, output_name) = config.architecture().sequence_head_names();
        let pooler = if features == HeadFeatures::Pooler && w.contains(&format!("{pooler_name}.weight")) {
            Some(Linear::load(w, pooler_name, h, h)?)
        } else {
            None
        };
        Ok(Self {
            pooler,
            classifier: Linear::load(w, output_name, num_outputs, h)?,
            num_outputs,
            features,
            dropout: config.hidden_dropout_prob,
            dropout_before_pooler: config.architecture() == Architecture::Roberta,
        })
    }

    pub fn num_outputs(&self) -> usize {
        self.num_outputs
    }

    pub fn head_features(&self) -> HeadFeatures {
        self.features
    }

    /// hidden: [batch, seq, hidden], mask: [batch, seq] (1.0 for real tokens) → logits
    /// [batch, num_outputs]
    pub fn forward(&self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        self.forward_t(hidden, mask, Mode::Eval)
    }

    /// [`SequenceHead::forward`] with dropout before the classifier in training, as in
    /// `BertForSequenceClassification`.
    pub fn forward_t(&self, hidden: &Tensor, mask: &Tensor, mode: Mode) -> Result<Tensor> {
        let pooled = self.features_t(hidden, mask, mode)?;
        self.classifier.forward_t(&mode.dropout(&pooled, self.dropout)?, mode)
    }

    /// What the classifier layer sees ([batch, hidden]). A frozen-encoder probe fits its
    /// logistic regression on these, so its weights drop in as this head's classifier.
    pub fn features(&self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        self.features_t(hidden, mask, Mode::Eval)
    }

    fn features_t(&self, hidden: &Tensor, mask: &Tensor, mode: Mode) -> Result<Tensor> {
        let pooled = pool(hidden, mask, self.features.pooling())?.contiguous()?;
        match &self.pooler {
            Some(p) => {
                let pooled = if self.dropout_before_pooler { mode.dropout(&pooled, self.dropout)? } else { pooled };
                Ok(p.forward(&pooled)?.tanh()?)
            }
            None => Ok(pooled),
        }
    }
}

/// The head on top of the encoder: one vector per window (sequence classification) or one
/// per token (token classification).
#[derive(Debug, Clone)]
pub enum Head {
    Sequence(SequenceHead),
    Token(TokenHead),
}

impl Head {
    pub fn num_outputs(&self) -> usize {
        match self {
            Head::Sequence(h) => h.num_outputs(),
            Head::Token(h) => h.num_outputs(),
        }
    }
}

/// Token-classification head (`BertForTokenClassification`, `RobertaForTokenClassification`):
/// `classifier` on every token state, dropout before it in training.
#[derive(Debug, Clone)]
pub struct TokenHead {
    classifier: Linear,
    num_outputs: usize,
    dropout: f64,
}

impl TokenHead {
    pub fn load(w: &Weights, config: &BertConfig, num_outputs: usize) -> Result<Self> {
        Ok(Self {
            classifier: Linear::load(w, "classifier", num_outputs, config.hidden_size)?,
            num_outputs,
            dropout: config.hidden_dropout_prob,
        })
    }

    pub fn num_outputs(&self) -> usize {
        self.num_outputs
    }

    /// hidden: [batch, seq, hidden] → logits [batch, seq, num_outputs].
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        self.forward_t(hidden, Mode::Eval)
    }

    pub fn forward_t(&self, hidden: &Tensor, mode: Mode) -> Result<Tensor> {
        let (batch, seq, h) = hidden.dims3()?;
        let flat = mode.dropout(&hidden.reshape((batch * seq, h))?, self.dropout)?;
        Ok(self.classifier.forward_t(&flat, mode)?.reshape((batch, seq, self.num_outputs))?)
    }
}
