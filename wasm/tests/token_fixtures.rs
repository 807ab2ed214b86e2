//! Token classification and RoBERTa against transformers: the tiny random
//! `BertForTokenClassification`, `RobertaForTokenClassification` and
//! `RobertaForSequenceClassification` of models/fixtures/make_token_fixtures.py, with the
//! logits, pipeline entities (every aggregation strategy) and probabilities it recorded.

mod common;

use bedside_runtime::bundle::{self, Quantization, Task};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::pipeline::entities::{Entity, EntityAggregation};
use bedside_runtime::Model;
use common::*;

/// f32 forward vs PyTorch f32: same math, different summation order.
const MAX_ABS_ERR: f32 = 1e-4;

const TOKEN_MODELS: &[&str] = &["tiny-bert-ner", "tiny-roberta-ner"];

fn model(dir: &str, quantization: Quantization) -> Model {
    let ckpt = Checkpoint::from_dir(&fixture(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
    let manifest = ckpt.default_manifest(quantization).unwrap();
    // Loading records which tensors the model reads: the bundle holds those.
    let model = Model::from_parts(manifest.clone(), &ckpt.tokenizer_json, &ckpt.weights).unwrap();
    if quantization == Quantization::F32 {
        return model;
    }
    let bytes = bundle::write(&manifest, &ckpt.tokenizer_json, &ckpt.weights, &ckpt.weights.used_names()).unwrap();
    Model::load(&bytes).unwrap()
}

fn texts(expected: &serde_json::Value) -> Vec<String> {
    expected["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// transformers' entities for one text: (label, byte start, byte end, score).
fn want_entities(v: &serde_json::Value) -> Vec<(String, usize, usize, f32)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["label"].as_str().unwrap().to_string(),
                e["start_byte"].as_u64().unwrap() as usize,
                e["end_byte"].as_u64().unwrap() as usize,
                e["score"].as_f64().unwrap() as f32,
            )
        })
        .collect()
}

fn same_entities(got: &[Entity], want: &[(String, usize, usize, f32)], what: &str) {
    let spans = |e: &[Entity]| e.iter().map(|e| (e.label.clone(), e.start, e.end)).collect::<Vec<_>>();
    let want_spans: Vec<_> = want.iter().map(|(l, s, e, _)| (l.clone(), *s, *e)).collect();
    assert_eq!(spans(got), want_spans, "{what}: entities");
    for (g, w) in got.iter().zip(want) {
        assert!((g.score - w.3).abs() <= MAX_ABS_ERR, "{what}: score {} vs {}", g.score, w.3);
    }
}

#[test]
fn token_models_match_transformers_logits_and_entities() {
    for dir in TOKEN_MODELS {
        let expected = read_json(&fixture(dir).join("expected.json"));
        let model = model(dir, Quantization::F32);
        assert_eq!(model.manifest().task, Task::TokenClassification, "{dir}");
        let mut entity_count = 0;
        for (i, text) in texts(&expected).iter().enumerate() {
            assert_eq!(model.token_ids(text).unwrap(), ids(&expected["input_ids"][i]), "{dir}: ids of text {i}");
            let logits = model.token_logits(text).unwrap();
            let want = matrix(&expected["logits"][i]);
            assert_eq!(logits.len(), want.len(), "{dir}: text {i}: rows");
            for (row, (g, w)) in logits.iter().zip(&want).enumerate() {
                let err = max_abs_diff(g, w);
                assert!(err <= MAX_ABS_ERR, "{dir}: text {i} token {row}: max |Δ| {err}");
            }
            for strategy in EntityAggregation::ALL {
                let got = bedside_runtime::runtime::block_on(model.tag_async(text, Some(strategy))).unwrap();
                let want = want_entities(&expected["entities"][strategy.as_str()][i]);
                entity_count += want.len();
                same_entities(&got, &want, &format!("{dir}: text {i}, {}", strategy.as_str()));
            }
        }
        assert!(entity_count >= 20, "{dir}: the fixture names only {entity_count} entities");
    }
}

/// q8_0 vs f32 token logits. The fixture heads are scaled so that labels disagree between
/// strategies, which leaves many near-ties a quantized model may flip: the token labels are
/// compared where the f32 margin between the two best labels exceeds twice this bound.
const MAX_ABS_ERR_Q8_0: f32 = 0.5;

#[test]
fn q8_0_bundles_label_tokens_as_f32_does() {
    for dir in TOKEN_MODELS {
        let expected = read_json(&fixture(dir).join("expected.json"));
        let f32_model = model(dir, Quantization::F32);
        let q8 = model(dir, Quantization::Q8_0);
        assert_eq!(q8.manifest().quantization, Quantization::Q8_0);
        let (mut compared, mut total) = (0, 0);
        let argmax = |r: &[f32]| r.iter().enumerate().fold(0, |b, (i, &v)| if v > r[b] { i } else { b });
        for (i, text) in texts(&expected).iter().enumerate() {
            let want = f32_model.token_logits(text).unwrap();
            let got = q8.token_logits(text).unwrap();
            for (t, (g, w)) in got.iter().zip(&want).enumerate() {
                let err = max_abs_diff(g, w);
                assert!(err <= MAX_ABS_ERR_Q8_0, "{dir}: text {i} token {t}: q8_0 max |Δ| {err}");
                let mut sorted = w.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                total += 1;
                if sorted[0] - sorted[1] > 2.0 * MAX_ABS_ERR_Q8_0 {
                    compared += 1;
                    assert_eq!(argmax(g), argmax(w), "{dir}: text {i} token {t}: q8_0 label");
                }
            }
            // Entities found by both: the same spans where the labels agree.
            let entities = q8.tag(text).unwrap();
            assert!(entities.iter().all(|e| e.end <= text.len()));
        }
        assert!(compared * 10 >= total * 6, "{dir}: only {compared} of {total} tokens had a clear label");
    }
}

