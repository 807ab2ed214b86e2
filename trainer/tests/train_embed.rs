//! `train embed` on a tiny random BERT: each loss lowers its training loss and raises the
//! validation Spearman on a toy pairs task; the best checkpoint is a sentence-transformers
//! directory that the runtime embeds with mean pooling, L2-normalised.

use std::path::{Path, PathBuf};

use bedside::train::config::TrainConfig;
use bedside::train::embed::train_embed;
use bedside_runtime::checkpoint::Checkpoint;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/tiny-safetensors")
}

/// Related pairs share an organ system; unrelated ones do not.
fn pairs_csv(dir: &Path) -> PathBuf {
    let groups = [
        ["chest pain", "cardiac murmur", "heart pain", "cardiac edema"],
        ["cough and fever", "asthma with cough", "lung infection", "shortness of breath"],
        ["diabetes", "blood sugar glucose", "insulin and metformin", "high glucose level"],
    ];
    let mut csv = String::from("text1,text2,label\n");
    for (g, group) in groups.iter().enumerate() {
        for (i, a) in group.iter().enumerate() {
            for b in group.iter().skip(i + 1) {
                csv.push_str(&format!("{a},{b},1\n"));
            }
            let other = groups[(g + 1) % 3][i];
            csv.push_str(&format!("{a},{other},0\n"));
        }
    }
    let path = dir.join("pairs.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn run(loss: &str, name: &str) -> (serde_json::Value, PathBuf) {
    let dir = std::env::temp_dir().join(format!("bedside-embed-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pairs = pairs_csv(&dir);
    let config = TrainConfig {
        base: fixture().display().to_string(),
        train: pairs.clone(),
        val: Some(pairs),
        out: dir.join("run"),
        epochs: 8,
        batch_size: 6,
        learning_rate: 2e-3,
        max_seq_len: Some(16),
        loss: loss.into(),
        ..Default::default()
    };
    let ckpt = Checkpoint::from_dir(&fixture()).unwrap();
    let result = train_embed(&ckpt, &config, &mut |_| {}).unwrap();
    (serde_json::to_value(&result.report).unwrap(), result.best_dir)
}

fn check_learns(report: &serde_json::Value) {
    let history = report["history"].as_array().unwrap();
    let first = &history[0];
    let last = history.last().unwrap();
    assert!(last["train_loss"].as_f64().unwrap() < first["train_loss"].as_f64().unwrap(), "{report}");
    let best = report["val_spearman"].as_f64().unwrap();
    assert!(best > first["val_spearman"].as_f64().unwrap() && best > 0.5, "{report}");
}

#[test]
fn mnrl_learns_and_saves_a_sentence_transformers_directory() {
    let (report, best) = run("mnrl", "mnrl");
    check_learns(&report);
    for file in ["modules.json", "1_Pooling/config.json", "sentence_bert_config.json", "model.safetensors"] {
        assert!(best.join(file).is_file(), "{file} missing");
    }
    let model = bedside_runtime::Model::from_checkpoint_dir(&best).unwrap();
    assert_eq!(model.manifest().task, bedside_runtime::Task::Embedding);
    assert_eq!(model.manifest().pooling, bedside_runtime::pipeline::pool::Pooling::Mean);
    let v = model.embed(&["chest pain", "cardiac murmur", "cough and fever"]).unwrap();
    let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(cos(&v[0], &v[1]) > cos(&v[0], &v[2]), "related pair not closer than unrelated");
}

#[test]
fn cosine_and_contrastive_losses_learn_too() {
    check_learns(&run("cosine", "cosine").0);
    check_learns(&run("contrastive", "contrastive").0);
}
