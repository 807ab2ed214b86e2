//! Whole training runs on a tiny random BERT, through the library the CLI calls: binary
//! (windowed long notes), multi-label and the probe learn a toy task and write the report;
//! `--resume` after an interruption reaches bit-identical weights; unusable rows are reported
//! with their line numbers; scrubbing happens before training.

use std::path::{Path, PathBuf};

use bedside::train::config::{ClassWeights, TaskKind, TrainConfig};
use bedside::train::prepare::prepare;
use bedside::train::run::{train, RunControl};
use bedside_runtime::checkpoint::Checkpoint;

mod common;
use common::{fixture, temp_dir, write};

/// Cardiac vs respiratory notes; `repeat` copies of the vocabulary-only phrases.
fn binary_rows(repeat: usize, long: bool) -> String {
    let positive = ["chest pain and cardiac murmur", "heart murmur with chest pain", "cardiac edema and heart pain"];
    let negative = ["cough and fever", "asthma with shortness of breath", "lung infection and cough"];
    let filler = if long { " the patient was admitted and discharged stable".repeat(6) } else { String::new() };
    let mut csv = String::from("text,label\n");
    for i in 0..repeat {
        for p in positive {
            csv.push_str(&format!("\"{p}{}\",yes\n", if i % 2 == 0 { filler.as_str() } else { "" }));
        }
        for n in negative {
            csv.push_str(&format!("\"{n}{}\",no\n", if i % 2 == 1 { filler.as_str() } else { "" }));
        }
    }
    csv
}

fn base_config(dir: &Path, train: PathBuf, val: PathBuf) -> TrainConfig {
    TrainConfig {
        base: fixture().display().to_string(),
        train,
        val: Some(val),
        out: dir.join("run"),
        epochs: 6,
        batch_size: 4,
        learning_rate: 3e-3,
        max_seq_len: Some(24),
        stride: Some(4),
        seed: 5,
        ..Default::default()
    }
}

fn run(task: TaskKind, config: &TrainConfig, control: &RunControl) -> bedside::train::run::RunResult {
    let ckpt = Checkpoint::from_dir(&fixture()).unwrap();
    let data = prepare(config, task).unwrap();
    train(&ckpt, task, data, config, control, &mut |_| {}).unwrap()
}

