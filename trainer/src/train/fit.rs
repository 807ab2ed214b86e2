//! The training loop every fine-tuning task shares (`train classify/binary/multilabel` in
//! run.rs, `train embed` in embed.rs): seeded epoch order → micro-batches whose gradients
//! are summed into one optimiser step (gradient accumulation) → AdamW on the linear
//! schedule, clipped → evaluation each epoch or every `eval_steps` → the best weights kept
//! → early stopping; and `<out>/state/` (weights, AdamW moments, step, position in the
//! epoch, dropout stream, selection so far), written atomically, that `--resume` continues
//! from to the same final weights.
//!
//! What differs between tasks — the loss of a micro-batch, how validation is scored, what the
//! best checkpoint looks like, what the history keeps — is a [`Learner`].

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use bedside_runtime::model::{DropoutRng, Mode, SplitMix64};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::classifier::TrainableClassifier;
use super::config::TrainConfig;
use super::optim::{clip_grad_norm, AdamW, LinearSchedule};
use crate::durable;

/// Knobs that are not part of the recipe.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    /// Continue from `<out>/state/`.
    pub resume: bool,
    /// Stop (as if killed) right after this many optimiser steps and a state save: tests
    /// use it to check that `--resume` reaches the same weights.
    pub stop_after_steps: Option<usize>,
}

/// One task's part of a run.
pub trait Learner {
    /// What the history keeps per evaluation (it is part of the resumable state).
    type Point: Serialize + DeserializeOwned + Clone;
    /// What an evaluation passes on to [`Learner::record`] besides the selection value.
    type Scores;

    /// Training items per epoch (windows, pairs, triplets).
    fn items(&self) -> usize;
    /// Each item's token count, for length-grouped batches (`group_by_length`); `None` keeps
    /// this learner's batches random whatever the config says.
    fn lengths(&self) -> Option<Vec<usize>>;
    /// The mean loss of one micro-batch (item indices); `None` skips it (nothing to learn
    /// from, e.g. one pair and no negative).
    fn loss(&self, model: &TrainableClassifier, batch: &[usize], mode: Mode) -> Result<Option<Tensor>>;
    /// Scores validation: the value that selects the best weights (`None`: no validation, so
    /// the latest weights are the best; a non-finite value never wins) and the rest.
    fn evaluate(&mut self, model: &TrainableClassifier) -> Result<(Option<f64>, Self::Scores)>;
    /// Whether `candidate` beats `best`.
    fn better(&self, candidate: f64, best: f64) -> bool;
    /// Writes the weights as the run's best checkpoint.
    fn save_best(&self, model: &TrainableClassifier) -> Result<()>;
    /// Tells the caller about an evaluation; returns the log's event and the history point.
    fn record(&mut self, at: &Evaluated, scores: Self::Scores) -> Result<(serde_json::Value, Self::Point)>;
}

/// Where an evaluation happened and what the loop knows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub epoch: usize,
    pub step: usize,
    /// Mean training loss since the previous evaluation.
    pub train_loss: f64,
    pub value: Option<f64>,
    /// The weights were saved as the best so far.
    pub best: bool,
    pub samples_per_second: f64,
    /// The learning rate of the next step.
    pub learning_rate: f64,
}

/// What `--resume` reads back: where the run stands and what it has seen so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState<P> {
    /// The epoch in progress (1-based) and the groups of micro-batches (optimiser steps)
    /// done within it.
    pub epoch: usize,
    pub steps_in_epoch: usize,
    pub step: usize,
    pub dropout_rng: u64,
    pub loss_sum: f64,
    pub seen: usize,
    /// The best validation value so far; `None` before the first finite one.
    pub best_metric: Option<f64>,
    pub best_epoch: Option<usize>,
    pub evals_since_best: usize,
    pub history: Vec<P>,
    pub finished: bool,
    /// The length of `log.jsonl` when this state was saved: `--resume` cuts the log back to
    /// it, so the steps the resumed run repeats are logged once. `None` in older states.
    #[serde(default)]
    pub log_bytes: Option<u64>,
}

impl<P> RunState<P> {
    pub fn start(dropout_rng: u64) -> RunState<P> {
        RunState {
            epoch: 1,
            steps_in_epoch: 0,
            step: 0,
            dropout_rng,
            loss_sum: 0.0,
            seen: 0,
            best_metric: None,
            best_epoch: None,
            evals_since_best: 0,
            history: Vec::new(),
            finished: false,
            log_bytes: None,
        }
    }
}

/// The learning-rate schedule of a run over `items` training items.
pub fn schedule(config: &TrainConfig, items: usize) -> LinearSchedule {
    let steps_per_epoch = items.div_ceil(config.batch_size * config.grad_accum);
    let total_steps = steps_per_epoch * config.epochs;
    LinearSchedule {
        peak_lr: config.learning_rate,
        warmup_steps: config.warmup_steps.unwrap_or((config.warmup_ratio * total_steps as f64).ceil() as usize),
        total_steps,
    }
}

