//! End-to-end: the built `bedside` binary on fixture checkpoints — export, inspect, embed,
//! classify (arguments and CSV, short and 20,000-word notes), and its errors.

mod common;
// `bedside tag` and `bedside deid`.
mod tag_cli;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bedside, fails, fixture, ok, temp_dir};

fn export(dir: &Path, fixture_name: &str, quant: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(format!("{fixture_name}-{quant}.gguf"));
    let model = fixture(fixture_name);
    let mut args = vec!["export", "--model", model.to_str().unwrap(), "--quant", quant, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(&args);
    out
}

#[test]
fn export_then_inspect_shows_the_manifest() {
    let dir = temp_dir("inspect");
    let bundle = export(&dir, "tiny-classifier", "q4_0", &["--min-confidence", "0.6", "--stride", "4"]);
    let manifest: serde_json::Value = serde_json::from_str(&ok(&["inspect", bundle.to_str().unwrap()])).unwrap();
    assert_eq!(manifest["task"], "classification");
    assert_eq!(manifest["quantization"], "q4_0");
    assert_eq!(manifest["labels"], serde_json::json!(["cardiology", "endocrinology", "respiratory"]));
    assert_eq!(manifest["stride"], 4);
    assert_eq!(manifest["max_seq_len"], 64);
    assert!(manifest["checksum"].as_str().unwrap().starts_with("sha256:"));
    assert!((manifest["min_confidence"].as_f64().unwrap() - 0.6).abs() < 1e-6);
}

#[test]
fn embed_json_is_one_vector_per_text_in_order() {
    let dir = temp_dir("embed");
    let bundle = export(&dir, "tiny-safetensors", "f32", &[]);
    let texts = ["patient denies chest pain.", "no fever or cough", "metformin 500 mg"];
    let mut args = vec!["embed", "--model", bundle.to_str().unwrap(), "--json"];
    args.extend_from_slice(&texts);
    let vectors: Vec<Vec<f32>> = serde_json::from_str(&ok(&args)).unwrap();
    assert_eq!(vectors.len(), 3);
    assert!(vectors.iter().all(|v| v.len() == 32));
    // In order: the second text alone gives the second vector.
    let single: Vec<Vec<f32>> =
        serde_json::from_str(&ok(&["embed", "--model", bundle.to_str().unwrap(), "--json", texts[1]])).unwrap();
    let diff = vectors[1].iter().zip(&single[0]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(diff < 1e-5, "order or batching changed the vector by {diff}");
    // A checkpoint directory works as --model too, and gives the f32 bundle's numbers.
    let from_dir: Vec<Vec<f32>> = serde_json::from_str(&ok(&[
        "embed",
        "--model",
        fixture("tiny-safetensors").to_str().unwrap(),
        "--json",
        texts[1],
    ]))
    .unwrap();
    let diff = from_dir[0].iter().zip(&single[0]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(diff < 1e-6);
}

/// q8_0 bundles run integer matmuls by default; `--quantized-matmul dequantized` gives the f32
/// reference numerics and `relaxed` the relaxed-SIMD browser build's: each close to, not equal
/// to, the integer path. f32 bundles ignore the flag.
#[test]
fn quantized_matmul_flag_picks_the_cpu_numerics() {
    let dir = temp_dir("quantized-matmul");
    let text = "male patient with chest pain and shortness of breath, given aspirin";
    let embed = |bundle: &Path, matmul: &str| -> Vec<f32> {
        let args = ["embed", "--model", bundle.to_str().unwrap(), "--backend", "cpu", "--quantized-matmul", matmul];
        let mut args = args.to_vec();
        args.extend(["--json", text]);
        let vectors: Vec<Vec<f32>> = serde_json::from_str(&ok(&args)).unwrap();
        vectors.into_iter().next().unwrap()
    };
    let cosine = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
    };
    let q8 = export(&dir, "tiny-safetensors", "q8_0", &[]);
    let (integer, dequantized) = (embed(&q8, "integer"), embed(&q8, "dequantized"));
    let diff = integer.iter().zip(&dequantized).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(diff > 0.0, "the two q8_0 paths gave the same bits: the flag did nothing");
    assert!(cosine(&integer, &dequantized) > 0.999, "integer vs dequantized cosine {}", cosine(&integer, &dequantized));
    let relaxed = embed(&q8, "relaxed");
    assert!(relaxed != integer && relaxed != dequantized, "relaxed gave the bits of another path");
    assert!(cosine(&integer, &relaxed) > 0.999, "integer vs relaxed cosine {}", cosine(&integer, &relaxed));
    let f32_bundle = export(&dir, "tiny-safetensors", "f32", &[]);
    assert_eq!(embed(&f32_bundle, "integer"), embed(&f32_bundle, "dequantized"));
    let stderr = fails(&["embed", "--model", q8.to_str().unwrap(), "--quantized-matmul", "int4", text]);
    assert!(stderr.contains("int4"), "{stderr}");
}

#[test]
fn similarity_is_the_cosine_of_the_two_embeddings() {
    let dir = temp_dir("similarity");
    let bundle = export(&dir, "tiny-safetensors", "f32", &[]);
    let b = bundle.to_str().unwrap();
    let (x, y) = ("patient denies chest pain.", "no fever or cough");
    let vectors: Vec<Vec<f32>> = serde_json::from_str(&ok(&["embed", "--model", b, "--json", x, y])).unwrap();
    let dot: f32 = vectors[0].iter().zip(&vectors[1]).map(|(a, b)| a * b).sum();
    let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
    let want = dot / (norm(&vectors[0]) * norm(&vectors[1]));
    let got: serde_json::Value = serde_json::from_str(&ok(&["similarity", "--model", b, "--json", x, y])).unwrap();
    assert!((got["cosine"].as_f64().unwrap() as f32 - want).abs() < 1e-5, "{got} vs {want}");
    let same: serde_json::Value = serde_json::from_str(&ok(&["similarity", "--model", b, "--json", x, x])).unwrap();
    assert!((same["cosine"].as_f64().unwrap() - 1.0).abs() < 1e-5);
}

#[test]
fn a_successful_run_on_the_auto_backend_prints_nothing_on_stderr() {
    // `--backend auto` (the default) probes GPU drivers; Mesa without a display server prints
    // "error: XDG_RUNTIME_DIR is invalid or not set" while it looks. A run that succeeds
    // must not read like a failure.
    let dir = temp_dir("quiet");
    let bundle = export(&dir, "tiny-classifier", "q8_0", &[]);
    let b = bundle.to_str().unwrap();
    for args in [
        vec!["similarity", "--model", b, "chest pain", "angina"],
        vec!["classify", "--model", b, "chest pain"],
        vec!["embed", "--model", b, "chest pain"],
    ] {
        let out =
            Command::new(env!("CARGO_BIN_EXE_bedside")).args(&args).env_remove("XDG_RUNTIME_DIR").output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A hardware GPU is named on one line; nothing else is said.
        let other: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("bedside: WebGPU on ")).collect();
        assert!(other.is_empty(), "{args:?} printed on stderr: {stderr}");
    }
}

#[test]
fn classify_csv_with_a_20000_word_note() {
    let dir = temp_dir("classify");
    let bundle = export(&dir, "tiny-classifier", "q8_0", &[]);
    let sentence = "male patient with chest pain and shortness of breath, bp 150/90, given aspirin 81 mg daily.";
    let words_per_sentence = sentence.split_whitespace().count();
    let long_note = vec![sentence; 20_000 / words_per_sentence + 1].join(" ");
    assert!(long_note.split_whitespace().count() >= 20_000);
    let csv = dir.join("notes.csv");
    let mut writer = String::from("id,text\n");
    writer.push_str("a1,patient denies chest pain.\n");
    writer.push_str(&format!("a2,\"{long_note}\"\n"));
    std::fs::write(&csv, writer).unwrap();
    let out = ok(&["classify", "--model", bundle.to_str().unwrap(), "--json", "--input", csv.to_str().unwrap()]);
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], "a1");
    let long = &rows[1];
    let chunks = long["chunks"].as_array().unwrap();
    // 64-token windows (62 text tokens), stride 8: hundreds of windows, each in bounds.
    assert!(chunks.len() > 300, "{} windows", chunks.len());
    let mut previous_start = 0;
    for c in chunks {
        let (start, end) = (c["start"].as_u64().unwrap() as usize, c["end"].as_u64().unwrap() as usize);
        assert!(start >= previous_start && end <= long_note.len() && start < end);
        previous_start = start;
    }
    let total: f64 = long["probabilities"].as_object().unwrap().values().map(|p| p.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4, "mean of softmax windows sums to 1, got {total}");
    assert!(long["label"].is_string() && long["uncertain"].is_boolean());
}