fn report_json(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn binary_long_notes_train_as_windows_and_choose_a_threshold() {
    let dir = temp_dir("binary");
    let train_file = write(&dir, "train.csv", &binary_rows(4, true));
    let val_file = write(&dir, "val.csv", &binary_rows(2, true));
    let config = TrainConfig { target_sensitivity: Some(0.9), ..base_config(&dir, train_file, val_file) };
    let result = run(TaskKind::Binary, &config, &RunControl::default());
    let report = report_json(&config.out);
    assert_eq!(report["task"], "binary");
    assert_eq!(report["labels"], serde_json::json!(["no", "yes"]));
    for key in ["accuracy", "macro_f1", "weighted_f1", "roc_auc_macro", "confusion_matrix", "per_class", "calibration"]
    {
        assert!(!report[key].is_null(), "report.json lacks {key}");
    }
    assert!(report["roc_auc_macro"].as_f64().unwrap() > 0.9, "{}", report["roc_auc_macro"]);
    // Training loss fell between the first and the last evaluation.
    let history = report["history"].as_array().unwrap();
    let first = history.first().unwrap()["train_loss"].as_f64().unwrap();
    let last = history.last().unwrap()["train_loss"].as_f64().unwrap();
    assert!(last < first, "train loss {first} → {last}");
    // The serving settings (with the threshold chosen on validation) are in the checkpoint.
    let best = Checkpoint::from_dir(&result.best_dir).unwrap();
    let serving = best.serving.expect("serving settings in best/config.json");
    assert_eq!(serving.task, bedside_runtime::Task::Binary);
    assert_eq!(serving.max_seq_len, 24);
    let chosen = report["decision"]["threshold"].as_f64().unwrap();
    assert!((f64::from(serving.decision_threshold) - chosen).abs() < 1e-6);
    assert!(report["decision"]["reached_sensitivity"].as_f64().unwrap() >= 0.9);
    for file in ["report.html", "report.md", "log.jsonl", "config.toml"] {
        assert!(config.out.join(file).is_file(), "{file} missing");
    }
}

#[test]
fn multilabel_learns_each_label() {
    let dir = temp_dir("multilabel");
    let rows = [
        ("chest pain", "cardiac"),
        ("heart murmur", "cardiac"),
        ("cough and fever", "respiratory"),
        ("asthma with cough", "respiratory"),
        ("chest pain with cough", "cardiac|respiratory"),
        ("heart murmur and asthma", "cardiac|respiratory"),
        ("diabetes and glucose", "endocrine"),
        ("insulin and metformin for diabetes", "endocrine"),
        ("cardiac murmur and diabetes", "cardiac|endocrine"),
    ];
    let mut csv = String::from("text,label\n");
    for _ in 0..3 {
        for (t, l) in rows {
            csv.push_str(&format!("{t},{l}\n"));
        }
    }
    let train_file = write(&dir, "train.csv", &csv);
    let val_file = write(&dir, "val.csv", &csv);
    let config = TrainConfig {
        epochs: 8,
        class_weights: ClassWeights::Named("balanced".into()),
        ..base_config(&dir, train_file, val_file)
    };
    run(TaskKind::Multilabel, &config, &RunControl::default());
    let report = report_json(&config.out);
    assert_eq!(report["task"], "multilabel");
    assert_eq!(report["labels"], serde_json::json!(["cardiac", "endocrine", "respiratory"]));
    assert!(report["macro_f1"].as_f64().unwrap() > 0.8, "macro-F1 {}", report["macro_f1"]);
    assert_eq!(report["confusion_matrix"].as_array().unwrap().len(), 3, "one 2×2 matrix per label");
}

#[test]
fn resume_after_an_interruption_gives_identical_weights() {
    let dir = temp_dir("resume");
    let train_file = write(&dir, "train.csv", &binary_rows(3, false));
    let val_file = write(&dir, "val.csv", &binary_rows(1, false));
    let whole =
        TrainConfig { epochs: 3, out: dir.join("whole"), ..base_config(&dir, train_file.clone(), val_file.clone()) };
    let whole_result = run(TaskKind::Classify, &whole, &RunControl::default());
    assert!(!whole_result.interrupted());

    // 18 rows / batch 4 = 5 steps an epoch: stop in the middle of epoch 2, then resume.
    let parted = TrainConfig { out: dir.join("parted"), save_steps: Some(1), ..whole.clone() };
    let cut = run(TaskKind::Classify, &parted, &RunControl { resume: false, stop_after_steps: Some(7) });
    assert!(cut.interrupted());
    // save_steps only adds saves; it must not change the run, so it is part of the config
    // the resume checks. The uninterrupted reference used none: compare weights only.
    run(TaskKind::Classify, &parted, &RunControl { resume: true, stop_after_steps: None });

    for file in ["state/model.safetensors", "best/model.safetensors"] {
        let a = std::fs::read(whole.out.join(file)).unwrap();
        let b = std::fs::read(parted.out.join(file)).unwrap();
        assert!(a == b, "{file} differs after resume");
    }
    let a = report_json(&whole.out);
    let b = report_json(&parted.out);
    assert_eq!(a["macro_f1"], b["macro_f1"]);
    assert_eq!(a["history"], b["history"]);

    // Resuming with another recipe is refused, naming the saved config.
    let other = TrainConfig { learning_rate: 1e-4, ..parted.clone() };
    let ckpt = Checkpoint::from_dir(&fixture()).unwrap();
    let err = train(
        &ckpt,
        TaskKind::Classify,
        prepare(&other, TaskKind::Classify).unwrap(),
        &other,
        &RunControl { resume: true, stop_after_steps: None },
        &mut |_| {},
    )
    .err()
    .expect("a different recipe must not resume");
    assert!(format!("{err:#}").contains("config.toml"), "{err:#}");
}

#[test]
fn unusable_rows_are_reported_with_lines_and_strict_refuses_them() {
    let dir = temp_dir("problems");
    let mut csv = binary_rows(2, false);
    csv.push_str("\"\",yes\n"); // line 14: empty text
    csv.push_str("chest pain,\n"); // line 15: no label
    let train_file = write(&dir, "train.csv", &csv);
    let mut val = binary_rows(1, false);
    val.push_str("cough,maybe\n"); // line 8: a label training never saw
    let val_file = write(&dir, "val.csv", &val);
    let config = TrainConfig { epochs: 1, ..base_config(&dir, train_file.clone(), val_file) };
    run(TaskKind::Classify, &config, &RunControl::default());
    let report = report_json(&config.out);
    let problems: Vec<(u64, String)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["line"].as_u64().unwrap(), p["kind"].as_str().unwrap().to_string()))
        .collect();
    assert!(problems.contains(&(14, "empty_text".into())), "{problems:?}");
    assert!(problems.iter().any(|(line, _)| *line == 15), "{problems:?}");
    assert!(problems.contains(&(8, "unseen_label".into())), "{problems:?}");

    let strict = TrainConfig { strict: true, ..config };
    let err = prepare(&strict, TaskKind::Classify).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("14") && message.contains("train.csv"), "{message}");
}

