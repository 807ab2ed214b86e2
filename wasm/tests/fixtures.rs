//! The tiny random BERTs in every on-disk layout, against PyTorch/transformers outputs
//! recorded by models/fixtures/make_fixtures.py.

mod common;

use bedside_runtime::bundle::{self, Quantization, Task};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::model::{Bert, Weights};
use bedside_runtime::pipeline::encode::encode;
use bedside_runtime::pipeline::pool::{pool, Pooling};
use bedside_runtime::Model;
use common::*;

/// f32 forward vs PyTorch f32: same math, different summation order.
const MAX_ABS_ERR_F32: f32 = 1e-4;
/// f32 bundle vs f32 checkpoint: the same weights, bit for bit.
const MAX_ABS_ERR_ROUNDTRIP: f32 = 1e-6;
const MIN_COSINE_Q8_0: f32 = 0.99;

const LAYOUTS: &[&str] = &["tiny-safetensors", "tiny-pth-vocab", "tiny-classifier"];

fn hidden_states(ckpt: &Checkpoint, ids: &[u32]) -> (Vec<f32>, Vec<f32>) {
    let bert = Bert::load(&ckpt.weights, &ckpt.config).unwrap();
    let enc = encode(&bert, &[ids], 0).unwrap();
    let mean = pool(&enc.hidden, &enc.mask, Pooling::Mean).unwrap().to_vec2::<f32>().unwrap().remove(0);
    let cls = pool(&enc.hidden, &enc.mask, Pooling::Cls).unwrap().to_vec2::<f32>().unwrap().remove(0);
    (mean, cls)
}

#[test]
fn every_layout_matches_transformers() {
    for layout in LAYOUTS {
        let dir = fixture(layout);
        let expected = read_json(&dir.join("expected.json"));
        let ckpt = Checkpoint::from_dir(&dir).unwrap_or_else(|e| panic!("{layout}: {e}"));
        let model =
            Model::from_parts(ckpt.default_manifest(Quantization::F32).unwrap(), &ckpt.tokenizer_json, &ckpt.weights)
                .unwrap();
        let sentences = expected["sentences"].as_array().unwrap();
        let want_mean = matrix(&expected["mean_pooled"]);
        let want_cls = matrix(&expected["cls"]);
        for (i, sentence) in sentences.iter().enumerate() {
            let sentence = sentence.as_str().unwrap();
            let want_ids: Vec<u32> =
                expected["input_ids"][i].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
            let ids = model.token_ids(sentence).unwrap();
            assert_eq!(ids, want_ids, "{layout}: token ids of sentence {i}");
            let (mean, cls) = hidden_states(&ckpt, &ids);
            let err = max_abs_diff(&mean, &want_mean[i]).max(max_abs_diff(&cls, &want_cls[i]));
            assert!(err <= MAX_ABS_ERR_F32, "{layout}: sentence {i}: max |Δ| {err} > {MAX_ABS_ERR_F32}");
        }
    }
}

#[test]
fn vocab_only_checkpoint_is_detected_as_cased() {
    let ckpt = Checkpoint::from_dir(&fixture("tiny-pth-vocab")).unwrap();
    let model =
        Model::from_parts(ckpt.default_manifest(Quantization::F32).unwrap(), &ckpt.tokenizer_json, &ckpt.weights)
            .unwrap();
    // A cased tokenizer keeps "Patient" apart from "patient".
    assert_ne!(model.token_ids("Patient").unwrap(), model.token_ids("patient").unwrap());
    let uncased = Model::from_checkpoint_dir(&fixture("tiny-safetensors")).unwrap();
    assert_eq!(uncased.token_ids("Patient").unwrap(), uncased.token_ids("patient").unwrap());
}

