//! A BERT (or RoBERTa) classifier with trainable parameters: the runtime's one encoder and a
//! sequence or token head, loaded from `Var`s so candle can differentiate through them, plus
//! the loss.
//!
//! The encoder starts from a checkpoint; new head layers start at N(0, 0.02) like
//! transformers' `_init_weights`, drawn from a seeded generator so a CPU run repeats exactly.

use anyhow::{ensure, Context, Result};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::model::{
    Architecture, Bert, BertConfig, Head, HeadFeatures, Mode, SequenceHead, SplitMix64, TokenHead, Weight, Weights,
};
use bedside_runtime::pipeline::pool::pool;
use bedside_runtime::pipeline::tokenize::TextTokenizer;
use bedside_runtime::pipeline::window::{self, WindowSpec};
use candle_core::{DType, Device, Tensor, Var, D};

/// transformers' `initializer_range` default for new layers.
const HEAD_INIT_STD: f64 = 0.02;

/// N(0, std) values from the seeded generator: reproducible on every machine.
pub fn seeded_normal(count: usize, std: f64, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..count).map(|_| (rng.next_normal() * std) as f32).collect()
}

/// scikit-learn's `class_weight="balanced"`: n_samples / (n_classes · count(class)).
/// Classes absent from the data get weight 0 (they cannot be learned from it).
pub fn balanced_class_weights(counts: &[usize]) -> Vec<f32> {
    let n: usize = counts.iter().sum();
    let k = counts.len();
    counts.iter().map(|&c| if c == 0 { 0.0 } else { n as f32 / (k * c) as f32 }).collect()
}

/// Per-model choices that are not in the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelOptions {
    /// Tokens per window, [CLS]/[SEP] included (capped at the model's positions).
    pub max_seq_len: usize,
    /// Tokens shared by consecutive windows of a long note.
    pub stride: usize,
    /// Overrides the checkpoint's hidden and attention dropout.
    pub dropout: Option<f64>,
    /// What the classifier layer reads.
    pub features: HeadFeatures,
    /// A label per token (`…ForTokenClassification`) instead of one per window.
    pub token_head: bool,
}

impl ModelOptions {
    pub fn new(max_seq_len: usize) -> Self {
        Self { max_seq_len, stride: 0, dropout: None, features: HeadFeatures::Pooler, token_head: false }
    }
}

pub struct TrainableClassifier {
    bert: Bert,
    head: Head,
    vars: Vec<(String, Var)>,
    tokenizer: TextTokenizer,
    window: WindowSpec,
    config: BertConfig,
    device: Device,
}