#[test]
fn the_probe_fits_a_head_that_export_can_read() {
    let dir = temp_dir("probe");
    let train_file = write(&dir, "train.csv", &binary_rows(4, false));
    let val_file = write(&dir, "val.csv", &binary_rows(2, false));
    let config = base_config(&dir, train_file, val_file);
    let result = run(TaskKind::Probe, &config, &RunControl::default());
    let report = report_json(&config.out);
    assert_eq!(report["task"], "multiclass");
    assert!(report["macro_f1"].as_f64().unwrap() > 0.8, "probe macro-F1 {}", report["macro_f1"]);
    // The fitted head is an ordinary classifier checkpoint.
    let model = bedside_runtime::Model::from_checkpoint_dir(&result.best_dir).unwrap();
    let prediction = model.classify("chest pain and cardiac murmur").unwrap();
    assert_eq!(prediction.label, "yes");
}

#[test]
fn scrubbing_replaces_phi_before_training_and_counts_it() {
    let dir = temp_dir("scrub");
    let mut csv = binary_rows(2, false);
    csv.push_str("\"chest pain, call 617-555-0123 or jane.doe@example.org on 03/14/2024\",yes\n");
    csv.push_str("\"cough, seen by Dr Quimby\",no\n");
    let train_file = write(&dir, "train.csv", &csv);
    let val_file = write(&dir, "val.csv", &binary_rows(1, false));
    let names = write(&dir, "names.txt", "Quimby\n");
    let config = TrainConfig { scrub: true, scrub_names: Some(names), ..base_config(&dir, train_file, val_file) };
    let data = prepare(&config, TaskKind::Classify).unwrap();
    let counts = data.scrub.clone().unwrap();
    for kind in ["phone", "email", "date", "name"] {
        assert_eq!(counts.get(kind), Some(&1), "{kind}: {counts:?}");
    }
    let all_text: String = data.train.examples.iter().map(|e| e.text.as_str()).collect();
    assert!(!all_text.contains("617-555-0123") && !all_text.contains("Quimby") && !all_text.contains("jane.doe"));
}

#[test]
fn recipe_warnings_flag_unweighted_imbalance_and_a_learning_rate_stuck_near_zero() {
    use bedside::train::run::recipe_warnings;
    let base = TrainConfig { epochs: 3, batch_size: 4, ..Default::default() };
    // 30 vs 3 rows, class weights off: flagged for classify and binary, with counts only.
    let w = recipe_warnings(&base, TaskKind::Classify, &[30, 3], 33);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("30") && w[0].contains("balanced"), "{w:?}");
    assert_eq!(recipe_warnings(&base, TaskKind::Binary, &[30, 3], 33).len(), 1);
    // Balanced weights, or mild imbalance: nothing to say.
    let balanced = TrainConfig { class_weights: ClassWeights::parse("balanced").unwrap(), ..base.clone() };
    assert!(recipe_warnings(&balanced, TaskKind::Classify, &[30, 3], 33).is_empty());
    assert!(recipe_warnings(&base, TaskKind::Classify, &[30, 11], 41).is_empty());
    // A warm-up longer than the run: the learning rate never reaches half of --lr.
    let long_warmup = TrainConfig { warmup_steps: Some(500), ..balanced.clone() };
    let w = recipe_warnings(&long_warmup, TaskKind::Classify, &[30, 30], 60);
    assert!(w.iter().any(|m| m.contains("warm-up") && m.contains("500")), "{w:?}");
    // Three epochs of 8 items at batch 4: 6 optimiser steps in all.
    let w = recipe_warnings(&balanced, TaskKind::Classify, &[4, 4], 8);
    assert!(w.iter().any(|m| m.contains("6 optimiser steps")), "{w:?}");
    // The probe has no schedule and no class weights.
    assert!(recipe_warnings(&long_warmup, TaskKind::Probe, &[30, 3], 33).is_empty());
}