#[test]
fn classifier_logits_match_transformers() {
    let dir = fixture("tiny-classifier");
    let expected = read_json(&dir.join("expected.json"));
    let model = Model::from_checkpoint_dir(&dir).unwrap();
    assert_eq!(model.manifest().task, Task::Classification);
    assert_eq!(model.manifest().labels, vec!["cardiology", "endocrinology", "respiratory"]);
    let want = matrix(&expected["probabilities"]);
    for (i, sentence) in expected["sentences"].as_array().unwrap().iter().enumerate() {
        let p = model.classify(sentence.as_str().unwrap()).unwrap();
        let got: Vec<f32> = p.probabilities.0.iter().map(|(_, v)| *v).collect();
        let err = max_abs_diff(&got, &want[i]);
        assert!(err <= MAX_ABS_ERR_F32, "sentence {i}: max |Δp| {err}");
        assert_eq!(p.chunks.len(), 1);
        let best = want[i].iter().cloned().fold(f32::MIN, f32::max);
        assert!((p.score - best).abs() < MAX_ABS_ERR_F32);
    }
}

fn export(dir: &str, quant: Quantization) -> (Model, Vec<u8>) {
    let ckpt = Checkpoint::from_dir(&fixture(dir)).unwrap();
    let manifest = ckpt.default_manifest(quant).unwrap();
    Model::from_parts(manifest.clone(), &ckpt.tokenizer_json, &ckpt.weights).unwrap();
    let bytes = bundle::write(&manifest, &ckpt.tokenizer_json, &ckpt.weights, &ckpt.weights.used_names()).unwrap();
    (Model::from_checkpoint_dir(&fixture(dir)).unwrap(), bytes)
}

#[test]
fn bundles_round_trip_and_quantize_within_bounds() {
    for layout in LAYOUTS {
        let texts = ["patient denies chest pain.", "metformin 500 mg twice daily"];
        let (source, f32_bytes) = export(layout, Quantization::F32);
        let want = source.embed(&texts).unwrap();
        let f32_model = Model::load(&f32_bytes).unwrap();
        for (w, g) in want.iter().zip(f32_model.embed(&texts).unwrap()) {
            assert!(max_abs_diff(w, &g) <= MAX_ABS_ERR_ROUNDTRIP, "{layout}: f32 bundle differs");
        }
        let (_, q8_bytes) = export(layout, Quantization::Q8_0);
        assert!(q8_bytes.len() < f32_bytes.len(), "{layout}: q8_0 not smaller");
        let q8 = Model::load(&q8_bytes).unwrap();
        for (w, g) in want.iter().zip(q8.embed(&texts).unwrap()) {
            let c = cosine(w, &g);
            assert!(c >= MIN_COSINE_Q8_0, "{layout}: q8_0 cosine {c}");
        }
        assert_eq!(q8.manifest(), &{
            let mut m = source.manifest().clone();
            m.quantization = Quantization::Q8_0;
            m
        });
    }
}

#[test]
fn export_writes_only_the_tensors_the_model_reads() {
    let ckpt = Checkpoint::from_dir(&fixture("tiny-safetensors")).unwrap();
    let mut weights = Weights::from_checkpoint(
        ckpt.weights.iter().map(|(n, w)| (n.clone(), w.to_f32().unwrap())).collect::<Vec<_>>(),
    )
    .unwrap();
    // A masked-LM head, as BioBERT checkpoints carry: not needed for embeddings.
    let junk = candle_core::Tensor::zeros((4, 32), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    weights.insert("cls.predictions.transform.dense.weight".into(), bedside_runtime::model::Weight::Dense(junk));
    let manifest = ckpt.default_manifest(Quantization::F32).unwrap();
    Model::from_parts(manifest.clone(), &ckpt.tokenizer_json, &weights).unwrap();
    let names = weights.used_names();
    assert!(!names.iter().any(|n| n.starts_with("cls.")));
    let bytes = bundle::write(&manifest, &ckpt.tokenizer_json, &weights, &names).unwrap();
    let read = bundle::read(&bytes).unwrap();
    assert_eq!(read.weights.names().count(), names.len());
}

#[test]
fn batched_embeddings_equal_one_at_a_time() {
    let model = Model::from_checkpoint_dir(&fixture("tiny-safetensors")).unwrap();
    let texts = ["no fever or cough", "patient denies chest pain and shortness of breath today", "pain"];
    let batch = model.embed(&texts).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let single = model.embed(&[text]).unwrap().remove(0);
        let err = max_abs_diff(&batch[i], &single);
        assert!(err < 1e-5, "text {i}: batched differs by {err}");
    }
}