#[test]
fn export_refuses_a_task_the_head_cannot_serve() {
    let dir = temp_dir("binary");
    let bundle = export(&dir, "tiny-classifier", "f32", &[]);
    // tiny-classifier has 3 outputs: binary needs 1 or 2, so the export must refuse.
    let stderr = fails(&[
        "export",
        "--model",
        fixture("tiny-classifier").to_str().unwrap(),
        "--quant",
        "f32",
        "--out",
        dir.join("b.gguf").to_str().unwrap(),
        "--task",
        "binary",
        "--labels",
        "no,yes",
    ]);
    assert!(stderr.contains("head outputs"), "{stderr}");
    assert!(bundle.exists());
}

#[test]
fn errors_name_the_problem_and_exit_2() {
    let dir = temp_dir("errors");
    let bundle = export(&dir, "tiny-classifier", "q8_0", &[]);
    let b = bundle.to_str().unwrap();

    let stderr = fails(&[
        "export",
        "--model",
        fixture("tiny-classifier").to_str().unwrap(),
        "--quant",
        "q5_k",
        "--out",
        "x.gguf",
    ]);
    assert!(stderr.contains("unknown quantization") && stderr.contains("q5_k"), "{stderr}");

    let garbage = dir.join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a model").unwrap();
    let stderr = fails(&["inspect", garbage.to_str().unwrap()]);
    assert!(stderr.contains("garbage.gguf") && stderr.contains("GGUF"), "{stderr}");

    let mut bytes = std::fs::read(&bundle).unwrap();
    bytes.truncate(bytes.len() / 3);
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, bytes).unwrap();
    assert!(fails(&["classify", "--model", truncated.to_str().unwrap(), "chest pain"]).contains("truncated"));

    let latin1 = dir.join("latin1.csv");
    std::fs::write(&latin1, b"id,text\n1,chest pain\n2,caf\xe9 au lait spots\n").unwrap();
    let stderr = fails(&["classify", "--model", b, "--input", latin1.to_str().unwrap()]);
    assert!(stderr.contains("latin1.csv:3: column `text` is not valid UTF-8"), "{stderr}");

    let empty = dir.join("empty.csv");
    std::fs::write(&empty, "id,text\n1,chest pain\n2,\n").unwrap();
    let stderr = fails(&["classify", "--model", b, "--input", empty.to_str().unwrap()]);
    assert!(stderr.contains("empty.csv:3: column `text` is empty"), "{stderr}");

    let stderr = fails(&["classify", "--model", b, "--input", empty.to_str().unwrap(), "--text-col", "note"]);
    assert!(stderr.contains("no column `note`"), "{stderr}");

    let embedding = export(&dir, "tiny-safetensors", "q8_0", &[]);
    let stderr = fails(&["classify", "--model", embedding.to_str().unwrap(), "chest pain"]);
    assert!(stderr.contains("task is `embedding`"), "{stderr}");

    assert!(fails(&["embed", "--model", b, "  "]).contains("empty"));
}

