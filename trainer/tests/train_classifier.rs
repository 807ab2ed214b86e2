//! Fine-tuning a classifier on a tiny random BERT: the loss falls on a learnable task, a
//! seed repeats a run bit for bit on CPU, and class weights act as scikit-learn's "balanced".

use std::path::Path;

use bedside::train::classifier::{balanced_class_weights, ModelOptions, TrainableClassifier};
use bedside::train::optim::{clip_grad_norm, AdamW, LinearSchedule};
use bedside_runtime::checkpoint::{Checkpoint, ServingSettings};
use bedside_runtime::model::{DropoutRng, HeadFeatures, Mode, Precision};
use bedside_runtime::pipeline::aggregate::Aggregation;
use bedside_runtime::Task;
use candle_core::Device;

#[path = "../../wasm/tests/common/mod.rs"]
mod common;

fn checkpoint() -> Checkpoint {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/tiny-safetensors");
    Checkpoint::from_dir(&dir).unwrap()
}

/// Three classes told apart by their words: cardiology, endocrinology, respiratory.
fn toy_data() -> Vec<(&'static str, u32)> {
    vec![
        ("chest pain", 0),
        ("heart pain", 0),
        ("chest pain and heart", 0),
        ("diabetes glucose", 1),
        ("insulin and metformin", 1),
        ("blood sugar glucose", 1),
        ("cough fever", 2),
        ("asthma breath", 2),
        ("lung cough", 2),
    ]
}

/// Trains full-batch for `steps` and returns (model, loss before, loss after), losses in
/// evaluation mode (no dropout).
fn train(steps: usize, seed: u64) -> (TrainableClassifier, f32, f32) {
    let run = fit(&checkpoint(), steps, seed, ModelOptions::new(32), Precision::F32);
    (run.model, run.eval_before, run.eval_after)
}

struct Run {
    model: TrainableClassifier,
    eval_before: f32,
    eval_after: f32,
    /// The training loss of each step.
    losses: Vec<f32>,
}

/// Full-batch AdamW on the toy data for `steps`, matmuls in `precision`.
fn fit(ckpt: &Checkpoint, steps: usize, seed: u64, options: ModelOptions, precision: Precision) -> Run {
    let model = TrainableClassifier::new(ckpt, 3, options, seed, &Device::Cpu).unwrap();
    let data = toy_data();
    let encoded: Vec<Vec<u32>> = data.iter().enumerate().map(|(i, (t, _))| model.encode(t, i).unwrap()).collect();
    let batch: Vec<&[u32]> = encoded.iter().map(Vec::as_slice).collect();
    let targets: Vec<u32> = data.iter().map(|(_, y)| *y).collect();
    let eval_loss = |m: &TrainableClassifier| {
        m.loss(&m.logits(&batch, Mode::Eval).unwrap(), &targets, None).unwrap().to_scalar::<f32>().unwrap()
    };
    let eval_before = eval_loss(&model);
    let schedule = LinearSchedule { peak_lr: 3e-3, warmup_steps: 2, total_steps: steps };
    let mut optimizer = AdamW::new(model.vars(), schedule.lr(0), 0.01).unwrap();
    let vars: Vec<_> = model.vars().iter().map(|(_, v)| v.clone()).collect();
    let rng = DropoutRng::new(seed).with_precision(precision);
    let mut losses = Vec::with_capacity(steps);
    for step in 0..steps {
        optimizer.set_learning_rate(schedule.lr(step));
        let loss = model.loss(&model.logits(&batch, Mode::Train(&rng)).unwrap(), &targets, None).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        let mut grads = loss.backward().unwrap();
        clip_grad_norm(&mut grads, &vars, 1.0).unwrap();
        optimizer.step(&grads).unwrap();
    }
    let eval_after = eval_loss(&model);
    Run { model, eval_before, eval_after, losses }
}

