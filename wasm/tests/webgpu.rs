//! The WebGPU backend against the CPU path, natively through wgpu (Vulkan: Mesa's
//! lavapipe in CI, NVIDIA's driver on a GPU machine). The bar: max |Δlogit| ≤ 1e-3
//! and embedding cosine ≥ 0.999, for f32, q8_0 and q4_0 weights, single windows and
//! batches, lengths 1 to 512, short and windowed long notes.

mod common;

use bedside_runtime::bundle::{self, Quantization};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::gpu::{Backend, GpuBert, GpuContext, GpuOutput};
use bedside_runtime::model::{
    random_weights, Bert, BertConfig, HeadFeatures, QuantizedMatmul, SequenceHead, SplitMix64, Weights,
};
use bedside_runtime::pipeline::encode::encode;
use bedside_runtime::pipeline::pool::{normalize, pool, Pooling};
use bedside_runtime::runtime::block_on;
use bedside_runtime::Model;
use candle_core::quantized::GgmlDType;
use common::*;

const MAX_LOGIT_DIFF: f32 = 1e-3;
const MIN_COSINE: f32 = 0.999;
const QUANTS: [Quantization; 4] = [Quantization::F32, Quantization::F16, Quantization::Q8_0, Quantization::Q4_0];

/// A WebGPU device, or None (skipped) where the machine has no adapter. scripts/test.sh
/// installs lavapipe and sets BEDSIDE_REQUIRE_WEBGPU, so CI cannot skip.
fn context() -> Option<GpuContext> {
    match block_on(GpuContext::new()) {
        Ok(ctx) => Some(ctx),
        Err(e) if std::env::var_os("BEDSIDE_REQUIRE_WEBGPU").is_some() => panic!("no WebGPU adapter: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: {e} (apt-get install mesa-vulkan-drivers gives lavapipe)");
            None
        }
    }
}

fn bundle_weights(dir: &std::path::Path, quant: Quantization) -> (BertConfig, Weights, usize, Vec<u8>) {
    let ckpt = Checkpoint::from_dir(dir).unwrap();
    let manifest = ckpt.default_manifest(quant).unwrap();
    Model::from_parts(manifest.clone(), &ckpt.tokenizer_json, &ckpt.weights).unwrap();
    let bytes = bundle::write(&manifest, &ckpt.tokenizer_json, &ckpt.weights, &ckpt.weights.used_names()).unwrap();
    let mut read = bundle::read(&bytes).unwrap();
    // The CPU reference for kernel-level comparisons: quantized weights dequantized to f32,
    // which is what the shaders compute (the default integer path also rounds activations).
    read.weights.set_quantized_matmul(QuantizedMatmul::Dequantized);
    (read.manifest.config.clone(), read.weights, read.manifest.head_outputs, bytes)
}

fn ids(seed: u64, len: usize, vocab: usize) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed);
    (0..len).map(|_| (rng.next_u64() % vocab as u64) as u32).collect()
}

/// Hidden states and logits of both backends for `batch`; asserts they agree.
fn compare(
    ctx: &GpuContext,
    what: &str,
    config: &BertConfig,
    w: &Weights,
    head: Option<(usize, HeadFeatures)>,
    batch: &[Vec<u32>],
) {
    let gpu = block_on(GpuBert::load(ctx.clone(), w, config, head)).unwrap();
    let cpu = Bert::load(w, config).unwrap();
    let refs: Vec<&[u32]> = batch.iter().map(Vec::as_slice).collect();
    let encoded = encode(&cpu, &refs, 0).unwrap();
    let want: Vec<f32> = encoded.hidden.flatten_all().unwrap().to_vec1().unwrap();
    let got = block_on(gpu.run(&refs, 0, GpuOutput::Hidden)).unwrap();
    let d = max_abs_diff(&want, &got);
    assert!(d <= MAX_LOGIT_DIFF, "{what}: hidden states differ by {d}");

    let mean =
        normalize(&pool(&encoded.hidden, &encoded.mask, Pooling::Mean).unwrap()).unwrap().to_vec2::<f32>().unwrap();
    let pooled = block_on(gpu.run(&refs, 0, GpuOutput::Pooled { pooling: Pooling::Mean, normalize: true })).unwrap();
    for (w, g) in mean.iter().zip(pooled.chunks(config.hidden_size)) {
        let c = cosine(w, g);
        assert!(c >= MIN_COSINE, "{what}: pooled cosine {c}");
    }

    if let Some((n, features)) = head {
        let head = SequenceHead::load(w, config, n, features).unwrap();
        let want: Vec<f32> =
            head.forward(&encoded.hidden, &encoded.mask).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let got = block_on(gpu.run(&refs, 0, GpuOutput::Logits)).unwrap();
        let d = max_abs_diff(&want, &got);
        assert!(d <= MAX_LOGIT_DIFF, "{what}: logits differ by {d}");
        eprintln!("{what}: max |Δlogit| {d:.2e}");
    }
}