/// 60 notes in three classes told apart by their words, plus one unusable row (line 62).
fn toy_training_csv(dir: &Path) -> PathBuf {
    let words = [
        ("cardiology", ["chest", "pain", "heart"].as_slice()),
        ("endocrinology", ["diabetes", "glucose", "insulin", "metformin", "sugar"].as_slice()),
        ("respiratory", ["cough", "fever", "asthma", "breath", "lung"].as_slice()),
    ];
    let filler = ["patient", "denies", "history", "daily", "blood", "pressure"];
    let mut csv = String::from("id,text,label\n");
    for (c, (label, ws)) in words.iter().enumerate() {
        for i in 0..20 {
            let text = format!(
                "{} {} {} {}",
                ws[i % ws.len()],
                filler[i % 6],
                ws[(i + 1 + c) % ws.len()],
                filler[(i + 3) % 6]
            );
            csv.push_str(&format!("{label}{i},{text},{label}\n"));
        }
    }
    csv.push_str("bad,,cardiology\n");
    let path = dir.join("notes.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

#[test]
fn train_classify_writes_a_report_and_a_checkpoint_that_exports() {
    let dir = temp_dir("train");
    let data = toy_training_csv(&dir);
    let out = dir.join("run");
    let base = fixture("tiny-safetensors");
    ok(&[
        "train",
        "classify",
        "--base",
        base.to_str().unwrap(),
        "--train",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "12",
        "--lr",
        "3e-3",
        "--batch-size",
        "8",
        "--max-seq-len",
        "32",
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for key in ["accuracy", "macro_f1", "weighted_f1", "roc_auc_macro", "labels", "confusion_matrix", "per_class"] {
        assert!(!report[key].is_null(), "report.json lacks {key}");
    }
    assert_eq!(report["labels"], serde_json::json!(["cardiology", "endocrinology", "respiratory"]));
    let per_class = &report["per_class"]["respiratory"];
    for key in ["precision", "recall", "f1", "support", "sensitivity", "specificity"] {
        assert!(per_class[key].is_number(), "per_class lacks {key}");
    }
    let confusion: Vec<Vec<u64>> = serde_json::from_value(report["confusion_matrix"].clone()).unwrap();
    assert_eq!(confusion.iter().flatten().sum::<u64>(), report["n"].as_u64().unwrap());
    // The unusable row is reported with its line, not dropped silently.
    assert_eq!(report["problems"][0]["line"], 62);
    assert_eq!(report["problems"][0]["kind"], "empty_text");
    // The log has a line per optimiser step and per evaluation (one per epoch).
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let evals: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "eval").map(|l| &l["event"]).collect();
    assert_eq!(evals.len(), 12);
    assert!(lines
        .iter()
        .filter(|l| l["type"] == "step")
        .all(|l| l["learning_rate"].is_number() && l["loss"].is_number()));
    assert!(evals[11]["train_loss"].as_f64().unwrap() < 0.5 * evals[0]["train_loss"].as_f64().unwrap());
    assert!(lines.iter().filter(|l| l["type"] == "step").all(|l| l["threads"].as_u64().is_some_and(|t| t >= 1)));
    // Batches are grouped by length (the default), and each epoch says what that saved (the
    // toy notes are all about one length: the unit test in train/fit.rs measures the saving).
    let batches: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "batches").collect();
    assert_eq!(batches.len(), 12, "one batches line per epoch");
    let padded = |key: &str| batches.iter().map(|b| b[key].as_u64().unwrap()).sum::<u64>();
    assert!(padded("padded_tokens") <= padded("padded_tokens_random_order"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("respiratory"));
    // The run directory exports (its best/), with a parity report on the run's test split.
    let bundle = dir.join("model.gguf");
    let parity = ok(&[
        "export",
        "--model",
        out.to_str().unwrap(),
        "--quant",
        "q8_0",
        "--out",
        bundle.to_str().unwrap(),
        "--json",
    ]);
    let parity: serde_json::Value = serde_json::from_str(parity.trim()).unwrap();
    assert_eq!(parity["notes"], report["n"]);
    assert!(parity["decision_agreement"].as_f64().unwrap() >= 0.9, "{parity}");
    assert!(parity["max_probability_difference"].as_f64().unwrap() < 0.05, "{parity}");
    assert!((parity["macro_f1_f32"].as_f64().unwrap() - report["macro_f1"].as_f64().unwrap()).abs() < 1e-9, "{parity}");
    let manifest: serde_json::Value = serde_json::from_str(&ok(&["inspect", bundle.to_str().unwrap()])).unwrap();
    assert_eq!(manifest["task"], "classification");
    assert_eq!(manifest["labels"], report["labels"]);
    assert_eq!(manifest["max_seq_len"], 32, "the run's window travels into the bundle");
    // `bedside eval` on the same split gives the training report's numbers, from the bundle too.
    let eval_out = dir.join("eval");
    let test_split = out.join("splits/test.jsonl");
    ok(&[
        "eval",
        "--model",
        out.to_str().unwrap(),
        "--data",
        test_split.to_str().unwrap(),
        "--out",
        eval_out.to_str().unwrap(),
    ]);
    let evaluated: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval_out.join("report.json")).unwrap()).unwrap();
    assert_eq!(evaluated["confusion_matrix"], report["confusion_matrix"]);
    assert!((evaluated["macro_f1"].as_f64().unwrap() - report["macro_f1"].as_f64().unwrap()).abs() < 1e-9);
    ok(&[
        "eval",
        "--model",
        bundle.to_str().unwrap(),
        "--data",
        test_split.to_str().unwrap(),
        "--out",
        eval_out.to_str().unwrap(),
    ]);
    let prediction: serde_json::Value =
        serde_json::from_str(&ok(&["classify", "--model", bundle.to_str().unwrap(), "--json", "asthma cough breath"]))
            .unwrap();
    assert_eq!(prediction["label"], "respiratory");
}

/// The probe's options reach the report, the checkpoint and the bundle: mean features, C
/// chosen on validation from the grid, standardised features folded into the head.
#[test]
fn train_probe_features_and_c_reach_the_report_and_the_bundle() {
    let dir = temp_dir("probe-options");
    let data = toy_training_csv(&dir);
    let out = dir.join("run");
    let base = fixture("tiny-safetensors");
    let (base, data, out_s) = (base.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let common = ["train", "probe", "--base", base, "--train", data, "--val-ratio", "0.2", "--max-seq-len", "32"];
    let flags = ["--features", "mean", "--probe-c", "auto", "--probe-standardize", "--out", out_s];
    ok(&[&common[..], &flags[..]].concat());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["head_features"], "mean");
    let probe = &report["probe"];
    assert_eq!((probe["features"].as_str(), probe["standardize"].as_bool()), (Some("mean"), Some(true)));
    assert_eq!(probe["c_auto"], true);
    let grid = probe["c_grid"].as_array().unwrap();
    assert_eq!(grid.len(), 7);
    // The chosen C is the first with the best validation score.
    let best = grid.iter().map(|g| g["validation"].as_f64().unwrap()).fold(f64::MIN, f64::max);
    let first_best = grid.iter().find(|g| g["validation"].as_f64().unwrap() == best).unwrap();
    assert_eq!(probe["c"], first_best["c"]);
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("chosen on validation"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("best/config.json")).unwrap()).unwrap();
    assert_eq!(config["bedside"]["head_features"], "mean");

    // The bundle reads the same features: the f32 bundle makes the run's calls on its test split.
    let bundle = dir.join("probe.gguf");
    let bundle_s = bundle.to_str().unwrap();
    let parity = ok(&["export", "--model", out_s, "--quant", "f32", "--out", bundle_s, "--json"]);
    let parity: serde_json::Value = serde_json::from_str(parity.trim()).unwrap();
    assert_eq!(parity["decision_agreement"].as_f64(), Some(1.0), "{parity}");
    let manifest: serde_json::Value = serde_json::from_str(&ok(&["inspect", bundle_s])).unwrap();
    assert_eq!((manifest["head_features"].as_str(), manifest["format_version"].as_u64()), (Some("mean"), Some(3)));
    // transformers cannot express a head on the mean, so no HF directory is written for it.
    let hf = dir.join("hf");
    let stderr = fails(&["export", "--model", out_s, "--out", bundle_s, "--hf-out", hf.to_str().unwrap()]);
    assert!(stderr.contains("mean features") && stderr.contains("pooler"), "{stderr}");
    assert!(!hf.exists());

    // The default is raw [CLS]; bad values are refused naming the option.
    let cls_out = dir.join("cls");
    ok(&[&common[..], &["--out", cls_out.to_str().unwrap()][..]].concat());
    let cls: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cls_out.join("report.json")).unwrap()).unwrap();
    assert_eq!((cls["head_features"].as_str(), cls["probe"]["c"].as_f64()), (Some("cls"), Some(1.0)));
    assert!(fails(&[&common[..], &["--out", out_s, "--features", "pooled"][..]].concat()).contains("--features"));
    assert!(fails(&[&common[..], &["--out", out_s, "--probe-c", "0"][..]].concat()).contains("probe_c"));
}