/// Trains `model` with `learner`'s loss under `config`'s recipe. Writes `<out>/config.toml`,
/// `<out>/log.jsonl` and `<out>/state/`; the learner writes the best checkpoint. Returns the
/// final state, or `None` when `control.stop_after_steps` stopped the run.
pub fn fit<L: Learner>(
    model: &TrainableClassifier,
    config: &TrainConfig,
    control: &RunControl,
    learner: &mut L,
) -> Result<Option<RunState<L::Point>>> {
    let out = config.out.as_path();
    let n = learner.items();
    let schedule = schedule(config, n);
    let mut optimizer = AdamW::new(model.vars(), schedule.lr(0), config.weight_decay)?;
    let vars: Vec<Var> = model.vars().iter().map(|(_, v)| v.clone()).collect();
    let rng = DropoutRng::new(config.seed).with_precision(config.matmul_precision()?);
    let log_path = out.join("log.jsonl");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut state = if control.resume {
        let saved = TrainConfig::from_toml_file(&out.join("config.toml"))
            .context("--resume needs the config.toml of the interrupted run")?;
        ensure!(
            saved.same_run_as(config),
            "--resume: the options differ from the interrupted run's ({}); resume with the same options",
            out.join("config.toml").display()
        );
        // A kill while `best/` was being replaced leaves it as `best.old`: take it back.
        durable::recover_dir(&out.join("best"))?;
        let state = load_state(out, model, &mut optimizer)?;
        rng.restore(state.dropout_rng);
        truncate_log(&log_path, state.log_bytes)?;
        state
    } else {
        durable::write_file_atomic(&out.join("config.toml"), config.to_toml()?.as_bytes())?;
        match std::fs::remove_file(&log_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", log_path.display()))
            }
            _ => {}
        }
        RunState::start(rng.position())
    };
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;

    let group = config.batch_size * config.grad_accum;
    let lengths = if config.group_by_length { learner.lengths() } else { None };
    'epochs: while !state.finished && state.epoch <= config.epochs {
        let epoch = state.epoch;
        let order = epoch_order(n, lengths.as_deref(), group, config.seed, epoch);
        if let (Some(lengths), 0) = (&lengths, state.steps_in_epoch) {
            // What grouping saved this epoch, against the plain random order of the same seed.
            let random = shuffled(n, config.seed, epoch);
            let entry = serde_json::json!({"type": "batches", "epoch": epoch, "grouped_by_length": true,
                "padded_tokens": padded_tokens(&order, lengths, group, config.batch_size),
                "padded_tokens_random_order": padded_tokens(&random, lengths, group, config.batch_size)});
            writeln!(log, "{entry}")?;
        }
        let bar = progress_bar(n, epoch, config.epochs);
        bar.set_position((state.steps_in_epoch * group).min(n) as u64);
        let started = Instant::now();
        let mut seen_now = 0usize;
        for indices in order.chunks(group).skip(state.steps_in_epoch) {
            let mut acc = None;
            let micro: Vec<&[usize]> = indices.chunks(config.batch_size).collect();
            for batch in &micro {
                let Some(loss) = learner.loss(model, batch, Mode::Train(&rng))? else { continue };
                state.loss_sum += loss.to_scalar::<f32>()? as f64 * batch.len() as f64;
                state.seen += batch.len();
                seen_now += batch.len();
                accumulate(&mut acc, (loss / micro.len() as f64)?.backward()?, model)?;
            }
            state.steps_in_epoch += 1;
            let stepped = acc.is_some();
            if let Some(mut grads) = acc {
                let lr = schedule.lr(state.step);
                optimizer.set_learning_rate(lr);
                let grad_norm = clip_grad_norm(&mut grads, &vars, config.max_grad_norm)?;
                optimizer.step(&grads)?;
                state.step += 1;
                let rate = seen_now as f64 / started.elapsed().as_secs_f64().max(1e-9);
                let train_loss = state.loss_sum / state.seen.max(1) as f64;
                bar.set_position((state.steps_in_epoch * group).min(n) as u64);
                bar.set_message(format!("loss {train_loss:.4} lr {lr:.2e} {rate:.1}/s"));
                let entry = serde_json::json!({"type": "step", "epoch": epoch, "step": state.step, "loss": train_loss,
                    "learning_rate": lr, "grad_norm": grad_norm, "samples_per_second": rate,
                    "threads": rayon::current_num_threads()});
                writeln!(log, "{entry}")?;
            }
            let every = |k: Option<usize>| stepped && k.is_some_and(|k| state.step % k == 0);
            let epoch_done = state.steps_in_epoch * group >= n;
            let eval_now = epoch_done || every(config.eval_steps);
            if eval_now {
                let (value, scores) = learner.evaluate(model)?;
                let improved = match (value, state.best_metric) {
                    (Some(v), Some(best)) => learner.better(v, best),
                    // No validation: the latest weights; nothing finite yet: anything.
                    _ => true,
                };
                if improved {
                    state.best_metric = value.filter(|v| v.is_finite());
                    state.best_epoch = Some(epoch);
                    state.evals_since_best = 0;
                    learner.save_best(model)?;
                } else {
                    state.evals_since_best += 1;
                }
                let at = Evaluated {
                    epoch,
                    step: state.step,
                    train_loss: state.loss_sum / state.seen.max(1) as f64,
                    value,
                    best: improved,
                    samples_per_second: seen_now as f64 / started.elapsed().as_secs_f64().max(1e-9),
                    learning_rate: schedule.lr(state.step),
                };
                let (event, point) = bar.suspend(|| learner.record(&at, scores))?;
                writeln!(log, "{}", serde_json::json!({"type": "eval", "event": event}))?;
                state.history.push(point);
                state.loss_sum = 0.0;
                state.seen = 0;
                if config.patience.is_some_and(|p| state.evals_since_best >= p) {
                    state.finished = true;
                }
            }
            if epoch_done {
                state.epoch += 1;
                state.steps_in_epoch = 0;
            }
            let stop_now = stepped && control.stop_after_steps == Some(state.step);
            if eval_now || every(config.save_steps) || stop_now {
                state.dropout_rng = rng.position();
                state.log_bytes = Some(sync_log(&log, &log_path)?);
                save_state(out, model, &optimizer, &state)?;
            }
            if stop_now {
                bar.abandon();
                return Ok(None);
            }
            if state.finished || epoch_done {
                bar.finish_and_clear();
                continue 'epochs;
            }
        }
        // An epoch with no items left (empty training set) still advances.
        bar.finish_and_clear();
        if state.epoch == epoch {
            state.epoch += 1;
            state.steps_in_epoch = 0;
        }
    }
    state.finished = true;
    state.dropout_rng = rng.position();
    state.log_bytes = Some(sync_log(&log, &log_path)?);
    save_state(out, model, &optimizer, &state)?;
    Ok(Some(state))
}

