//! Bad input gets a typed error that names the problem, never a panic: one test per case.

mod common;

use std::path::Path;

use bedside_runtime::bundle::{self, Quantization};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::{Error, Model};
use common::*;

fn tiny_bundle(dir: &str) -> Vec<u8> {
    let ckpt = Checkpoint::from_dir(&fixture(dir)).unwrap();
    let manifest = ckpt.default_manifest(Quantization::Q8_0).unwrap();
    Model::from_parts(manifest.clone(), &ckpt.tokenizer_json, &ckpt.weights).unwrap();
    bundle::write(&manifest, &ckpt.tokenizer_json, &ckpt.weights, &ckpt.weights.used_names()).unwrap()
}

fn load_err(bytes: &[u8]) -> Error {
    Model::load(bytes).expect_err("loading should fail")
}

/// Copies a fixture directory so a test can damage it.
fn copy_fixture(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bedside-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn truncated_bundle() {
    let bytes = tiny_bundle("tiny-classifier");
    for cut in [3, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = load_err(&bytes[..cut]);
        assert_eq!(err.code(), "truncated_bundle", "cut at {cut}: {err}");
    }
    assert_eq!(load_err(&[]).code(), "truncated_bundle");
}

#[test]
fn wrong_magic() {
    let mut bytes = tiny_bundle("tiny-classifier");
    bytes[..4].copy_from_slice(b"PK\x03\x04");
    let err = load_err(&bytes);
    assert_eq!(err.code(), "bad_magic");
    assert!(err.to_string().contains("GGUF"), "{err}");
    // A note opened as a bundle by mistake: its first bytes are not echoed.
    let err = load_err(b"Jane Q Patient, DOB 01/02/1950");
    assert_eq!(err.code(), "bad_magic");
    assert!(!err.to_string().contains("Jane"), "{err}");
}

#[test]
fn checksum_mismatch() {
    let mut bytes = tiny_bundle("tiny-classifier");
    let last = bytes.len() - 40; // inside the last tensor's data
    bytes[last] ^= 0x55;
    let err = load_err(&bytes);
    assert_eq!(err.code(), "checksum_mismatch", "{err}");
}

#[test]
fn tampered_manifest_is_caught_by_the_checksum() {
    let bytes = tiny_bundle("tiny-classifier");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let at = text.find("cardiology").expect("label in manifest");
    let mut bytes = bytes;
    bytes[at..at + 4].copy_from_slice(b"CARD");
    assert_eq!(load_err(&bytes).code(), "checksum_mismatch");
}

#[test]
fn tensor_missing() {
    let dir = temp_dir("missing");
    copy_fixture("tiny-safetensors", &dir);
    let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let kept: std::collections::HashMap<String, candle_core::Tensor> =
        tensors.into_iter().filter(|(n, _)| !n.contains("layer.1.intermediate.dense.weight")).collect();
    candle_core::safetensors::save(&kept, dir.join("model.safetensors")).unwrap();
    let err = Model::from_checkpoint_dir(&dir).unwrap_err();
    assert_eq!(err.code(), "missing_tensor");
    assert!(err.to_string().contains("encoder.layer.1.intermediate.dense.weight"), "{err}");
}

#[test]
fn tensor_of_the_wrong_shape() {
    let dir = temp_dir("shape");
    copy_fixture("tiny-safetensors", &dir);
    let mut tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let name = "encoder.layer.0.attention.self.query.weight";
    let wrong = candle_core::Tensor::zeros((32, 31), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    tensors.insert(name.to_string(), wrong);
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    let err = Model::from_checkpoint_dir(&dir).unwrap_err();
    assert_eq!(err.code(), "tensor_shape");
    assert!(err.to_string().contains(name) && err.to_string().contains("[32, 31]"), "{err}");
}

#[test]
fn unsupported_architecture() {
    let dir = temp_dir("arch");
    copy_fixture("tiny-safetensors", &dir);
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let config = config
        .replace("\"BertModel\"", "\"DistilBertModel\"")
        .replace("\"model_type\": \"bert\"", "\"model_type\": \"distilbert\"");
    std::fs::write(dir.join("config.json"), config).unwrap();
    let err = Model::from_checkpoint_dir(&dir).unwrap_err();
    assert_eq!(err.code(), "unsupported_architecture");
    assert!(err.to_string().contains("DistilBertModel"), "{err}");
}

#[test]
fn empty_text() {
    let model = Model::load(&tiny_bundle("tiny-classifier")).unwrap();
    for text in ["", "   \n\t"] {
        assert_eq!(model.classify(text).unwrap_err().code(), "empty_text");
    }
    let err = model.embed(&["fine", ""]).unwrap_err();
    assert!(matches!(err, Error::EmptyText { index: 1 }), "{err}");
}

#[test]
fn non_utf8_file() {
    let dir = temp_dir("utf8");
    copy_fixture("tiny-pth-vocab", &dir);
    let mut vocab = std::fs::read(dir.join("vocab.txt")).unwrap();
    vocab.extend_from_slice(b"caf\xe9\n"); // Latin-1, not UTF-8
    std::fs::write(dir.join("vocab.txt"), vocab).unwrap();
    let err = Model::from_checkpoint_dir(&dir).unwrap_err();
    assert_eq!(err.code(), "not_utf8");
    assert!(err.to_string().contains("vocab.txt"), "{err}");
}

#[test]
fn unknown_quantization() {
    let err = "q3_k".parse::<Quantization>().unwrap_err();
    assert_eq!(err.code(), "unknown_quantization");
    assert!(err.to_string().contains("q8_0"), "{err}");
}

#[test]
fn classify_needs_a_head() {
    let model = Model::load(&tiny_bundle("tiny-safetensors")).unwrap();
    assert_eq!(model.classify("chest pain").unwrap_err().code(), "wrong_task");
}

#[test]
fn missing_weights_and_tokenizer_name_the_directory() {
    let dir = temp_dir("noweights");
    copy_fixture("tiny-safetensors", &dir);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert_eq!(Model::from_checkpoint_dir(&dir).unwrap_err().code(), "no_weights");
    copy_fixture("tiny-safetensors", &dir);
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    std::fs::remove_file(dir.join("vocab.txt")).unwrap();
    assert_eq!(Model::from_checkpoint_dir(&dir).unwrap_err().code(), "no_tokenizer");
}

#[test]
fn random_bytes_never_panic() {
    // A cheap fuzz: every prefix-damage of a real bundle, and noise after the magic.
    let bytes = tiny_bundle("tiny-classifier");
    let mut state = 0x9e3779b97f4a7c15u64;
    for _ in 0..200 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut damaged = bytes.clone();
        let at = (state as usize) % 2048.min(damaged.len());
        damaged[at] = (state >> 32) as u8;
        let _ = Model::load(&damaged); // must return, Ok or Err
    }
}

#[test]
fn crafted_tensor_shape_is_refused_without_overflow() {
    // Rewrite the first tensor's first dim to 2^62: the element count overflows usize.
    let bytes = tiny_bundle("tiny-classifier");
    let content = candle_core::quantized::gguf_file::Content::read(&mut std::io::Cursor::new(&bytes)).unwrap();
    let (name, info) = content.tensor_infos.iter().find(|(_, i)| i.shape.dims().len() == 2).unwrap();
    let name_at = bytes.windows(name.len()).rposition(|w| w == name.as_bytes()).unwrap();
    // After the name: n_dims (u32), then dims as u64, innermost first.
    let dim_at = name_at + name.len() + 4;
    let innermost = *info.shape.dims().last().unwrap() as u64;
    assert_eq!(u64::from_le_bytes(bytes[dim_at..dim_at + 8].try_into().unwrap()), innermost);
    let mut bytes = bytes;
    bytes[dim_at..dim_at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let err = load_err(&bytes);
    assert!(matches!(err.code(), "bad_bundle" | "truncated_bundle"), "{err}");
}

#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    // A NaN in an f32 tensor and an infinite q8_0 block scale, each with a valid checksum.
    let ckpt = Checkpoint::from_dir(&fixture("tiny-classifier")).unwrap();
    for quant in [Quantization::F32, Quantization::Q8_0] {
        let manifest = ckpt.default_manifest(quant).unwrap();
        // Building the model marks the tensors it reads, which are the ones written.
        Model::from_parts(manifest.clone(), &ckpt.tokenizer_json, &ckpt.weights).unwrap();
        let mut bytes =
            bundle::write(&manifest, &ckpt.tokenizer_json, &ckpt.weights, &ckpt.weights.used_names()).unwrap();
        let header = bundle::gguf::read_header(&bytes, |_| Ok(())).unwrap();
        let dtype = match quant {
            Quantization::F32 => candle_core::quantized::GgmlDType::F32,
            _ => candle_core::quantized::GgmlDType::Q8_0,
        };
        let t = header.tensors.iter().find(|t| t.dims.len() == 2 && t.dtype == dtype).unwrap().clone();
        let (name, at) = (t.name.clone(), header.data_offset + t.offset as usize);
        let poison: &[u8] = match quant {
            Quantization::F32 => &f32::NAN.to_le_bytes(),
            _ => &half::f16::INFINITY.to_le_bytes(),
        };
        // The second value (f32) or the second block's scale (q8_0).
        let second = if quant == Quantization::F32 { 4 } else { 34 };
        bytes[at + second..at + second + poison.len()].copy_from_slice(poison);
        bundle::reseal(&mut bytes).unwrap();
        let err = load_err(&bytes);
        assert_eq!(err.code(), "non_finite_weights", "{quant:?}: {err}");
        let want = if quant == Quantization::F32 { "value 1 " } else { "value 32 " };
        assert!(err.to_string().contains(&format!("`{name}`")) && err.to_string().contains(want), "{err}");
    }
}