impl TrainableClassifier {
    /// The checkpoint's encoder (and pooler, if it has one) plus a new `num_labels`-way head.
    pub fn new(
        ckpt: &Checkpoint,
        num_labels: usize,
        options: ModelOptions,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        ensure!(num_labels >= 1, "a classifier needs at least one output");
        let mut config = ckpt.config.clone();
        if let Some(p) = options.dropout {
            config.hidden_dropout_prob = p;
            config.attention_probs_dropout_prob = p;
        }
        // Load once to learn which checkpoint tensors the encoder reads.
        Bert::load(&ckpt.weights, &ckpt.config).context("checking the checkpoint")?;
        // The head is always new here (`from_trained` then loads a trained one into it), so a
        // checkpoint's own `classifier.*` must not become a second variable of the same name.
        let mut names: Vec<String> =
            ckpt.weights.used_names().into_iter().filter(|n| !n.starts_with("classifier.")).collect();
        for pooler in ["pooler.dense.weight", "pooler.dense.bias"] {
            if ckpt.weights.contains(pooler) {
                names.push(pooler.to_string());
            }
        }
        let mut vars = Vec::with_capacity(names.len() + 2);
        for name in names {
            let tensor = ckpt.weights.get_any(&name)?.to_f32()?.to_device(device)?;
            vars.push((name, Var::from_tensor(&tensor)?));
        }
        let h = ckpt.config.hidden_size;
        let arch = ckpt.config.architecture();
        // RoBERTa's sequence head has its own dense layer (`classifier.dense`), new like the output.
        let output = if options.token_head { "classifier" } else { arch.sequence_head_names().1 };
        let mut new_layers = vec![(output, num_labels)];
        if !options.token_head && arch == Architecture::Roberta && options.features == HeadFeatures::Pooler {
            new_layers.insert(0, (arch.sequence_head_names().0, h));
        }
        for (i, (layer, rows)) in new_layers.into_iter().enumerate() {
            let init = seeded_normal(rows * h, HEAD_INIT_STD, seed.wrapping_add(i as u64));
            vars.push((format!("{layer}.weight"), Var::from_tensor(&Tensor::from_vec(init, (rows, h), device)?)?));
            vars.push((format!("{layer}.bias"), Var::zeros(rows, DType::F32, device)?));
        }

        let weights = Self::weights_of(&vars);
        let special = &ckpt.special_tokens;
        let tokenizer = TextTokenizer::from_json(&ckpt.tokenizer_json, &special.cls, &special.sep, &special.pad)?;
        let max_len = options.max_seq_len.min(config.max_positions());
        let window = WindowSpec::new(max_len, options.stride.min(max_len.saturating_sub(3)))
            .context("window settings (max_seq_len, stride)")?;
        Ok(Self {
            bert: Bert::load(&weights, &config)?,
            head: if options.token_head {
                Head::Token(TokenHead::load(&weights, &config, num_labels)?)
            } else {
                Head::Sequence(SequenceHead::load(&weights, &config, num_labels, options.features)?)
            },
            vars,
            tokenizer,
            window,
            config,
            device: device.clone(),
        })
    }

    /// A classifier checkpoint (with its trained `classifier` head), e.g. a run's `best/`.
    pub fn from_trained(ckpt: &Checkpoint, options: ModelOptions, device: &Device) -> Result<Self> {
        let output = if options.token_head { "classifier" } else { ckpt.config.architecture().sequence_head_names().1 };
        let head =
            ckpt.weights.get_any(&format!("{output}.weight")).context("the checkpoint has no classifier head")?;
        let num_labels = head.dims()[0];
        // The head reads what it was trained on, whatever the caller's default.
        let features = ckpt.serving.as_ref().map_or(options.features, |s| s.head_features);
        let mut model = Self::new(ckpt, num_labels, ModelOptions { features, ..options }, 0, device)?;
        for (name, var) in model.vars.iter_mut().filter(|(n, _)| n.starts_with("classifier.")) {
            let trained = ckpt.weights.get_any(name)?.to_f32()?.to_device(device)?;
            var.set(&trained)?;
        }
        Ok(model)
    }