/// Every weight, flattened, in name order.
fn flat_weights(model: &TrainableClassifier) -> Vec<(String, Vec<f32>)> {
    let mut rows: Vec<(String, Vec<f32>)> = model
        .snapshot()
        .unwrap()
        .iter()
        .map(|(n, w)| (n.clone(), w.to_f32().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

#[test]
fn loss_falls_on_a_learnable_task() {
    let (model, before, after) = train(80, 1);
    assert!(after < 0.3 * before, "loss {before} → {after}");
    let data = toy_data();
    let encoded: Vec<Vec<u32>> = data.iter().enumerate().map(|(i, (t, _))| model.encode(t, i).unwrap()).collect();
    let batch: Vec<&[u32]> = encoded.iter().map(Vec::as_slice).collect();
    let predicted = model.logits(&batch, Mode::Eval).unwrap().argmax(1).unwrap().to_vec1::<u32>().unwrap();
    let wanted: Vec<u32> = data.iter().map(|(_, y)| *y).collect();
    assert_eq!(predicted, wanted);
}

#[test]
fn the_same_seed_repeats_a_cpu_run_exactly() {
    let snapshot = |seed| flat_weights(&train(4, seed).0);
    let a = snapshot(7);
    assert!(a == snapshot(7), "same seed, different weights");
    assert!(a != snapshot(8), "different seeds gave identical weights");
}

#[test]
fn balanced_class_weights_match_scikit_learn_and_weight_the_loss() {
    // sklearn.utils.class_weight.compute_class_weight("balanced", classes=[0,1,2], y=[0]*6+[1]*2+[2]*2)
    // = 10 / (3 · [6, 2, 2]) = [0.5556, 1.6667, 1.6667]
    let w = balanced_class_weights(&[6, 2, 2]);
    let want = [10.0 / 18.0, 10.0 / 6.0, 10.0 / 6.0];
    assert!(w.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{w:?}");

    let model = TrainableClassifier::new(&checkpoint(), 3, ModelOptions::new(32), 3, &Device::Cpu).unwrap();
    let texts = ["chest pain", "diabetes glucose", "cough fever"];
    let encoded: Vec<Vec<u32>> = texts.iter().enumerate().map(|(i, t)| model.encode(t, i).unwrap()).collect();
    let batch: Vec<&[u32]> = encoded.iter().map(Vec::as_slice).collect();
    let targets = [0u32, 1, 2];
    let logits = model.logits(&batch, Mode::Eval).unwrap();
    let weighted = model.loss(&logits, &targets, Some(&w)).unwrap().to_scalar::<f32>().unwrap();
    // By hand: −Σ w[y]·log softmax(logits)[y] / Σ w[y].
    let rows = logits.to_vec2::<f32>().unwrap();
    let (mut num, mut den) = (0f32, 0f32);
    for (row, &y) in rows.iter().zip(&targets) {
        let max = row.iter().cloned().fold(f32::MIN, f32::max);
        let log_z = max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
        num += w[y as usize] * (log_z - row[y as usize]);
        den += w[y as usize];
    }
    assert!((weighted - num / den).abs() < 1e-5, "{weighted} vs {}", num / den);
    let plain = model.loss(&logits, &targets, None).unwrap().to_scalar::<f32>().unwrap();
    assert!((plain - weighted).abs() > 1e-4, "weights had no effect");
}

#[test]
fn a_saved_checkpoint_reloads_to_the_same_logits() {
    let (model, _, _) = train(6, 2);
    let dir = std::env::temp_dir().join(format!("bedside-reload-{}", std::process::id()));
    let ckpt = checkpoint();
    let serving = ServingSettings {
        task: Task::Classification,
        labels: ["a", "b", "c"].iter().map(|s| s.to_string()).collect(),
        max_seq_len: 32,
        stride: 4,
        aggregation: Aggregation::Mean,
        decision_threshold: 0.5,
        min_confidence: 0.0,
        head_features: HeadFeatures::Pooler,
        entity_aggregation: Default::default(),
        scrub: None,
    };
    bedside::train::run::save_checkpoint(&model, &ckpt, &serving, &dir).unwrap();
    let reloaded = Checkpoint::from_dir(&dir).unwrap();
    assert_eq!(reloaded.serving.as_ref(), Some(&serving), "serving settings did not survive the round trip");
    let reloaded = TrainableClassifier::from_trained(&reloaded, ModelOptions::new(32), &Device::Cpu).unwrap();
    let before = model.snapshot().unwrap();
    let after = reloaded.snapshot().unwrap();
    for (name, w) in before.iter() {
        let x = w.to_f32().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let y = after.get_any(name).unwrap_or_else(|_| panic!("{name} missing after reload"));
        let y = y.to_f32().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(x, y, "{name} differs after reload");
    }
    assert_eq!(before.iter().count(), after.iter().count());
    let ids = model.encode("chest pain and cough", 0).unwrap();
    let a = model.logits(&[&ids], Mode::Eval).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reloaded.logits(&[&ids], Mode::Eval).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert!(diff < 1e-5, "reloaded logits differ by {diff}: {a:?} vs {b:?}");
}

/// bf16 autocast against f32 from the same start, dropout off: the loss trajectory and the
/// final weights stay within a stated tolerance, and the two runs do differ (the bf16 path is
/// not silently f32). Tolerances: bf16 keeps 8 mantissa bits (relative rounding 2^-9 ≈ 0.002
/// per value); over these few steps the loss may drift 3 % and the weights 1 % of their norm
/// (measured: loss 0.07 % / 1.7 %, weights 0.21 % / 0.33 %, tiny / MiniLM). (Measured
/// against the weights' change since the start, the runs are further apart, ~5 %:
/// AdamW's first steps move each weight by about ±lr whatever its gradient's size, so a
/// rounding that flips a small gradient's sign moves that weight the other way.)
fn bf16_follows_f32(ckpt: &Checkpoint, steps: usize) {
    let options = || ModelOptions { dropout: Some(0.0), ..ModelOptions::new(32) };
    let f32_run = fit(ckpt, steps, 3, options(), Precision::F32);
    let bf16_run = fit(ckpt, steps, 3, options(), Precision::Bf16);
    let start = flat_weights(&TrainableClassifier::new(ckpt, 3, options(), 3, &Device::Cpu).unwrap());
    let worst_loss = f32_run
        .losses
        .iter()
        .zip(&bf16_run.losses)
        .map(|(a, b)| (a - b).abs() / a.abs().max(1e-3))
        .fold(0.0f32, f32::max);
    let (mut norm, mut moved, mut apart) = (0.0f64, 0.0f64, 0.0f64);
    for (((name, a), (_, b)), (_, w0)) in
        flat_weights(&f32_run.model).iter().zip(&flat_weights(&bf16_run.model)).zip(&start)
    {
        assert_eq!(a.len(), b.len(), "{name}");
        norm += a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>();
        moved += a.iter().zip(w0).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>();
        apart += a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>();
    }
    let (relative, of_change) = ((apart / norm).sqrt(), (apart / moved).sqrt());
    eprintln!(
        "bf16 vs f32 over {steps} steps: loss ≤ {worst_loss:.2e} relative; weights {relative:.2e} of their norm \
         ({of_change:.2e} of their change) apart"
    );
    assert!(worst_loss > 0.0 && apart > 0.0, "bf16 gave exactly the f32 run: its matmuls are not bf16");
    assert!(worst_loss < 0.03, "bf16 loss trajectory strays from f32 by {worst_loss} (relative)");
    assert!(relative < 1e-2, "bf16 final weights are {relative} of their norm away from f32's");
    assert!(bf16_run.eval_after < bf16_run.eval_before, "bf16 did not learn");
}

#[test]
fn bf16_training_follows_f32_on_the_tiny_model() {
    bf16_follows_f32(&checkpoint(), 12);
}

#[test]
fn bf16_training_follows_f32_on_minilm() {
    let Some(dir) = common::minilm_dir() else { return };
    bf16_follows_f32(&Checkpoint::from_dir(&dir).unwrap(), 6);
}
