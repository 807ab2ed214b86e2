//! `bedside train embed`: fine-tunes a checkpoint into a sentence encoder on text pairs, the
//! sentence-transformers way: mean pooling (or [CLS]), L2-normalised output, and one of three
//! losses — multiple-negatives ranking with in-batch negatives (MNRL, the strongest for
//! retrieval), cosine-similarity regression, or the contrastive loss with a margin.
//!
//! Same machinery as the classifiers: the runtime's one BERT, AdamW with the linear schedule,
//! clipping, seeded batch order and dropout. Validation Spearman (cosine vs the gold label)
//! after each epoch picks the best checkpoint, written as a sentence-transformers directory
//! (modules.json, 1_Pooling, 2_Normalize) so `export`, `embed`, `search` and `eval embed` read
//! it with the right pooling.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::model::{DropoutRng, Mode, SplitMix64};
use candle_core::{Device, Tensor, D};
use serde::Serialize;

use super::classifier::{ModelOptions, TrainableClassifier};
use super::config::TrainConfig;
use super::optim::{clip_grad_norm, AdamW, LinearSchedule};
use super::run::{accumulate, device};
use crate::eval::embedding::{load_pairs, spearman, Pair, PairsOptions};

/// Texts per forward pass when embedding for validation.
const EVAL_BATCH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedLoss {
    Mnrl,
    Cosine,
    Contrastive,
}

impl EmbedLoss {
    pub fn parse(s: &str) -> Result<EmbedLoss> {
        Ok(match s {
            "mnrl" => EmbedLoss::Mnrl,
            "cosine" => EmbedLoss::Cosine,
            "contrastive" => EmbedLoss::Contrastive,
            other => bail!("unknown loss {other:?}: use mnrl, cosine or contrastive"),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EmbedEpoch {
    pub epoch: usize,
    pub step: usize,
    pub train_loss: f64,
    pub val_spearman: Option<f64>,
    pub samples_per_second: f64,
    pub best: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EmbedReport {
    pub loss: String,
    pub train_pairs: usize,
    pub val_pairs: usize,
    pub best_epoch: Option<usize>,
    pub val_spearman: Option<f64>,
    pub history: Vec<EmbedEpoch>,
}

pub struct EmbedResult {
    pub best_dir: PathBuf,
    pub report: EmbedReport,
}

/// Cosine of each (text1, text2) pair under the current weights, dropout off.
fn pair_cosines(model: &TrainableClassifier, pairs: &[(Vec<u32>, Vec<u32>)], mean: bool) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(EVAL_BATCH) {
        let a: Vec<&[u32]> = chunk.iter().map(|(a, _)| a.as_slice()).collect();
        let b: Vec<&[u32]> = chunk.iter().map(|(_, b)| b.as_slice()).collect();
        let ea = model.embeddings(&a, Mode::Eval, mean)?;
        let eb = model.embeddings(&b, Mode::Eval, mean)?;
        let cos = (ea * eb)?.sum(1)?.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
        out.extend(cos.into_iter().map(f64::from));
    }
    Ok(out)
}

fn loss_of(
    loss: EmbedLoss,
    model: &TrainableClassifier,
    a: &Tensor,
    b: &Tensor,
    labels: &[f32],
    config: &TrainConfig,
) -> Result<Tensor> {
    let device = a.device();
    match loss {
        // Each anchor's own positive against every other positive in the batch.
        EmbedLoss::Mnrl => {
            let scores = (a.matmul(&b.t()?)? * config.scale)?;
            let targets: Vec<u32> = (0..labels.len() as u32).collect();
            model.loss(&scores, &targets, None)
        }
        EmbedLoss::Cosine => {
            let cos = (a * b)?.sum(D::Minus1)?;
            let y = Tensor::from_slice(labels, labels.len(), device)?;
            Ok((cos - y)?.sqr()?.mean_all()?)
        }
        // sentence-transformers' ContrastiveLoss on the cosine distance d = 1 − cos:
        // ½·[y·d² + (1 − y)·max(0, margin − d)²].
        EmbedLoss::Contrastive => {
            let d = ((a * b)?.sum(D::Minus1)?.neg()? + 1.0)?;
            let y = Tensor::from_slice(labels, labels.len(), device)?;
            let positive = (&y * d.sqr()?)?;
            let negative = ((y.neg()? + 1.0)? * (d.neg()? + config.margin)?.relu()?.sqr()?)?;
            Ok(((positive + negative)?.mean_all()? * 0.5)?)
        }
    }
}

/// Writes the encoder as a sentence-transformers directory, atomically.
fn save_encoder(model: &TrainableClassifier, ckpt: &Checkpoint, config: &TrainConfig, dir: &Path) -> Result<()> {
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(partial.join("1_Pooling"))?;
    std::fs::create_dir_all(partial.join("2_Normalize"))?;
    let weights = model.snapshot()?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, w) in weights.iter().filter(|(n, _)| !n.starts_with("classifier.")) {
        tensors.insert(name.clone(), w.to_f32()?.contiguous()?);
    }
    candle_core::safetensors::save(&tensors, partial.join("model.safetensors"))?;
    let mut bert_config = serde_json::to_value(model.config())?;
    bert_config["architectures"] = serde_json::json!(["BertModel"]);
    bert_config["model_type"] = serde_json::json!("bert");
    bert_config["id2label"] = serde_json::Value::Null;
    std::fs::write(partial.join("config.json"), serde_json::to_string_pretty(&bert_config)?)?;
    std::fs::write(partial.join("tokenizer.json"), &ckpt.tokenizer_json)?;
    let special = &ckpt.special_tokens;
    let max_len = model.window().max_len();
    let json = |v: serde_json::Value| serde_json::to_string_pretty(&v);
    std::fs::write(
        partial.join("tokenizer_config.json"),
        json(serde_json::json!({"cls_token": special.cls, "sep_token": special.sep, "pad_token": special.pad,
            "tokenizer_class": "BertTokenizerFast", "model_max_length": max_len}))?,
    )?;
    std::fs::write(
        partial.join("modules.json"),
        json(serde_json::json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]))?,
    )?;
    let mean = config.pooling == "mean";
    std::fs::write(
        partial.join("1_Pooling/config.json"),
        json(serde_json::json!({"word_embedding_dimension": model.config().hidden_size,
            "pooling_mode_cls_token": !mean, "pooling_mode_mean_tokens": mean,
            "pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": false}))?,
    )?;
    std::fs::write(
        partial.join("sentence_bert_config.json"),
        json(serde_json::json!({"max_seq_length": max_len, "do_lower_case": false}))?,
    )?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&partial, dir).with_context(|| format!("moving the checkpoint to {}", dir.display()))?;
    Ok(())
}