#[test]
fn tiny_classifier_matches_cpu_in_every_format() {
    let Some(ctx) = context() else { return };
    for quant in QUANTS {
        let (config, w, outputs, _) = bundle_weights(&fixture("tiny-classifier"), quant);
        let v = config.vocab_size;
        let max = config.max_position_embeddings;
        for (name, batch) in [
            ("length 1", vec![ids(1, 1, v)]),
            ("length 17", vec![ids(2, 17, v)]),
            ("full window", vec![ids(3, max, v)]),
            ("batch of mixed lengths", vec![ids(4, 5, v), ids(5, max, v), ids(6, 33, v)]),
        ] {
            compare(&ctx, &format!("{quant:?} {name}"), &config, &w, Some((outputs, HeadFeatures::Pooler)), &batch);
        }
    }
}

/// Heads on raw [CLS] and on the masked mean (a probe's) read the same features on both
/// backends; padding must not enter the mean.
#[test]
fn tiny_classifier_heads_on_cls_and_mean_match_cpu() {
    let Some(ctx) = context() else { return };
    let (config, w, outputs, _) = bundle_weights(&fixture("tiny-classifier"), Quantization::F32);
    let v = config.vocab_size;
    let batch = [ids(4, 5, v), ids(5, config.max_position_embeddings, v), ids(6, 33, v)];
    for features in [HeadFeatures::Cls, HeadFeatures::Mean] {
        compare(&ctx, &format!("{features:?} head"), &config, &w, Some((outputs, features)), &batch);
    }
}

/// A random model with BERT-base's widths (hidden 768, 12 heads, 3072 intermediate) and
/// 512 positions; one layer keeps the test quick on a CPU Vulkan driver (depth adds no new
/// kernel paths).
fn base_shaped(quant: GgmlDType) -> (BertConfig, Weights) {
    let config = BertConfig { vocab_size: 1000, num_hidden_layers: 1, ..BertConfig::default() };
    let quant = (quant != GgmlDType::F32).then_some(quant);
    let mut weights = random_weights(&config, Some(2), quant, 7).unwrap();
    weights.set_quantized_matmul(QuantizedMatmul::Dequantized);
    (config.clone(), weights)
}

#[test]
fn bert_base_shaped_model_matches_cpu_at_128_and_512_tokens() {
    let Some(ctx) = context() else { return };
    for quant in [GgmlDType::F32, GgmlDType::Q8_0, GgmlDType::Q4_0] {
        let (config, w) = base_shaped(quant);
        let v = config.vocab_size;
        let head = Some((2, HeadFeatures::Pooler));
        compare(&ctx, &format!("base {quant:?} 512"), &config, &w, head, &[ids(8, 512, v)]);
        compare(&ctx, &format!("base {quant:?} 2×128"), &config, &w, head, &[ids(9, 128, v), ids(10, 77, v)]);
    }
}