#[test]
fn train_reads_a_toml_config_and_flags_override_it() {
    let dir = temp_dir("config");
    let data = toy_training_csv(&dir);
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        format!(
            "base = {:?}\ntrain = {:?}\nepochs = 1\nbatch_size = 8\nmax_seq_len = 32\nlearning_rate = 1e-3\n",
            fixture("tiny-safetensors").to_str().unwrap(),
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = dir.join("run");
    ok(&["train", "classify", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap(), "--epochs", "2"]);
    let effective = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        effective.contains("epochs = 2")
            && effective.contains("batch_size = 8")
            && effective.contains("learning_rate = 0.001"),
        "{effective}"
    );
    std::fs::write(&config, "epoch = 2\n").unwrap();
    let stderr = fails(&["train", "classify", "--config", config.to_str().unwrap()]);
    assert!(stderr.contains("run.toml") && stderr.contains("epoch"), "{stderr}");
}

#[test]
fn train_strict_refuses_a_bad_row_naming_its_line() {
    let dir = temp_dir("strict");
    let data = toy_training_csv(&dir);
    let stderr = fails(&[
        "train",
        "classify",
        "--base",
        fixture("tiny-safetensors").to_str().unwrap(),
        "--train",
        data.to_str().unwrap(),
        "--out",
        dir.join("run").to_str().unwrap(),
        "--strict",
    ]);
    assert!(stderr.contains("notes.csv") && stderr.contains("62"), "{stderr}");
}