fn encode_pairs(model: &TrainableClassifier, pairs: &[Pair], path: &Path) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let at = || format!("{}:{}", path.display(), p.line);
            Ok((model.encode(&p.text1, 2 * i).with_context(at)?, model.encode(&p.text2, 2 * i + 1).with_context(at)?))
        })
        .collect()
}

/// Fine-tunes `ckpt` into a sentence encoder on the pairs of `config.train` (validated on
/// `config.val`). Writes `<out>/best/`, `<out>/log.jsonl`, `<out>/report.json`,
/// `<out>/config.toml`.
pub fn train_embed(
    ckpt: &Checkpoint,
    config: &TrainConfig,
    on_epoch: &mut dyn FnMut(&EmbedEpoch),
) -> Result<EmbedResult> {
    config.validate()?;
    let loss = EmbedLoss::parse(&config.loss)?;
    let options = PairsOptions {
        text1_col: config.text1_col.clone(),
        text2_col: config.text2_col.clone(),
        label_col: config.label_col.clone(),
        ..Default::default()
    };
    let mut train = load_pairs(&config.train, &options)?;
    // MNRL learns from positives only: the other pairs of a batch are its negatives.
    if loss == EmbedLoss::Mnrl {
        train.retain(|p| p.label >= 0.5);
    }
    ensure!(train.len() >= 2, "{}: fewer than 2 usable training pairs", config.train.display());
    let val = match &config.val {
        Some(path) => load_pairs(path, &options)?,
        None => Vec::new(),
    };
    let device = device(&config.device)?;
    let model_options =
        ModelOptions { max_seq_len: config.max_seq_len.unwrap_or(128), stride: 0, dropout: config.dropout };
    let model = TrainableClassifier::new(ckpt, 1, model_options, config.seed, &device)?;
    let mean = config.pooling == "mean";
    let train_ids = encode_pairs(&model, &train, &config.train)?;
    let val_ids = match &config.val {
        Some(path) => encode_pairs(&model, &val, path)?,
        None => Vec::new(),
    };
    let val_labels: Vec<f64> = val.iter().map(|p| p.label).collect();

    let group = config.batch_size * config.grad_accum;
    let steps_per_epoch = train_ids.len().div_ceil(group);
    let total_steps = steps_per_epoch * config.epochs;
    let schedule = LinearSchedule {
        peak_lr: config.learning_rate,
        warmup_steps: config.warmup_steps.unwrap_or((config.warmup_ratio * total_steps as f64).round() as usize),
        total_steps,
    };
    let mut optimizer = AdamW::new(model.vars(), schedule.lr(0), config.weight_decay)?;
    let vars: Vec<_> = model.vars().iter().map(|(_, v)| v.clone()).collect();
    let rng = DropoutRng::new(config.seed);
    let out = config.out.as_path();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("config.toml"), config.to_toml()?)?;
    let mut log = std::fs::File::create(out.join("log.jsonl"))?;
    let best_dir = out.join("best");
    let (mut best, mut best_epoch, mut since_best) = (f64::NEG_INFINITY, None, 0);
    let mut history = Vec::new();
    let mut step = 0;

    for epoch in 1..=config.epochs {
        let started = Instant::now();
        let mut order: Vec<usize> = (0..train_ids.len()).collect();
        SplitMix64::new(config.seed.wrapping_add(epoch as u64)).shuffle(&mut order);
        let (mut loss_sum, mut seen) = (0f64, 0usize);
        for indices in order.chunks(group) {
            let mut grads_total: Option<candle_core::backprop::GradStore> = None;
            let micro: Vec<&[usize]> = indices.chunks(config.batch_size).collect();
            for batch in &micro {
                if loss == EmbedLoss::Mnrl && batch.len() < 2 {
                    continue; // one pair has no in-batch negative
                }
                let a: Vec<&[u32]> = batch.iter().map(|&i| train_ids[i].0.as_slice()).collect();
                let b: Vec<&[u32]> = batch.iter().map(|&i| train_ids[i].1.as_slice()).collect();
                let labels: Vec<f32> = batch.iter().map(|&i| train[i].label as f32).collect();
                let ea = model.embeddings(&a, Mode::Train(&rng), mean)?;
                let eb = model.embeddings(&b, Mode::Train(&rng), mean)?;
                let value = loss_of(loss, &model, &ea, &eb, &labels, config)?;
                loss_sum += value.to_scalar::<f32>()? as f64 * batch.len() as f64;
                seen += batch.len();
                accumulate(&mut grads_total, (value / micro.len() as f64)?.backward()?, &model)?;
            }
            if let Some(mut grads) = grads_total {
                let lr = schedule.lr(step);
                optimizer.set_learning_rate(lr);
                let grad_norm = clip_grad_norm(&mut grads, &vars, config.max_grad_norm)?;
                optimizer.step(&grads)?;
                step += 1;
                let entry = serde_json::json!({"type": "step", "epoch": epoch, "step": step,
                    "loss": loss_sum / seen.max(1) as f64, "learning_rate": lr, "grad_norm": grad_norm});
                writeln!(log, "{entry}")?;
            }
        }
        let val_spearman =
            if val_ids.is_empty() { None } else { spearman(&pair_cosines(&model, &val_ids, mean)?, &val_labels)? };
        // Without validation pairs the last epoch is the best one.
        let value = val_spearman.unwrap_or(epoch as f64);
        let improved = value > best;
        if improved {
            best = value;
            best_epoch = Some(epoch);
            since_best = 0;
            save_encoder(&model, ckpt, config, &best_dir)?;
        } else {
            since_best += 1;
        }
        let entry = EmbedEpoch {
            epoch,
            step,
            train_loss: loss_sum / seen.max(1) as f64,
            val_spearman,
            samples_per_second: seen as f64 / started.elapsed().as_secs_f64().max(1e-9),
            best: improved,
        };
        writeln!(log, "{}", serde_json::json!({"type": "eval", "event": entry}))?;
        on_epoch(&entry);
        history.push(entry);
        if config.patience.is_some_and(|p| since_best >= p) {
            break;
        }
    }
    let report = EmbedReport {
        loss: config.loss.clone(),
        train_pairs: train.len(),
        val_pairs: val.len(),
        best_epoch,
        val_spearman: history.iter().filter_map(|h| h.val_spearman).reduce(f64::max),
        history,
    };
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    Ok(EmbedResult { best_dir, report })
}