    /// Weights that share the variables' storage: a model built from them trains the vars.
    fn weights_of(vars: &[(String, Var)]) -> Weights {
        let mut weights = Weights::new("training variables");
        for (name, var) in vars {
            weights.insert(name.clone(), Weight::Dense(var.as_tensor().clone()));
        }
        weights
    }

    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    pub fn window(&self) -> WindowSpec {
        self.window
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn head_features(&self) -> HeadFeatures {
        match &self.head {
            Head::Sequence(head) => head.head_features(),
            // Read by nothing: each token's state goes to the classifier.
            Head::Token(_) => HeadFeatures::default(),
        }
    }

    fn sequence_head(&self) -> Result<&SequenceHead> {
        match &self.head {
            Head::Sequence(head) => Ok(head),
            Head::Token(_) => anyhow::bail!("a token classifier has no per-window output"),
        }
    }

    /// Token logits [batch, seq, labels] of a batch of windows, and its attention mask
    /// [batch, seq] (1.0 for real tokens).
    pub fn token_logits(&self, batch: &[&[u32]], mode: Mode) -> Result<(Tensor, Tensor)> {
        let Head::Token(head) = &self.head else { anyhow::bail!("a sequence classifier has no per-token output") };
        let (hidden, mask) = self.hidden(batch, mode)?;
        Ok((head.forward_t(&hidden, mode)?, mask))
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Replaces the classifier layer's parameters (a probe's fitted weights).
    pub fn set_head(&self, weight: &Tensor, bias: &Tensor) -> Result<()> {
        let output = match self.head {
            Head::Token(_) => "classifier",
            Head::Sequence(_) => self.config.architecture().sequence_head_names().1,
        };
        for (name, value) in [(format!("{output}.weight"), weight), (format!("{output}.bias"), bias)] {
            let (_, var) = self.vars.iter().find(|(n, _)| *n == name).context("no classifier variable")?;
            var.set(&value.to_device(&self.device)?)?;
        }
        Ok(())
    }

    /// A copy of the current parameters, detached from training (for export and checkpoints).
    pub fn snapshot(&self) -> Result<Weights> {
        let mut weights = Weights::new("trained model");
        for (name, var) in &self.vars {
            weights.insert(name.clone(), Weight::Dense(var.as_tensor().detach().to_device(&Device::Cpu)?));
        }
        Ok(weights)
    }

    /// The model's input for one note: [CLS] + its first window + [SEP].
    pub fn encode(&self, text: &str, index: usize) -> Result<Vec<u32>> {
        let tokens = self.tokenizer.tokenize(text, index)?;
        Ok(window::truncate(&tokens, self.window, self.tokenizer.special_ids()).ids)
    }

    /// Every window of a note (ids with [CLS]/[SEP]), as the runtime cuts them.
    pub fn windows(&self, text: &str, index: usize) -> Result<Vec<Vec<u32>>> {
        let tokens = self.tokenizer.tokenize(text, index)?;
        Ok(window::split(&tokens, self.window, self.tokenizer.special_ids()).into_iter().map(|w| w.ids).collect())
    }

    /// Logits [batch, labels] for a batch of encoded notes.
    pub fn logits(&self, batch: &[&[u32]], mode: Mode) -> Result<Tensor> {
        let head = self.sequence_head()?;
        let (hidden, mask) = self.hidden(batch, mode)?;
        Ok(head.forward_t(&hidden, &mask, mode)?)
    }

    /// Sentence embeddings [batch, hidden], L2-normalised: the mean of the token states under
    /// the attention mask (or [CLS]), in ops candle can differentiate.
    pub fn embeddings(&self, batch: &[&[u32]], mode: Mode, mean_pooling: bool) -> Result<Tensor> {
        let (hidden, mask) = self.hidden(batch, mode)?;
        let pooled = if mean_pooling {
            let mask = mask.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
            summed.broadcast_div(&counts)?
        } else {
            hidden.narrow(1, 0, 1)?.squeeze(1)?
        };
        let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(pooled.broadcast_div(&norm)?)
    }

    /// The features the classifier layer sees ([batch, hidden]), dropout off.
    pub fn features(&self, batch: &[&[u32]]) -> Result<Tensor> {
        let head = self.sequence_head()?;
        let (hidden, mask) = self.hidden(batch, Mode::Eval)?;
        Ok(head.features(&hidden, &mask)?)
    }

    /// `features` of a batch ([batch, hidden]), dropout off, whatever the head reads: the
    /// raw [CLS] or mean for a probe beside a fine-tuning run. `pooler` only through the head.
    pub fn features_of(&self, batch: &[&[u32]], features: HeadFeatures) -> Result<Tensor> {
        let head = self.sequence_head()?;
        let (hidden, mask) = self.hidden(batch, Mode::Eval)?;
        if features == head.head_features() {
            return Ok(head.features(&hidden, &mask)?);
        }
        ensure!(features != HeadFeatures::Pooler, "pooler features need a head that reads the pooler");
        Ok(pool(&hidden, &mask, features.pooling())?)
    }

    /// Last hidden states [batch, seq, hidden], dropout off.
    pub fn hidden_states(&self, batch: &[&[u32]]) -> Result<Tensor> {
        Ok(self.hidden(batch, Mode::Eval)?.0)
    }

    /// Last hidden states [batch, seq, hidden] of a batch padded to its longest row, and the
    /// attention mask [batch, seq] (1.0 for real tokens).
    fn hidden(&self, batch: &[&[u32]], mode: Mode) -> Result<(Tensor, Tensor)> {
        let seq_len = batch.iter().map(|ids| ids.len()).max().unwrap_or(0);
        let pad = self.tokenizer.special_ids().pad;
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for row in batch {
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(pad, seq_len - row.len()));
            mask.extend((0..seq_len).map(|i| if i < row.len() { 1f32 } else { 0.0 }));
        }
        let ids = Tensor::from_vec(ids, (batch.len(), seq_len), &self.device)?;
        let mask = Tensor::from_vec(mask, (batch.len(), seq_len), &self.device)?;
        Ok((self.bert.forward_t(&ids, &mask, mode)?, mask))
    }