/// The classifier reads the features its manifest names, computed here by hand from the
/// encoder's states: raw [CLS], the mean over real tokens, or tanh(pooler · [CLS]); the choice
/// survives a bundle round trip.
#[test]
fn classifier_heads_read_the_features_the_manifest_names() {
    use bedside_runtime::model::HeadFeatures;
    let note = "patient denies chest pain. metformin 500 mg twice daily";
    let mut by_features = Vec::new();
    for features in [HeadFeatures::Pooler, HeadFeatures::Cls, HeadFeatures::Mean] {
        // Fresh weights each time: `used_names` records what this head reads.
        let ckpt = Checkpoint::from_dir(&fixture("tiny-classifier")).unwrap();
        let bert = Bert::load(&ckpt.weights, &ckpt.config).unwrap();
        let dense = |name: &str| ckpt.weights.get_any(name).unwrap().to_f32().unwrap();
        let manifest =
            bundle::Manifest { head_features: features, ..ckpt.default_manifest(Quantization::F32).unwrap() };
        let model = Model::from_parts(manifest.clone(), &ckpt.tokenizer_json, &ckpt.weights).unwrap();
        let ids = model.token_ids(note).unwrap();
        let encoded = encode(&bert, &[ids.as_slice()], 0).unwrap();
        let pooled = pool(&encoded.hidden, &encoded.mask, features.pooling()).unwrap();
        let pooled = match features {
            HeadFeatures::Pooler => pooled
                .matmul(&dense("pooler.dense.weight").t().unwrap())
                .unwrap()
                .broadcast_add(&dense("pooler.dense.bias"))
                .unwrap()
                .tanh()
                .unwrap(),
            _ => pooled,
        };
        let logits = pooled
            .matmul(&dense("classifier.weight").t().unwrap())
            .unwrap()
            .broadcast_add(&dense("classifier.bias"))
            .unwrap();
        let want: Vec<f32> = candle_nn::ops::softmax(&logits, 1).unwrap().to_vec2::<f32>().unwrap().remove(0);
        let got: Vec<f32> = model.classify(note).unwrap().probabilities.0.iter().map(|(_, p)| *p).collect();
        let d = max_abs_diff(&got, &want);
        assert!(d <= MAX_ABS_ERR_F32, "{features:?}: max |Δp| {d}");

        let bytes = bundle::write(&manifest, &ckpt.tokenizer_json, &ckpt.weights, &ckpt.weights.used_names()).unwrap();
        // A head on raw [CLS] or the mean needs no pooler, so the bundle carries none.
        let stored = bundle::read(&bytes).unwrap();
        assert_eq!(stored.weights.contains("pooler.dense.weight"), features == HeadFeatures::Pooler);
        let loaded = Model::load(&bytes).unwrap();
        assert_eq!(loaded.manifest().head_features, features);
        let again: Vec<f32> = loaded.classify(note).unwrap().probabilities.0.iter().map(|(_, p)| *p).collect();
        assert!(max_abs_diff(&again, &got) <= MAX_ABS_ERR_ROUNDTRIP, "{features:?}: bundle differs");
        by_features.push(got);
    }
    // The three heads are three different functions of the note (the test can tell them apart).
    assert!(max_abs_diff(&by_features[0], &by_features[1]) > 1e-4);
    assert!(max_abs_diff(&by_features[1], &by_features[2]) > 1e-4);
}