#[test]
fn roberta_sequence_classifier_matches_transformers() {
    let expected = read_json(&fixture("tiny-roberta-classifier").join("expected.json"));
    let model = model("tiny-roberta-classifier", Quantization::F32);
    assert_eq!(model.manifest().task, Task::Classification);
    assert_eq!(model.manifest().labels, ["cardiac", "respiratory", "other"]);
    let want = matrix(&expected["probabilities"]);
    for (i, text) in texts(&expected).iter().enumerate() {
        assert_eq!(model.token_ids(text).unwrap(), ids(&expected["input_ids"][i]), "ids of text {i}");
        let p = model.classify(text).unwrap();
        let got: Vec<f32> = p.probabilities.0.iter().map(|(_, v)| *v).collect();
        let err = max_abs_diff(&got, &want[i]);
        assert!(err <= MAX_ABS_ERR, "text {i}: max |Δp| {err}");
    }
}

#[test]
fn long_notes_tag_in_windows() {
    // A note of words that are one token each, several windows long: each window's tokens
    // are then exactly the tokens of the text it spans, so the model's label for a token can
    // be recomputed from that text alone, in the window where the token is most central.
    let model = model("tiny-bert-ner", Quantization::F32);
    let expected = read_json(&fixture("tiny-bert-ner").join("expected.json"));
    let mut words: Vec<String> = texts(&expected)
        .iter()
        .flat_map(|t| t.split_whitespace().map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string()))
        .filter(|w| !w.is_empty() && model.token_ids(w).unwrap().len() == 3)
        .collect();
    words.sort();
    words.dedup();
    assert!(words.len() >= 5, "too few one-token words: {}", words.len());
    let mut rng = 7u64;
    let note_words: Vec<&str> = (0..200)
        .map(|_| {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            words[(rng >> 33) as usize % words.len()].as_str()
        })
        .collect();
    let note = note_words.join(" ");
    let starts: Vec<usize> = note_words
        .iter()
        .scan(0, |at, w| {
            let s = *at;
            *at += w.len() + 1;
            Some(s)
        })
        .collect();

    let (max_len, stride) = (model.manifest().max_seq_len, model.manifest().stride);
    let (content, n) = (max_len - 2, note_words.len());
    let step = content - stride;
    let mut windows = Vec::new(); // (first token, tokens)
    let mut first = 0;
    loop {
        let len = content.min(n - first);
        windows.push((first, len));
        if first + len == n {
            break;
        }
        first += step;
    }
    assert!(windows.len() >= 3, "the note should need several windows");
    let labels = &model.manifest().labels;
    let mut want = Vec::new();
    for t in 0..n {
        let (mut best, mut best_context) = (usize::MAX, 0);
        for (w, &(first, len)) in windows.iter().enumerate() {
            if (first..first + len).contains(&t) {
                let p = t - first;
                let context = p.min(len - 1 - p);
                if best == usize::MAX || context > best_context {
                    (best, best_context) = (w, context);
                }
            }
        }
        let (first, len) = windows[best];
        let span = &note[starts[first]..starts[first + len - 1] + note_words[first + len - 1].len()];
        let row = &model.token_logits(span).unwrap()[1 + t - first];
        let label = &labels[row.iter().enumerate().fold(0, |b, (i, &v)| if v > row[b] { i } else { b })];
        if label != "O" {
            want.push((label.clone(), starts[t], starts[t] + note_words[t].len()));
        }
    }
    let got = bedside_runtime::runtime::block_on(model.tag_async(&note, Some(EntityAggregation::None))).unwrap();
    let got: Vec<_> = got.iter().map(|e| (e.label.clone(), e.start, e.end)).collect();
    assert!(want.len() >= 10, "the recomputed labels name only {} entities", want.len());
    assert_eq!(got, want);
    // A token model does not classify.
    assert_eq!(model.classify("x").unwrap_err().code(), "wrong_task");
}

#[test]
fn deid_names_entity_types_not_tags() {
    // With the `none` aggregation entities keep their B-/I- tags; the redaction says the type.
    let ckpt = Checkpoint::from_dir(&fixture("tiny-bert-ner")).unwrap();
    let manifest = bundle::Manifest {
        entity_aggregation: EntityAggregation::None,
        ..ckpt.default_manifest(Quantization::F32).unwrap()
    };
    let model = Model::from_parts(manifest, &ckpt.tokenizer_json, &ckpt.weights).unwrap();
    let expected = read_json(&fixture("tiny-bert-ner").join("expected.json"));
    let text = &texts(&expected)[0];
    assert!(model.tag(text).unwrap().iter().any(|e| e.label.starts_with("B-")));
    let redacted = model.deid(text, None).unwrap();
    assert!(!redacted.counts.is_empty());
    assert!(
        redacted.counts.keys().all(|label| !label.starts_with("B-") && !label.starts_with("I-")),
        "{:?}",
        redacted.counts
    );
    assert!(!redacted.text.contains("[B-") && !redacted.text.contains("[I-"));
}