fn save_state<P: Serialize>(
    out: &Path,
    model: &TrainableClassifier,
    optimizer: &AdamW,
    state: &RunState<P>,
) -> Result<()> {
    let vars: HashMap<String, Tensor> = model
        .vars()
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    let moments: HashMap<String, Tensor> = optimizer.state()?.into_iter().collect();
    let json = serde_json::to_string_pretty(state)?;
    durable::replace_dir_atomic(&out.join("state"), |partial| {
        candle_core::safetensors::save(&vars, partial.join("model.safetensors"))?;
        candle_core::safetensors::save(&moments, partial.join("optimizer.safetensors"))?;
        std::fs::write(partial.join("state.json"), &json)?;
        Ok(())
    })
}

/// Makes the log's lines so far durable and returns its length, which the state records.
fn sync_log(log: &std::fs::File, path: &Path) -> Result<u64> {
    log.sync_data().with_context(|| format!("syncing {}", path.display()))?;
    Ok(log.metadata().with_context(|| format!("reading {}", path.display()))?.len())
}

/// Cuts the log back to the `len` bytes it had when the resumed state was saved (the lines of
/// steps the resumed run will do again), atomically.
fn truncate_log(path: &Path, len: Option<u64>) -> Result<()> {
    let Some(len) = len else { return Ok(()) };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    match usize::try_from(len) {
        Ok(len) if len < bytes.len() => Ok(durable::write_file_atomic(path, &bytes[..len])?),
        _ => Ok(()),
    }
}

fn load_state<P: DeserializeOwned>(
    out: &Path,
    model: &TrainableClassifier,
    optimizer: &mut AdamW,
) -> Result<RunState<P>> {
    let dir = out.join("state");
    durable::recover_dir(&dir)?;
    let text = std::fs::read_to_string(dir.join("state.json"))
        .with_context(|| format!("--resume: no saved state in {}", dir.display()))?;
    let state: RunState<P> = serde_json::from_str(&text).with_context(|| format!("{}/state.json", dir.display()))?;
    let device = model.device().clone();
    let vars = candle_core::safetensors::load(dir.join("model.safetensors"), &device)?;
    for (name, var) in model.vars() {
        let saved = vars.get(name).with_context(|| format!("{}: saved state lacks {name}", dir.display()))?;
        var.set(saved)?;
    }
    let moments = candle_core::safetensors::load(dir.join("optimizer.safetensors"), &device)?;
    optimizer.restore(&moments, state.step)?;
    Ok(state)
}