#[test]
fn minilm_embeddings_match_cpu_in_every_format() {
    let Some(dir) = minilm_dir() else { return };
    let Some(_) = context() else { return };
    let texts = [
        "Type 2 diabetes mellitus with diabetic chronic kidney disease",
        "T2DM with CKD stage 3",
        "Patient denies chest pain; BP 142/90, HR 88. Continue lisinopril 10 mg daily and recheck in two weeks.",
        "a",
    ];
    for quant in QUANTS {
        let (_, _, _, bytes) = bundle_weights(&dir, quant);
        let cpu = Model::load(&bytes).unwrap();
        let gpu = block_on(Model::load_on(&bytes, Backend::WebGpu)).unwrap();
        assert_eq!(gpu.backend(), "webgpu");
        let want = cpu.embed(&texts).unwrap();
        let got = gpu.embed(&texts).unwrap();
        for (t, (w, g)) in texts.iter().zip(want.iter().zip(&got)) {
            let c = cosine(w, g);
            assert!(c >= MIN_COSINE, "{quant:?} {t:?}: cosine {c}");
        }
    }
}

#[test]
fn windowed_long_notes_classify_the_same() {
    let Some(_) = context() else { return };
    let note = "Chest pain radiating to the left arm, troponin elevated, started on heparin. ".repeat(12)
        + &"Wheezing and shortness of breath, albuterol nebuliser given. ".repeat(10);
    for quant in QUANTS {
        let (_, _, _, bytes) = bundle_weights(&fixture("tiny-classifier"), quant);
        let reference = block_on(Model::load_with(&bytes, Backend::Cpu, QuantizedMatmul::Dequantized)).unwrap();
        let cpu = reference.classify(&note).unwrap();
        let gpu = block_on(Model::load_on(&bytes, Backend::WebGpu)).unwrap();
        let got = gpu.classify(&note).unwrap();
        // The default CPU path (integer matmuls for q8_0/q4_0) gives the same decision.
        assert_eq!(Model::load(&bytes).unwrap().classify(&note).unwrap().label, cpu.label, "{quant:?}: integer path");
        assert!(cpu.chunks.len() > 2, "the note should need several windows");
        assert_eq!(got.chunks.len(), cpu.chunks.len());
        assert_eq!(got.label, cpu.label);
        for (a, b) in cpu.chunks.iter().zip(&got.chunks) {
            for ((_, p), (_, q)) in a.probabilities.0.iter().zip(&b.probabilities.0) {
                assert!((p - q).abs() <= MAX_LOGIT_DIFF, "{quant:?}: window {} {p} vs {q}", a.index);
            }
        }
    }
}

#[test]
fn a_lost_device_falls_back_to_the_cpu_with_a_note() {
    let Some(_) = context() else { return };
    let (_, _, _, bytes) = bundle_weights(&fixture("tiny-classifier"), Quantization::Q8_0);
    let note = "Wheezing and shortness of breath, albuterol nebuliser given.";
    let want = Model::load(&bytes).unwrap().classify(note).unwrap();
    let model = block_on(Model::load_on(&bytes, Backend::WebGpu)).unwrap();
    assert_eq!(model.backend(), "webgpu");
    model.simulate_gpu_loss();
    let got = model.classify(note).unwrap();
    assert_eq!(model.backend(), "cpu");
    let reason = model.backend_note().unwrap_or_default();
    assert_eq!(reason, "The GPU stopped working, so the model switched to the CPU.");
    assert!(model.switched_to_cpu() && !model.backend_detail().unwrap_or_default().is_empty());
    assert_eq!(got, want, "after the fallback the answer is the CPU path's");
}

#[test]
fn cpu_backend_and_bad_backend_names() {
    let (_, _, _, bytes) = bundle_weights(&fixture("tiny-classifier"), Quantization::F32);
    let cpu = block_on(Model::load_on(&bytes, Backend::Cpu)).unwrap();
    assert_eq!(cpu.backend(), "cpu");
    assert!(cpu.backend_note().is_none());
    let err = "metal".parse::<Backend>().unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
    // Auto never fails: it runs on WebGPU, or on the CPU with a note saying why.
    let auto = block_on(Model::load_on(&bytes, Backend::Auto)).unwrap();
    assert!(auto.backend() == "webgpu" || auto.backend_note().is_some());
    // The note is one plain sentence; the technical reason is kept apart.
    if let (Some(note), Some(detail)) = (auto.backend_note(), auto.backend_detail()) {
        assert!(note.ends_with("runs on the CPU.") && note.matches('.').count() == 1, "{note}");
        assert!(!detail.is_empty() && !auto.switched_to_cpu());
    }
}
