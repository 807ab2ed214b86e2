//! `train ner` end to end on the tiny fixture BERT: it learns a tagging rule a token identity
//! decides, the best checkpoint runs in the runtime as a token classifier, an interrupted run
//! resumes to the same weights, and bad tag files fail naming file and line, never the text.

use std::path::{Path, PathBuf};

use bedside::train::config::TrainConfig;
use bedside::train::fit::RunControl;
use bedside::train::ner::{prepare_ner, train_ner, NerResult};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::model::SplitMix64;
use bedside_runtime::{Model, Task};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bedside-ner-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// CoNLL sentences of fixture-vocabulary words where drugs are `DRUG` and "chest pain" is a
/// two-word `SYMPTOM`: a rule the token identities decide.
fn write_conll(path: &Path, sentences: usize, seed: u64) {
    let filler = ["patient", "denies", "fever", "with", "daily", "history", "reports", "stable", "normal", "exam"];
    let drugs = ["metformin", "aspirin", "insulin", "lisinopril"];
    let mut rng = SplitMix64::new(seed);
    let mut out = String::new();
    for _ in 0..sentences {
        for _ in 0..(10 + rng.below(8)) {
            match rng.below(6) {
                0 => out.push_str(&format!("{}\tB-DRUG\n", drugs[rng.below(drugs.len())])),
                1 => out.push_str("chest\tB-SYMPTOM\npain\tI-SYMPTOM\n"),
                _ => out.push_str(&format!("{}\tO\n", filler[rng.below(filler.len())])),
            }
        }
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

fn config(dir: &Path) -> TrainConfig {
    write_conll(&dir.join("train.conll"), 60, 1);
    write_conll(&dir.join("val.conll"), 20, 2);
    TrainConfig {
        base: repo().join("models/fixtures/tiny-safetensors").display().to_string(),
        train: dir.join("train.conll"),
        val: Some(dir.join("val.conll")),
        test: Some(dir.join("val.conll")),
        out: dir.join("run"),
        epochs: 6,
        batch_size: 8,
        learning_rate: 5e-3,
        max_seq_len: Some(16),
        stride: Some(4),
        seed: 7,
        ..TrainConfig::default()
    }
}

fn run(config: &TrainConfig, control: &RunControl) -> NerResult {
    let base = Checkpoint::from_dir(Path::new(&config.base)).unwrap();
    let data = prepare_ner(config).unwrap();
    train_ner(&base, &data, config, control, &mut |_| {}).unwrap()
}

#[test]
fn learns_entities_and_serves_them() {
    let dir = temp_dir("learn");
    let config = config(&dir);
    let result = run(&config, &RunControl::default());
    let report = result.report.expect("a finished run has a report");
    // Sentences are longer than one 14-token window: training and scoring ran in windows.
    assert!(report.training_windows > report.train_sentences, "{} windows", report.training_windows);
    let test = report.test.as_ref().unwrap();
    assert!(test.default.micro.f1 >= 0.9, "test entity F1 {}", test.default.micro.f1);
    let kinds: Vec<&str> = test.default.per_type.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(kinds, ["DRUG", "SYMPTOM"]);
    assert!(report.rules_baseline.is_none(), "the scrubber knows neither type");
    assert!(report.frozen_encoder_baseline.is_some());
    assert!(config.out.join("report.md").is_file() && config.out.join("report.json").is_file());

    // The best checkpoint is a token classifier the runtime serves.
    let model = Model::from_checkpoint_dir(&result.best_dir).unwrap();
    assert_eq!(model.manifest().task, Task::TokenClassification);
    let note = "patient reports chest pain with aspirin daily";
    let entities = model.tag(note).unwrap();
    let found: Vec<(&str, &str)> = entities.iter().map(|e| (e.label.as_str(), &note[e.start..e.end])).collect();
    assert_eq!(found, [("SYMPTOM", "chest pain"), ("DRUG", "aspirin")]);
    let redacted = model.deid(note, None).unwrap();
    assert_eq!(redacted.text, "patient reports [SYMPTOM] with [DRUG] daily");
}

#[test]
fn an_interrupted_run_resumes_to_the_same_weights() {
    let whole_dir = temp_dir("whole");
    let whole = config(&whole_dir);
    let a = run(&TrainConfig { epochs: 2, ..whole.clone() }, &RunControl::default());

    let split_dir = temp_dir("split");
    let split = TrainConfig { epochs: 2, ..config(&split_dir) };
    let stopped = run(&split, &RunControl { resume: false, stop_after_steps: Some(5) });
    assert!(stopped.report.is_none());
    let b = run(&split, &RunControl { resume: true, stop_after_steps: None });

    let weights = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert!(weights(&a.best_dir) == weights(&b.best_dir), "resumed weights differ");
    let f1 = |r: &NerResult| r.report.as_ref().unwrap().validation.default.micro.f1;
    assert_eq!(f1(&a), f1(&b));
}

#[test]
fn bad_tag_files_name_file_and_line_not_text() {
    let dir = temp_dir("bad");
    let mut config = config(&dir);
    // Line 3 has a token and no tag in a tab-separated file; "zebrafinch" must not be echoed.
    std::fs::write(dir.join("broken.conll"), "patient\tO\naspirin\tB-DRUG\nzebrafinch\n\n").unwrap();
    config.train = dir.join("broken.conll");
    let err = format!("{:#}", prepare_ner(&config).err().expect("a broken file is an error"));
    assert!(err.contains("broken.conll") && err.contains(":3"), "{err}");
    assert!(!err.contains("zebrafinch"), "{err}");

    // Spans out of range and overlapping, in a span JSONL file.
    std::fs::write(
        dir.join("spans.jsonl"),
        "{\"text\": \"aspirin daily\", \"entities\": [{\"start\": 0, \"end\": 7, \"label\": \"DRUG\"}]}\n\
         {\"text\": \"secretword\", \"entities\": [{\"start\": 0, \"end\": 40, \"label\": \"DRUG\"}]}\n",
    )
    .unwrap();
    config.train = dir.join("spans.jsonl");
    let err = format!("{:#}", prepare_ner(&config).err().expect("a span past the text is an error"));
    assert!(err.contains("spans.jsonl") && err.contains(":2"), "{err}");
    assert!(!err.contains("secretword"), "{err}");
}