    /// Mean cross-entropy, optionally class-weighted as PyTorch's `CrossEntropyLoss(weight=…)`:
    /// Σ w[y]·(−log p[y]) / Σ w[y].
    pub fn loss(&self, logits: &Tensor, targets: &[u32], class_weights: Option<&[f32]>) -> Result<Tensor> {
        let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        let targets_t = Tensor::from_slice(targets, targets.len(), &self.device)?;
        let picked = log_probs.gather(&targets_t.unsqueeze(1)?, 1)?.squeeze(1)?;
        let weights: Vec<f32> = match class_weights {
            Some(w) => targets.iter().map(|&t| w.get(t as usize).copied().unwrap_or(0.0)).collect(),
            None => vec![1.0; targets.len()],
        };
        let total: f32 = weights.iter().sum();
        ensure!(total > 0.0, "every example in the batch has class weight 0");
        let weights = Tensor::from_vec(weights, targets.len(), &self.device)?;
        Ok((picked.mul(&weights)?.sum_all()?.neg()? / total as f64)?)
    }

    /// Mean binary cross-entropy on logits [batch, outputs] against 0/1 `targets` (row-major,
    /// same shape), PyTorch's `BCEWithLogitsLoss`: with `pos_weight` (one per output) a
    /// positive's term is scaled, with `sample_weights` (one per row) the mean is weighted
    /// Σ wᵢ·lᵢ / Σ wᵢ like the weighted cross-entropy.
    pub fn bce_loss(
        &self,
        logits: &Tensor,
        targets: &[f32],
        pos_weight: Option<&[f32]>,
        sample_weights: Option<&[f32]>,
    ) -> Result<Tensor> {
        let (rows, outputs) = logits.dims2()?;
        ensure!(targets.len() == rows * outputs, "{} targets for {rows}×{outputs} logits", targets.len());
        let y = Tensor::from_slice(targets, (rows, outputs), &self.device)?;
        // −log σ(x) = softplus(−x) and −log(1 − σ(x)) = softplus(x), in the stable form
        // softplus(z) = max(z, 0) + log(1 + e^−|z|).
        let softplus =
            |z: &Tensor| -> candle_core::Result<Tensor> { z.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()? };
        let positive_term = softplus(&logits.neg()?)?;
        let positive_term = match pos_weight {
            Some(w) => {
                ensure!(w.len() == outputs, "{} positive weights for {outputs} outputs", w.len());
                positive_term.broadcast_mul(&Tensor::from_slice(w, (1, outputs), &self.device)?)?
            }
            None => positive_term,
        };
        let negative_term = softplus(logits)?;
        let per_cell = ((y.clone() * positive_term)? + ((y.neg()? + 1.0)? * negative_term)?)?;
        let per_row = per_cell.mean(1)?;
        match sample_weights {
            Some(w) => {
                ensure!(w.len() == rows, "{} sample weights for {rows} rows", w.len());
                let total: f32 = w.iter().sum();
                ensure!(total > 0.0, "every example in the batch has class weight 0");
                let w = Tensor::from_slice(w, rows, &self.device)?;
                Ok((per_row.mul(&w)?.sum_all()? / total as f64)?)
            }
            None => Ok(per_row.mean_all()?),
        }
    }
}
