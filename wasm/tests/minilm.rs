//! The real all-MiniLM-L6-v2 against sentence-transformers (PyTorch) on 24 medical
//! sentences: tests/fixtures/minilm_reference.json, made by
//! models/reference/make_minilm_reference.py.

mod common;

use bedside_runtime::bundle::{self, Quantization};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::Model;
use common::*;

const MIN_COSINE_F32: f32 = 0.9999;
const MIN_COSINE_Q8_0: f32 = 0.995;
const MIN_COSINE_Q4_0: f32 = 0.97;

fn bundle_model(ckpt: &Checkpoint, quant: Quantization) -> (Model, usize) {
    let manifest = ckpt.default_manifest(quant).unwrap();
    Model::from_parts(manifest.clone(), &ckpt.tokenizer_json, &ckpt.weights).unwrap();
    let bytes = bundle::write(&manifest, &ckpt.tokenizer_json, &ckpt.weights, &ckpt.weights.used_names()).unwrap();
    (Model::load(&bytes).unwrap(), bytes.len())
}

#[test]
fn minilm_matches_sentence_transformers() {
    let Some(dir) = minilm_dir() else { return };
    let reference = read_json(&repo_root().join("tests/fixtures/minilm_reference.json"));
    let sentences: Vec<&str> = reference["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(sentences.len() >= 20);
    let want = matrix(&reference["embeddings"]);

    let ckpt = Checkpoint::from_dir(&dir).unwrap();
    let f32_model =
        Model::from_parts(ckpt.default_manifest(Quantization::F32).unwrap(), &ckpt.tokenizer_json, &ckpt.weights)
            .unwrap();
    for (i, s) in sentences.iter().enumerate() {
        let want_ids: Vec<u32> =
            reference["token_ids"][i].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(f32_model.token_ids(s).unwrap(), want_ids, "token ids of sentence {i}");
    }

    let mut sizes = Vec::new();
    for (label, model, bound, size) in [
        ("checkpoint f32", f32_model, MIN_COSINE_F32, 0),
        {
            let (m, n) = bundle_model(&ckpt, Quantization::F32);
            ("bundle f32", m, MIN_COSINE_F32, n)
        },
        {
            let (m, n) = bundle_model(&ckpt, Quantization::Q8_0);
            ("bundle q8_0", m, MIN_COSINE_Q8_0, n)
        },
        {
            let (m, n) = bundle_model(&ckpt, Quantization::Q4_0);
            ("bundle q4_0", m, MIN_COSINE_Q4_0, n)
        },
    ] {
        let got = model.embed(&sentences).unwrap();
        let cosines: Vec<f32> = got.iter().zip(&want).map(|(g, w)| cosine(g, w)).collect();
        let min = cosines.iter().cloned().fold(f32::INFINITY, f32::min);
        eprintln!("{label}: min cosine vs sentence-transformers {min:.6}");
        assert!(min >= bound, "{label}: min cosine {min} < {bound} ({cosines:?})");
        // The model normalises (sentence-transformers' Normalize module).
        let norm = got[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{label}: norm {norm}");
        if size > 0 {
            sizes.push((label, size));
        }
    }
    let f32_size = sizes[0].1 as f64;
    for (label, size) in &sizes {
        eprintln!("{label}: {:.1} MB ({:.1}% of f32)", *size as f64 / 1e6, 100.0 * *size as f64 / f32_size);
    }
    assert!(sizes[1].1 as f64 <= 0.30 * f32_size, "q8_0 bundle over 30% of f32");
    assert!(sizes[2].1 as f64 <= 0.18 * f32_size, "q4_0 bundle over 18% of f32");
}