/// Optimiser steps per mega-batch when grouping by length (HF Trainer's `megabatch_mult`).
const MEGA_BATCH_STEPS: usize = 50;
/// Mixed into the seed for the order of length-grouped steps, so it is not the item shuffle's.
const STEP_SHUFFLE: u64 = 0xA5A5_5A5A_C3C3_3C3C;

/// The seeded item order of an epoch, read `group` items per optimiser step: the same on every
/// machine, so `--resume` skips into the same order. With `lengths`, grouped by length: the
/// shuffled items cut into mega-batches of [`MEGA_BATCH_STEPS`] steps, each sorted longest
/// first (ties keep the shuffle), its steps taken in turn, and all full steps shuffled; a short
/// last step stays last, where the loop expects it.
pub fn epoch_order(n: usize, lengths: Option<&[usize]>, group: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let order = shuffled(n, seed, epoch);
    let Some(lengths) = lengths.filter(|l| l.len() == n && group > 0) else { return order };
    let mut steps: Vec<Vec<usize>> = Vec::with_capacity(n.div_ceil(group));
    for mega in order.chunks(group * MEGA_BATCH_STEPS) {
        let mut mega = mega.to_vec();
        mega.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        steps.extend(mega.chunks(group).map(<[usize]>::to_vec));
    }
    let short_last = steps.pop_if(|last| last.len() < group);
    SplitMix64::new(seed.wrapping_add(epoch as u64) ^ STEP_SHUFFLE).shuffle(&mut steps);
    steps.extend(short_last);
    steps.concat()
}

/// Padding tokens the batches of `order` carry: each micro-batch pads to its longest item.
pub fn padded_tokens(order: &[usize], lengths: &[usize], group: usize, batch_size: usize) -> usize {
    order
        .chunks(group.max(1))
        .flat_map(|step| step.chunks(batch_size.max(1)))
        .map(|batch| {
            let longest = batch.iter().map(|&i| lengths[i]).max().unwrap_or(0);
            batch.iter().map(|&i| longest - lengths[i]).sum::<usize>()
        })
        .sum()
}

/// The seeded batch order of an epoch: the same on every machine.
pub fn shuffled(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed.wrapping_add(epoch as u64)).shuffle(&mut order);
    order
}

/// Adds a micro-batch's gradients into the step's total (gradient accumulation).
pub fn accumulate(acc: &mut Option<GradStore>, grads: GradStore, model: &TrainableClassifier) -> Result<()> {
    let Some(total) = acc else {
        *acc = Some(grads);
        return Ok(());
    };
    for (_, var) in model.vars() {
        if let Some(g) = grads.get(var.as_tensor()) {
            let sum = match total.get(var.as_tensor()) {
                Some(prev) => (prev + g)?,
                None => g.clone(),
            };
            total.insert(var.as_tensor(), sum);
        }
    }
    Ok(())
}

fn progress_bar(len: usize, epoch: usize, epochs: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    let style = indicatif::ProgressStyle::with_template(
        "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed} / ~{duration})",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths as real notes have them: many short, a long tail.
    fn lengths(n: usize) -> Vec<usize> {
        let mut rng = SplitMix64::new(3);
        (0..n).map(|_| 8 + (rng.next_f64().powi(3) * 120.0) as usize).collect()
    }

    #[test]
    fn length_grouped_order_is_a_seeded_permutation_that_pads_less() {
        let (n, group, batch) = (1_003, 16, 8);
        let lengths = lengths(n);
        let order = epoch_order(n, Some(&lengths), group, 42, 1);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "every item once");
        assert_eq!(order, epoch_order(n, Some(&lengths), group, 42, 1), "the same seed, the same order");
        assert_ne!(order, epoch_order(n, Some(&lengths), group, 42, 2), "each epoch its own order");
        let random = epoch_order(n, None, group, 42, 1);
        assert_eq!(random, shuffled(n, 42, 1));
        let (grouped, plain) =
            (padded_tokens(&order, &lengths, group, batch), padded_tokens(&random, &lengths, group, batch));
        assert!(grouped * 4 < plain, "padding {grouped} grouped vs {plain} random");
        // The short last step (1,003 = 62 × 16 + 11) stays last.
        let last: Vec<usize> = order[n - n % group..].to_vec();
        assert_eq!(last.len(), 11);
        // Steps come in shuffled order, not longest first.
        let step_longest: Vec<usize> =
            order.chunks(group).map(|s| s.iter().map(|&i| lengths[i]).max().unwrap()).collect();
        assert!(step_longest.windows(2).any(|w| w[0] < w[1]), "steps are shuffled");
    }
}
