//! Fine-tuning a classifier on a tiny random BERT: the loss falls on a learnable task, a
//! seed repeats a run bit for bit on CPU, and class weights act as scikit-learn's "balanced".

use std::path::Path;

use bedside::train::classifier::{balanced_class_weights, ModelOptions, TrainableClassifier};
use bedside::train::optim::{clip_grad_norm, AdamW, LinearSchedule};
use bedside_runtime::checkpoint::{Checkpoint, ServingSettings};
use bedside_runtime::model::{DropoutRng, HeadFeatures, Mode};
use bedside_runtime::pipeline::aggregate::Aggregation;
use bedside_runtime::Task;
use candle_core::Device;

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
    let ckpt = checkpoint();
    let model = TrainableClassifier::new(&ckpt, 3, ModelOptions::new(32), seed, &Device::Cpu).unwrap();
    let data = toy_data();
    let encoded: Vec<Vec<u32>> = data.iter().enumerate().map(|(i, (t, _))| model.encode(t, i).unwrap()).collect();
    let batch: Vec<&[u32]> = encoded.iter().map(Vec::as_slice).collect();
    let targets: Vec<u32> = data.iter().map(|(_, y)| *y).collect();
    let eval_loss = |m: &TrainableClassifier| {
        m.loss(&m.logits(&batch, Mode::Eval).unwrap(), &targets, None).unwrap().to_scalar::<f32>().unwrap()
    };
    let before = eval_loss(&model);
    let schedule = LinearSchedule { peak_lr: 3e-3, warmup_steps: 2, total_steps: steps };
    let mut optimizer = AdamW::new(model.vars(), schedule.lr(0), 0.01).unwrap();
    let vars: Vec<_> = model.vars().iter().map(|(_, v)| v.clone()).collect();
    let rng = DropoutRng::new(seed);
    for step in 0..steps {
        optimizer.set_learning_rate(schedule.lr(step));
        let loss = model.loss(&model.logits(&batch, Mode::Train(&rng)).unwrap(), &targets, None).unwrap();
        let mut grads = loss.backward().unwrap();
        clip_grad_norm(&mut grads, &vars, 1.0).unwrap();
        optimizer.step(&grads).unwrap();
    }
    let after = eval_loss(&model);
    (model, before, after)
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
    let snapshot = |seed| {
        let (model, _, _) = train(4, seed);
        let weights = model.snapshot().unwrap();
        let mut rows: Vec<(String, Vec<f32>)> = weights
            .iter()
            .map(|(n, w)| (n.clone(), w.to_f32().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    };
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
