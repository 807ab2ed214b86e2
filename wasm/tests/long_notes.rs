//! Long notes: windowing and the ClinicalBERT aggregation, end to end through `Model`.

mod common;

use bedside_runtime::bundle::{self, Quantization, Task};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::model::{Weight, Weights};
use bedside_runtime::pipeline::aggregate::Aggregation;
use bedside_runtime::Model;
use common::*;

/// tiny-classifier with its 3-way head cut to one sigmoid output: a binary
/// (readmission-style) model, written to a q8_0 bundle and loaded back.
fn binary_model(c: f32, stride: usize) -> Model {
    let ckpt = Checkpoint::from_dir(&fixture("tiny-classifier")).unwrap();
    let mut weights = Weights::new("test");
    for (name, w) in ckpt.weights.iter() {
        let t = w.to_f32().unwrap();
        let t = if name.starts_with("classifier.") { t.narrow(0, 0, 1).unwrap() } else { t };
        weights.insert(name.clone(), Weight::Dense(t));
    }
    let mut manifest = ckpt.default_manifest(Quantization::Q8_0).unwrap();
    manifest.task = Task::Binary;
    manifest.labels = vec!["no readmission".into(), "readmission".into()];
    manifest.head_outputs = 1;
    manifest.aggregation = Aggregation::Clinicalbert { c };
    manifest.stride = stride;
    manifest.min_confidence = 0.99;
    Model::from_parts(manifest.clone(), &ckpt.tokenizer_json, &weights).unwrap();
    let bytes = bundle::write(&manifest, &ckpt.tokenizer_json, &weights, &weights.used_names()).unwrap();
    Model::load(&bytes).unwrap()
}

fn note(sentences: usize) -> String {
    let pieces = [
        "patient denies chest pain.",
        "history of diabetes and high blood pressure, metformin 500 mg twice daily.",
        "no fever or cough today.",
        "shortness of breath on exertion, bp 150/90.",
    ];
    (0..sentences).map(|i| pieces[i % pieces.len()]).collect::<Vec<_>>().join(" ")
}

#[test]
fn binary_note_score_is_the_clinicalbert_rule_over_its_windows() {
    let c = 2.0;
    let model = binary_model(c, 8);
    let text = note(40);
    let p = model.classify(&text).unwrap();
    let n = p.chunks.len();
    assert!(n >= 5, "expected a windowed note, got {n} windows");
    let window_pos: Vec<f32> = p.chunks.iter().map(|ch| ch.probabilities.get("readmission").unwrap()).collect();
    let max = window_pos.iter().cloned().fold(f32::MIN, f32::max);
    let mean = window_pos.iter().sum::<f32>() / n as f32;
    let r = n as f32 / c;
    let want = (max + mean * r) / (1.0 + r);
    let got = p.probabilities.get("readmission").unwrap();
    assert!((got - want).abs() < 1e-6, "note P {got}, rule gives {want}");
    assert!((p.probabilities.get("no readmission").unwrap() - (1.0 - got)).abs() < 1e-6);
    // The decision and the flag follow the manifest's threshold (0.5) and min_confidence (0.99).
    assert_eq!(p.label, if got >= 0.5 { "readmission" } else { "no readmission" });
    assert!(p.uncertain, "confidence {} is below 0.99", p.score);
    // Windows cover the note in order, with text offsets into the original string.
    assert_eq!(p.chunks[0].start, 0);
    assert_eq!(p.chunks[n - 1].end, text.trim_end().len());
    assert!(text[p.chunks[1].start..p.chunks[1].end].split_whitespace().count() > 5);
}

#[test]
fn overlap_changes_the_number_of_windows_as_configured() {
    let text = note(60);
    let few = binary_model(2.0, 0).classify(&text).unwrap().chunks.len();
    let many = binary_model(2.0, 40).classify(&text).unwrap().chunks.len();
    // 62 text tokens per window: step 62 with no overlap, 22 with 40 shared tokens.
    assert!(many as f32 >= 2.5 * few as f32, "{few} vs {many} windows");
}

#[test]
fn twenty_thousand_words_classify_in_bounded_batches() {
    let model = binary_model(2.0, 8);
    let text = note(3_000);
    assert!(text.split_whitespace().count() >= 20_000);
    let p = model.classify(&text).unwrap();
    assert!(p.chunks.len() > 500);
    assert!(p.probabilities.get("readmission").unwrap().is_finite());
}