#[test]
fn resume_after_a_kill_reaches_the_uninterrupted_weights() {
    let dir = temp_dir("kill");
    let data = toy_training_csv(&dir);
    let base = fixture("tiny-safetensors");
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            "classify",
            "--base",
            base.to_str().unwrap(),
            "--train",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "60",
            "--lr",
            "1e-3",
            "--batch-size",
            "8",
            "--max-seq-len",
            "16",
            "--save-steps",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let whole = dir.join("whole");
    let whole_args = args(&whole);
    ok(&whole_args.iter().map(String::as_str).collect::<Vec<_>>());

    // Kill -9 the same run once it has saved a state some steps in, then resume it.
    let parted = dir.join("parted");
    let parted_args = args(&parted);
    let mut child = Command::new(env!("CARGO_BIN_EXE_bedside"))
        .args(&parted_args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = parted.join("state/state.json");
    let started = std::time::Instant::now();
    loop {
        let step = std::fs::read_to_string(&state)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["step"].as_u64())
            .unwrap_or(0);
        if step >= 20 || started.elapsed().as_secs() > 120 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(still_running, "the run finished before it could be killed; make it longer");
    assert!(!parted.join("report.json").exists());
    let mut resume_args: Vec<&str> = parted_args.iter().map(String::as_str).collect();
    resume_args.push("--resume");
    ok(&resume_args);
    for file in ["best/model.safetensors", "state/model.safetensors", "state/optimizer.safetensors"] {
        let a = std::fs::read(whole.join(file)).unwrap();
        let b = std::fs::read(parted.join(file)).unwrap();
        assert!(a == b, "{file} differs between the killed-and-resumed run and the whole run");
    }
}

#[test]
fn export_of_an_embedding_model_reports_parity_on_pairs() {
    let dir = temp_dir("embed-parity");
    let pairs = dir.join("pairs.csv");
    std::fs::write(
        &pairs,
        "text1,text2,label\nchest pain,heart pain,1\nchest pain,cough and fever,0\ndiabetes,blood sugar glucose,1\n\
         diabetes,asthma with cough,0\nlung infection,cough and fever,1\nlung infection,insulin,0\n",
    )
    .unwrap();
    let bundle = dir.join("tiny.gguf");
    let out = ok(&[
        "export",
        "--model",
        fixture("tiny-safetensors").to_str().unwrap(),
        "--quant",
        "q8_0",
        "--out",
        bundle.to_str().unwrap(),
        "--data",
        pairs.to_str().unwrap(),
        "--json",
    ]);
    let parity: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(parity["pairs"], 6);
    let diff = parity["max_cosine_difference"].as_f64().unwrap();
    assert!(diff > 0.0 && diff < 0.05, "q8_0 vs f32 cosine difference {diff}");
    assert!(parity["spearman_f32"].is_number() && parity["spearman_bundle"].is_number(), "{parity}");
}

/// A CSV exported without its header row: the first row is a note. Every reader that looks for
/// a column says which one is missing and how many the header has, and never prints the row.
#[test]
fn a_headerless_csv_is_refused_without_echoing_the_note() {
    const SENTINEL: &str = "Jane Q Patient DOB 01/02/1950 MRN 1234567 chest pain";
    let dir = temp_dir("headerless");
    let notes = dir.join("notes.csv");
    std::fs::write(&notes, format!("1,{SENTINEL},cardiac\n2,cough and fever,respiratory\n")).unwrap();
    let notes = notes.to_str().unwrap();
    let bundle = export(&dir, "tiny-classifier", "f32", &[]);
    let embedder = export(&dir, "tiny-safetensors", "f32", &[]);
    let (b, e) = (bundle.to_str().unwrap(), embedder.to_str().unwrap());
    let out = dir.join("run");
    let base = fixture("tiny-safetensors");
    let commands: Vec<Vec<&str>> = vec![
        vec!["classify", "--model", b, "--input", notes],
        vec!["search", "--model", e, "--corpus", notes, "--query", "chest pain"],
        vec!["train", "classify", "--base", base.to_str().unwrap(), "--train", notes, "--out", out.to_str().unwrap()],
        vec!["eval", "--model", b, "--data", notes],
        vec!["eval", "embed", "--model", e, "--pairs", notes],
        vec!["inspect", notes],
    ];
    for args in commands {
        let stderr = fails(&args);
        for fragment in ["Jane", "1234567", "01/02/1950", "1,Ja"] {
            assert!(!stderr.contains(fragment), "{args:?} printed part of the note: {stderr}");
        }
        assert!(stderr.contains("notes.csv"), "{args:?}: the error names the file: {stderr}");
    }
}

/// The sentinel sweep: one made-up patient line placed where a hostile or careless export puts
/// it (an id, a label, a text, a value of the wrong type, a file that is not a bundle), through
/// every command that reads it, on error paths and on paths that succeed with row problems. It
/// must appear nowhere in stdout, stderr or the files a command writes.
#[test]
fn a_sentinel_note_never_reaches_output_logs_or_reports() {
    const SENTINEL: &str = "Jane Q Patient DOB 01/02/1950 MRN 1234567";
    let dir = temp_dir("sentinel");
    let write = |name: &str, contents: String| {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_string()
    };
    let bundle = export(&dir, "tiny-classifier", "f32", &[]);
    let embedder = export(&dir, "tiny-safetensors", "f32", &[]);
    let (b, e) = (bundle.to_str().unwrap(), embedder.to_str().unwrap());
    let dup_corpus = write(
        "corpus.jsonl",
        format!(
            "{{\"id\": \"{SENTINEL}\", \"text\": \"chest pain\"}}\n{{\"id\": \"{SENTINEL}\", \"text\": \"cough\"}}\n"
        ),
    );
    let dup_csv = write("corpus.csv", format!("id,text\n{SENTINEL},chest pain\n{SENTINEL},cough\n"));
    let typed_pairs =
        write("pairs.jsonl", format!("{{\"text1\": \"a\", \"text2\": \"b\", \"label\": \"{SENTINEL}\"}}\n"));
    let csv_pairs = write("pairs.csv", format!("text1,text2,label\nchest pain,heart,{SENTINEL}\n"));
    let unseen =
        write("unseen.csv", format!("text,label\nchest pain,cardiology\ncough,{SENTINEL}\nwheeze,respiratory\n"));
    let clean = write(
        "train.csv",
        "text,label\nchest pain,cardiology\ncough,respiratory\nwheeze,respiratory\nheart,cardiology\n".into(),
    );
    let empty_text = write("empty.csv", format!("id,text\n{SENTINEL},   \n"));
    let not_a_bundle = write("note.gguf", format!("{SENTINEL} presented with chest pain\n"));
    let run = dir.join("run");
    let (probe_run, ml_run, embed_run) = (dir.join("probe-run"), dir.join("ml-run"), dir.join("embed-run"));
    let base = fixture("tiny-safetensors");
    let eval_out = dir.join("eval-out");
    let commands: Vec<Vec<&str>> = vec![
        vec!["search", "--model", e, "--corpus", &dup_corpus, "--query", "chest pain"],
        vec!["search", "--model", e, "--corpus", &dup_csv, "--query", "chest pain"],
        vec!["eval", "embed", "--model", e, "--pairs", &typed_pairs],
        vec!["eval", "embed", "--model", e, "--pairs", &csv_pairs],
        vec!["eval", "--model", b, "--data", &unseen, "--out", eval_out.to_str().unwrap()],
        vec!["classify", "--model", b, "--input", &empty_text],
        vec!["classify", "--model", &not_a_bundle, "chest pain"],
        vec!["inspect", &not_a_bundle],
        vec!["export", "--model", &not_a_bundle, "--out", "/dev/null"],
        vec![
            "train",
            "classify",
            "--base",
            base.to_str().unwrap(),
            "--train",
            &clean,
            "--val",
            &unseen,
            "--epochs",
            "1",
            "--out",
            run.to_str().unwrap(),
        ],
        vec!["--expect-checksum", SENTINEL, "inspect", b],
        vec!["embed", "--model", &not_a_bundle, "chest pain"],
        vec!["similarity", "--model", &not_a_bundle, "chest pain", "angina"],
        vec!["serve", "--model", &not_a_bundle, "--port", "0"],
        vec!["search", "--model", e, "--corpus", &empty_text, "--query", "chest pain"],
        vec![
            "train",
            "probe",
            "--base",
            base.to_str().unwrap(),
            "--train",
            &empty_text,
            "--out",
            probe_run.to_str().unwrap(),
        ],
        vec![
            "train",
            "multilabel",
            "--base",
            base.to_str().unwrap(),
            "--train",
            &unseen,
            "--val",
            &empty_text,
            "--out",
            ml_run.to_str().unwrap(),
        ],
        vec![
            "train",
            "embed",
            "--base",
            base.to_str().unwrap(),
            "--train",
            &typed_pairs,
            "--out",
            embed_run.to_str().unwrap(),
        ],
        vec!["eval", "embed", "--model", e, "--corpus", &dup_corpus, "--queries", &dup_corpus, "--qrels", &csv_pairs],
    ];
    for args in &commands {
        let output = bedside(args);
        // Every case is an error path but two, which meet a label the model does not know
        // and count it in their output and report.
        let succeeds = args[..2] == ["train", "classify"] || args[..2] == ["eval", "--model"];
        assert_eq!(output.status.success(), succeeds, "{args:?}: {:?}", output.status);
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        for fragment in ["Jane", "1234567", "01/02/1950"] {
            assert!(!text.contains(fragment), "{args:?} printed part of the sentinel: {text}");
        }
    }
    // Reports and run files: every file any command wrote.
    let mut files = vec![dir.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if !path.to_str().unwrap().ends_with(".csv")
            && !path.to_str().unwrap().ends_with(".jsonl")
            && !path.ends_with("note.gguf")
        {
            let bytes = std::fs::read(&path).unwrap();
            assert!(!bytes.windows(7).any(|w| w == b"1234567"), "{} holds part of the sentinel", path.display());
        }
    }
}

#[test]
fn threads_sets_the_cores_a_run_uses() {
    let dir = temp_dir("threads");
    let data = toy_training_csv(&dir);
    let base = fixture("tiny-safetensors");
    let out = dir.join("run");
    let args = |threads: &str| {
        ["--threads", threads, "train", "classify", "--base", base.to_str().unwrap(), "--train", data.to_str().unwrap()]
            .into_iter()
            .chain(["--out", out.to_str().unwrap(), "--epochs", "1", "--batch-size", "8", "--max-seq-len", "32"])
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let one = args("1");
    ok(&one.iter().map(String::as_str).collect::<Vec<_>>());
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let threads: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["type"] == "step")
        .map(|l| l["threads"].as_u64().unwrap())
        .collect();
    assert!(!threads.is_empty() && threads.iter().all(|&t| t == 1), "{threads:?}");
    let zero = args("0");
    let message = fails(&zero.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(message.contains("--threads"), "{message}");
}

/// The CPU half of the GPU check (`scripts/gpu/check.sh`): two CPU runs of the tiny model
/// from one seed give the same loss trajectory, and a tolerance below zero makes it fail.
#[test]
fn the_gpu_check_compares_loss_trajectories() {
    let dir = temp_dir("gpu-check");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let check = |tolerance: &str| {
        let out = dir.join(format!("check{tolerance}.json"));
        let status = Command::new("bash")
            .arg(repo.join("scripts/gpu/check.sh"))
            .arg(&out)
            .env("BEDSIDE", env!("CARGO_BIN_EXE_bedside"))
            .env("DEVICES", "cpu,cpu")
            .env("MODELS", "tiny")
            .env("EPOCHS", "1")
            .env("SKIP_BENCH", "1")
            .env("TOLERANCE", tolerance)
            .output()
            .unwrap();
        let result: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        (status.status.code(), result)
    };
    let (code, result) = check("0.01");
    assert_eq!(code, Some(0), "{result}");
    for precision in ["f32", "bf16"] {
        let tiny = &result["models"]["tiny"][precision];
        let losses = tiny["cpu"]["losses"].as_array().unwrap();
        assert!(losses.len() >= 5 && losses.iter().all(|l| l.as_f64().is_some_and(f64::is_finite)), "{tiny}");
        assert_eq!(tiny["cpu#2"]["largest_relative_difference"], 0.0, "a seed repeats a CPU run bit for bit");
    }
    let tiny = &result["models"]["tiny"];
    assert_ne!(tiny["f32"]["cpu"]["losses"], tiny["bf16"]["cpu"]["losses"], "bf16 ran as f32");
    let (code, result) = check("-1");
    assert_eq!((code, &result["ok"]), (Some(1), &serde_json::Value::Bool(false)));
}
