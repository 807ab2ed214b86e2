//! `train embed` on a tiny random BERT: each loss lowers its training loss and raises the
//! validation Spearman on a toy pairs task, from pairs, triplets or pairs generated from
//! labelled rows (random or mined hard negatives); unusable labelled rows are reported with
//! their lines; `--resume` reaches the uninterrupted run's weights byte for byte; the best
//! checkpoint is a sentence-transformers directory that the runtime embeds with mean pooling,
//! L2-normalised.

use std::path::{Path, PathBuf};

use bedside::data::ProblemKind;
use bedside::train::config::TrainConfig;
use bedside::train::embed::{prepare_embed, train_embed, EmbedResult, Source};
use bedside::train::run::RunControl;
use bedside_runtime::checkpoint::Checkpoint;

mod common;
use common::{fixture, temp_dir, write};

const GROUPS: [[&str; 4]; 3] = [
    ["chest pain", "cardiac murmur", "heart pain", "cardiac edema"],
    ["cough and fever", "asthma with cough", "lung infection", "shortness of breath"],
    ["diabetes", "blood sugar glucose", "insulin and metformin", "high glucose level"],
];
const SYSTEMS: [&str; 3] = ["cardiac", "respiratory", "endocrine"];

/// Related pairs share an organ system; unrelated ones do not.
fn pairs_csv(dir: &Path) -> PathBuf {
    let groups = GROUPS;
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

fn config(dir: &Path, train: PathBuf, val: Option<PathBuf>, loss: &str) -> TrainConfig {
    TrainConfig {
        base: fixture().display().to_string(),
        train,
        val,
        out: dir.join("run"),
        epochs: 8,
        batch_size: 6,
        learning_rate: 2e-3,
        max_seq_len: Some(16),
        loss: loss.into(),
        ..Default::default()
    }
}

fn train(config: &TrainConfig, control: &RunControl) -> EmbedResult {
    let ckpt = Checkpoint::from_dir(&fixture()).unwrap();
    let data = prepare_embed(config).unwrap();
    train_embed(&ckpt, config, data, control, &mut |_| {}).unwrap()
}

fn run(loss: &str, name: &str) -> (serde_json::Value, PathBuf) {
    let dir = temp_dir(name);
    let pairs = pairs_csv(&dir);
    let result = train(&config(&dir, pairs.clone(), Some(pairs), loss), &RunControl::default());
    (serde_json::to_value(result.report.as_ref().unwrap()).unwrap(), result.best_dir)
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

/// Every (anchor, positive) of a group against a text of the next group.
fn triplets_csv(dir: &Path) -> PathBuf {
    let mut csv = String::from("anchor,positive,negative\n");
    for (g, group) in GROUPS.iter().enumerate() {
        for (i, a) in group.iter().enumerate() {
            for (j, p) in group.iter().enumerate().filter(|(j, _)| *j != i) {
                csv.push_str(&format!("{a},{p},{}\n", GROUPS[(g + 1 + j % 2) % 3][(i + j) % 4]));
            }
        }
    }
    write(dir, "triplets.csv", &csv)
}

/// One row per text with its organ system; two rows belong to two systems.
fn labelled_rows() -> String {
    let mut csv = String::from("text,system\n");
    for (group, system) in GROUPS.iter().zip(SYSTEMS) {
        for text in group {
            csv.push_str(&format!("{text},{system}\n"));
        }
    }
    csv.push_str("chest pain with cough,cardiac|respiratory\n");
    csv.push_str("glucose and heart murmur,endocrine|cardiac\n");
    csv
}

#[test]
fn triplets_train_mnrl_with_the_negative_and_contrastive_as_two_pairs() {
    let dir = temp_dir("embed-triplets");
    let triplets = triplets_csv(&dir);
    let pairs = pairs_csv(&dir);
    let data = prepare_embed(&config(&dir, triplets.clone(), Some(pairs.clone()), "mnrl")).unwrap();
    assert_eq!(data.train.source, Source::Triplets);
    assert_eq!(data.train.examples.len(), 36);
    assert!(data.train.examples.iter().all(|e| e.negatives.len() == 1 && e.label == 1.0));

    let mnrl = train(&config(&dir, triplets.clone(), Some(pairs.clone()), "mnrl"), &RunControl::default());
    let report = serde_json::to_value(mnrl.report.as_ref().unwrap()).unwrap();
    assert_eq!((report["source"].as_str(), report["train_examples"].as_u64()), (Some("triplets"), Some(36)));
    check_learns(&report);

    // Contrastive trains (a, p) as related and (a, n) as unrelated: twice as many items.
    let contrastive = config(&dir, triplets, Some(pairs), "contrastive");
    let report = serde_json::to_value(train(&contrastive, &RunControl::default()).report.unwrap()).unwrap();
    assert_eq!(report["train_examples"].as_u64(), Some(72));
    check_learns(&report);
}

#[test]
fn pairs_from_labels_pair_rows_sharing_a_value_and_report_unusable_rows() {
    let dir = temp_dir("embed-labelled");
    let mut csv = labelled_rows(); // rows on lines 2..=15
    csv.push_str("\"  \",cardiac\n"); // 16: empty text
    csv.push_str("rash on the arm,\n"); // 17: no value
    csv.push_str("broken leg,orthopaedic\n"); // 18: the only row of its value
    let file = write(&dir, "rows.csv", &csv);
    let labelled = TrainConfig {
        pairs_from: Some("system".into()),
        ..config(&dir, file.clone(), Some(write(&dir, "val.csv", &labelled_rows())), "mnrl")
    };
    let data = prepare_embed(&labelled).unwrap();
    let found: Vec<(String, usize, ProblemKind)> = data
        .problems
        .iter()
        .map(|p| (p.file.file_name().unwrap().to_string_lossy().into_owned(), p.line, p.kind))
        .collect();
    let rows = |line, kind| ("rows.csv".to_string(), line, kind);
    assert_eq!(
        found,
        [rows(16, ProblemKind::EmptyText), rows(17, ProblemKind::MissingLabel), rows(18, ProblemKind::Unpaired)]
    );
    assert!(data.problems[2].message.contains("`system`"), "{}", data.problems[2]);

    // Every usable row is an anchor; its positive shares a value, its negative none.
    let train = &data.train;
    assert_eq!((train.source, train.examples.len()), (Source::Labelled, 14));
    let systems = |i: usize| -> Vec<&str> {
        let line = train.lines[i];
        csv.lines().nth(line - 1).unwrap().rsplit(',').next().unwrap().split('|').collect()
    };
    let share = |a: usize, b: usize| systems(a).iter().any(|s| systems(b).contains(s));
    for (i, e) in train.examples.iter().enumerate() {
        assert_eq!(e.anchor, i);
        assert!(e.positive != i && share(i, e.positive), "row {i}: positive {}", e.positive);
        assert_eq!(e.negatives.len(), 1);
        assert!(!share(i, e.negatives[0]), "row {i}: negative {}", e.negatives[0]);
    }
    // Validation rows (same columns) are paired too, with one negative each.
    let val = data.val.as_ref().unwrap();
    assert_eq!((val.source, val.pairs().len()), (Source::Labelled, 28));
    // Seeded: the same seed, the same pairs; another seed, others.
    assert_eq!(prepare_embed(&labelled).unwrap(), data);
    assert!(prepare_embed(&TrainConfig { seed: 7, ..labelled.clone() }).unwrap().train != data.train);

    // --strict: the first unusable row is an error naming the file and line.
    let strict = TrainConfig { strict: true, ..labelled.clone() };
    let err = format!("{:#}", prepare_embed(&strict).unwrap_err());
    assert!(err.contains("rows.csv:16: empty_text"), "{err}");
    let only_unpaired = write(&dir, "unpaired.csv", &format!("{}broken leg,orthopaedic\n", labelled_rows()));
    let err = format!("{:#}", prepare_embed(&TrainConfig { train: only_unpaired, ..strict }).unwrap_err());
    assert!(err.contains("unpaired.csv:16: unpaired"), "{err}");
    // A missing column names the file, the column and how many the header has, never its cells.
    let err = format!("{:#}", prepare_embed(&TrainConfig { pairs_from: Some("dx".into()), ..labelled }).unwrap_err());
    assert!(err.contains("rows.csv:1") && err.contains("`dx`") && err.contains("column(s)"), "{err}");
    assert!(!err.contains("system"), "{err}");
}

#[test]
fn pairs_from_labels_learn_with_hard_negatives() {
    let dir = temp_dir("embed-hard");
    let rows = write(&dir, "rows.csv", &labelled_rows());
    let config = TrainConfig {
        pairs_from: Some("system".into()),
        hard_negatives: Some(2),
        ..config(&dir, rows, Some(pairs_csv(&dir)), "mnrl")
    };
    let report = serde_json::to_value(train(&config, &RunControl::default()).report.unwrap()).unwrap();
    assert_eq!((report["source"].as_str(), report["hard_negatives"].as_u64()), (Some("labelled"), Some(2)));
    check_learns(&report);
}

#[test]
fn resume_after_an_interruption_gives_identical_weights() {
    let dir = temp_dir("embed-resume");
    let rows = write(&dir, "rows.csv", &labelled_rows());
    // 14 anchors, batch 4: 4 steps an epoch; stop inside epoch 2, then resume.
    let whole = TrainConfig {
        pairs_from: Some("system".into()),
        hard_negatives: Some(1),
        epochs: 3,
        batch_size: 4,
        dropout: Some(0.1),
        out: dir.join("whole"),
        ..config(&dir, rows, Some(pairs_csv(&dir)), "mnrl")
    };
    assert!(!train(&whole, &RunControl::default()).interrupted());
    let parted = TrainConfig { out: dir.join("parted"), ..whole.clone() };
    assert!(train(&parted, &RunControl { resume: false, stop_after_steps: Some(6) }).interrupted());
    assert!(!parted.out.join("report.json").exists());
    let resumed = train(&parted, &RunControl { resume: true, stop_after_steps: None });
    assert_eq!(resumed.report.as_ref().unwrap().history.len(), 3);
    for file in ["best/model.safetensors", "state/model.safetensors", "state/optimizer.safetensors"] {
        let a = std::fs::read(whole.out.join(file)).unwrap();
        let b = std::fs::read(parted.out.join(file)).unwrap();
        assert!(a == b, "{file} differs after resume");
    }

    // Resuming with another recipe is refused, naming the saved config.
    let other = TrainConfig { hard_negatives: Some(2), ..parted };
    let ckpt = Checkpoint::from_dir(&fixture()).unwrap();
    let data = prepare_embed(&other).unwrap();
    let err = train_embed(&ckpt, &other, data, &RunControl { resume: true, stop_after_steps: None }, &mut |_| {})
        .err()
        .expect("a different recipe must not resume");
    assert!(format!("{err:#}").contains("config.toml"), "{err:#}");
}