/// Fine-tuning fits the frozen-encoder probe on the same splits and says in the report when
/// the probe does at least as well on validation (here: a learning rate too small to learn).
#[test]
fn classify_reports_the_baseline_probe_and_warns_when_it_wins() {
    let dir = temp_dir("baseline");
    let train_file = write(&dir, "train.csv", &binary_rows(4, false));
    let val_file = write(&dir, "val.csv", &binary_rows(2, false));
    let config = TrainConfig { epochs: 1, learning_rate: 1e-9, ..base_config(&dir, train_file, val_file) };
    run(TaskKind::Classify, &config, &RunControl::default());
    let report = report_json(&config.out);
    let baseline = &report["baseline_probe"];
    assert_eq!((baseline["features"].as_str(), baseline["metric"].as_str()), (Some("cls"), Some("macro_f1")));
    let probe = baseline["probe_validation"].as_f64().unwrap();
    let fine_tuned = baseline["fine_tuned_validation"].as_f64().unwrap();
    assert!(probe > fine_tuned, "probe {probe} vs fine-tuned {fine_tuned}");
    let warnings: Vec<&str> = report["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert!(warnings.iter().any(|w| w.contains("frozen-encoder probe")), "{warnings:?}");
    assert_eq!(report["head_features"], "pooler");
    assert!(std::fs::read_to_string(config.out.join("report.md")).unwrap().contains("Warning: the frozen-encoder"));

    // Off when asked, and the probe's own features reach its head.
    let config = TrainConfig { baseline_probe: false, out: dir.join("off"), ..config };
    run(TaskKind::Classify, &config, &RunControl::default());
    assert!(report_json(&config.out)["baseline_probe"].is_null());
}

/// Each feature kind gives its own head, recorded in the checkpoint the runtime loads.
#[test]
fn probe_features_reach_the_checkpoint_and_the_runtime() {
    use bedside_runtime::model::HeadFeatures;
    let dir = temp_dir("probe-features");
    let train_file = write(&dir, "train.csv", &binary_rows(4, false));
    let val_file = write(&dir, "val.csv", &binary_rows(2, false));
    let mut heads = Vec::new();
    for features in [HeadFeatures::Cls, HeadFeatures::Mean, HeadFeatures::Pooler] {
        let config = TrainConfig {
            features: Some(features),
            out: dir.join(features.as_str()),
            ..base_config(&dir, train_file.clone(), val_file.clone())
        };
        let result = run(TaskKind::Probe, &config, &RunControl::default());
        let report = report_json(&config.out);
        assert_eq!(report["head_features"], features.as_str());
        assert!(report["macro_f1"].as_f64().unwrap() > 0.8, "{features:?}: {}", report["macro_f1"]);
        let model = bedside_runtime::Model::from_checkpoint_dir(&result.best_dir).unwrap();
        assert_eq!(model.manifest().head_features, features);
        let p = model.classify("chest pain and cardiac murmur").unwrap();
        assert_eq!(p.label, "yes", "{features:?}");
        heads.push(
            Checkpoint::from_dir(&result.best_dir)
                .unwrap()
                .weights
                .get_any("classifier.weight")
                .unwrap()
                .to_f32()
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
        );
    }
    assert_ne!(heads[0], heads[1]);
    assert_ne!(heads[0], heads[2]);
}
