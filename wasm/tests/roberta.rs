//! RoBERTa (sequence and token heads) and, as a control, the BERT token classifier, in every
//! bundle quantization: the CPU path in each `QuantizedMatmul` mode against the f32
//! checkpoint, and the WebGPU backend (natively through wgpu) against the CPU reference it
//! computes (dequantized weights), on the fixture texts and on notes several windows long.
//!
//! Fixtures: models/fixtures/make_token_fixtures.py (`RobertaForSequenceClassification`,
//! `RobertaForTokenClassification`, `BertForTokenClassification`; hidden 32, 64 positions).

mod common;

use bedside_runtime::bundle::{self, Quantization, Task};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::gpu::{Backend, GpuBert, GpuContext, GpuOutput};
use bedside_runtime::model::{Architecture, Bert, QuantizedMatmul, SequenceHead, TokenHead};
use bedside_runtime::pipeline::encode::encode;
use bedside_runtime::pipeline::entities::{Entity, EntityAggregation};
use bedside_runtime::runtime::block_on;
use bedside_runtime::Model;
use common::*;

const MODELS: &[&str] = &["tiny-roberta-classifier", "tiny-roberta-ner", "tiny-bert-ner"];
const QUANTS: [Quantization; 4] = [Quantization::F32, Quantization::F16, Quantization::Q8_0, Quantization::Q4_0];
const MODES: [QuantizedMatmul; 3] = [QuantizedMatmul::Integer, QuantizedMatmul::Relaxed, QuantizedMatmul::Dequantized];

/// f32 bundle vs f32 checkpoint: the same weights bit for bit through the same kernels.
const MAX_ABS_ERR_ROUNDTRIP: f32 = 1e-6;

/// How far a bundle may move from the f32 checkpoint: on token logits (token heads) or on
/// label probabilities (the sequence head).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    /// max |Δ| of any value of any row.
    max_abs: f32,
    /// Rows whose reference margin between the two best labels exceeds this count as clear:
    /// twice `max_abs` where that is small, so an error within the bound cannot flip them.
    clear_margin: f32,
    /// Share of the clear rows whose label must be the reference's (1: every one).
    min_agreement: f32,
    /// Share of all rows that must be clear (token heads): the fixture heads are scaled so
    /// labels disagree between aggregation strategies, which leaves many near-ties, and a
    /// test comparing labels only on a handful would test nothing.
    min_clear_share: f32,
}

const fn exact(max_abs: f32, min_clear_share: f32) -> Bounds {
    Bounds { max_abs, clear_margin: 2.0 * max_abs, min_agreement: 1.0, min_clear_share }
}

/// Token logits of the fixtures reach |9.4| (RoBERTa) and |14.4| (BERT), with a median
/// spread of about 9 between a token's best and worst label; probabilities are in [0, 1].
fn bounds(quant: Quantization, mode: QuantizedMatmul, token_head: bool) -> Bounds {
    match (quant, token_head) {
        // The weights are the checkpoint's f32 values bit for bit, through the same kernels.
        (Quantization::F32, _) => exact(MAX_ABS_ERR_ROUNDTRIP, 0.9),
        // f16 keeps 11 significant bits: each weight moves by ≤ 2^-11 ≈ 4.9e-4 of itself, in
        // random directions; activations stay f32 (the CPU widens f16 weights), so nothing
        // else rounds. Over two layers that is a few 1e-3 of the logits' scale (~10): 3e-2
        // (measured 1.4e-2). Softmax has slope ≤ 1/2, and the classifier's logits are smaller.
        (Quantization::F16, true) => exact(3e-2, 0.9),
        (Quantization::F16, false) => exact(5e-3, 0.0),
        // q8_0 rounds each weight to 1/127 of its 32-block's largest, and the integer modes
        // also round activations to 8 bits per block: token_fixtures.rs's 0.5 (measured
        // 0.40 integer, 0.26 dequantized). The relaxed-SIMD build rounds activations to
        // 7 bits, twice the step: 0.75 (measured 0.62 on BERT). Every token clear at the
        // integer mode's threshold (margin > 1) keeps its label: at least 60% of tokens
        // (measured 70%).
        (Quantization::Q8_0, true) if mode == QuantizedMatmul::Relaxed => {
            Bounds { max_abs: 0.75, clear_margin: 1.0, min_agreement: 1.0, min_clear_share: 0.6 }
        }
        (Quantization::Q8_0, true) => exact(0.5, 0.6),
        // The classifier's 3 probabilities (softmax slope ≤ 1/2 on logits that move less than
        // the token head's): 0.1 (measured 0.026 integer, 0.044 relaxed).
        (Quantization::Q8_0, false) => exact(0.1, 0.0),
        // q4_0 has 16 levels per block, a step 16× q8_0's, and the fixture's rows are one
        // block wide (hidden 32), so nothing averages out: logits move by up to ~2.3
        // (measured). Twice that would leave almost no clear token, so labels are held where
        // the f32 margin is over 1 (the q8_0 test's threshold, two thirds of the tokens) to
        // a 95% agreement rate (measured: all on RoBERTa, 225 of 229 on BERT).
        (Quantization::Q4_0, true) => {
            Bounds { max_abs: 3.0, clear_margin: 1.0, min_agreement: 0.95, min_clear_share: 0.6 }
        }
        // Probabilities: 0.15 (measured 0.060), labels where the f32 margin is over 0.2.
        (Quantization::Q4_0, false) => {
            Bounds { max_abs: 0.15, clear_margin: 0.2, min_agreement: 1.0, min_clear_share: 0.0 }
        }
    }
}

fn texts(dir: &str) -> Vec<String> {
    let expected = read_json(&fixture(dir).join("expected.json"));
    expected["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
}

/// The f32 checkpoint as a model, and the bundle of it in `quant` (tensors as `export` writes them).
fn export(dir: &str, quant: Quantization) -> (Model, Vec<u8>) {
    let ckpt = Checkpoint::from_dir(&fixture(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
    let manifest = ckpt.default_manifest(quant).unwrap();
    // Loading records which tensors the model reads: the bundle holds those.
    let source = Model::from_parts(manifest.clone(), &ckpt.tokenizer_json, &ckpt.weights).unwrap();
    let bytes = bundle::write(&manifest, &ckpt.tokenizer_json, &ckpt.weights, &ckpt.weights.used_names()).unwrap();
    (source, bytes)
}

/// What a model makes of each text: the sequence head's probabilities (one row) or the
/// token head's logits (one row per token, specials included).
fn outputs(model: &Model, texts: &[String]) -> Vec<Vec<Vec<f32>>> {
    texts
        .iter()
        .map(|text| match model.manifest().task {
            Task::TokenClassification => block_on(model.token_logits_async(text)).unwrap(),
            _ => {
                let p = block_on(model.classify_async(text)).unwrap();
                vec![p.probabilities.0.iter().map(|(_, v)| *v).collect()]
            }
        })
        .collect()
}

fn argmax(r: &[f32]) -> usize {
    r.iter().enumerate().fold(0, |b, (i, &v)| if v > r[b] { i } else { b })
}

fn margin(r: &[f32]) -> f32 {
    let mut sorted = r.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted[0] - sorted[1]
}

/// `got` within `b.max_abs` of `want` everywhere, and the reference's label on enough of
/// the rows where its margin is clear.
fn within(got: &[Vec<Vec<f32>>], want: &[Vec<Vec<f32>>], b: Bounds, what: &str) {
    let (mut clear, mut agree, mut total) = (0, 0, 0);
    let mut worst = 0f32;
    assert_eq!(got.len(), want.len(), "{what}: texts");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: text {i}: rows");
        for (t, (g, w)) in g.iter().zip(w).enumerate() {
            let err = max_abs_diff(g, w);
            worst = worst.max(err);
            assert!(err <= b.max_abs, "{what}: text {i} row {t}: max |Δ| {err} > {}", b.max_abs);
            total += 1;
            if margin(w) > b.clear_margin {
                clear += 1;
                agree += usize::from(argmax(g) == argmax(w));
            }
        }
    }
    eprintln!(
        "{what}: max |Δ| {worst:.2e} (bound {}), labels agree on {agree} of {clear} clear rows (of {total})",
        b.max_abs
    );
    assert!(
        clear as f32 >= b.min_clear_share * total as f32,
        "{what}: only {clear} of {total} rows have a clear label"
    );
    assert!(
        agree as f32 >= b.min_agreement * clear as f32,
        "{what}: labels agree on only {agree} of {clear} clear rows"
    );
}

#[test]
fn fixtures_are_the_architectures_and_heads_they_claim() {
    for (dir, arch, task, offset) in [
        ("tiny-roberta-classifier", Architecture::Roberta, Task::Classification, 2),
        ("tiny-roberta-ner", Architecture::Roberta, Task::TokenClassification, 2),
        ("tiny-bert-ner", Architecture::Bert, Task::TokenClassification, 0),
    ] {
        let (model, _) = export(dir, Quantization::F32);
        let config = &model.manifest().config;
        assert_eq!(config.architecture(), arch, "{dir}");
        assert_eq!(config.position_offset(), offset, "{dir}");
        assert_eq!(model.manifest().task, task, "{dir}");
        // The windows used below must reach far past the first few positions.
        assert!(model.manifest().max_seq_len >= 32, "{dir}: max_seq_len {}", model.manifest().max_seq_len);
        let longest = texts(dir).iter().map(|t| model.token_ids(t).unwrap().len()).max().unwrap();
        assert!(longest >= 30, "{dir}: the longest fixture text is {longest} tokens");
    }
}

/// Every quantization, every quantized-matmul mode, CPU: within the quantization's bound of
/// the f32 checkpoint (which token_fixtures.rs holds to transformers within 1e-4).
#[test]
fn bundles_in_every_quantization_and_matmul_mode_stay_within_bounds() {
    for dir in MODELS {
        let texts = texts(dir);
        let (source, _) = export(dir, Quantization::F32);
        let want = outputs(&source, &texts);
        for quant in QUANTS {
            let (_, bytes) = export(dir, quant);
            let mut previous: Option<Vec<Vec<Vec<f32>>>> = None;
            for mode in MODES {
                let model = block_on(Model::load_with(&bytes, Backend::Cpu, mode)).unwrap();
                assert_eq!(model.manifest().quantization, quant, "{dir}");
                assert_eq!(model.backend(), "cpu");
                let what = format!("{dir} {} {mode:?}", quant.as_str());
                let got = outputs(&model, &texts);
                let token_head = source.manifest().task == Task::TokenClassification;
                within(&got, &want, bounds(quant, mode, token_head), &what);
                // The mode only changes how q8_0/q4_0 weights are multiplied.
                if matches!(quant, Quantization::F32 | Quantization::F16) {
                    if let Some(p) = &previous {
                        assert_eq!(&got, p, "{what}: the matmul mode changed an f32/f16 bundle's outputs");
                    }
                }
                previous = Some(got);
                // Entities stay inside the text whatever the quantization.
                if source.manifest().task == Task::TokenClassification {
                    for text in &texts {
                        let entities = block_on(model.tag_async(text, Some(EntityAggregation::Simple))).unwrap();
                        assert!(
                            entities.iter().all(|e| e.start <= e.end && e.end <= text.len()),
                            "{what}: {entities:?}"
                        );
                    }
                }
            }
        }
    }
}

/// The f32 bundle is the checkpoint: entities of every aggregation strategy, and the sequence
/// head's whole prediction, are the same.
#[test]
fn f32_bundles_tag_and_classify_as_the_checkpoint() {
    for dir in MODELS {
        let texts = texts(dir);
        let (source, bytes) = export(dir, Quantization::F32);
        let model = Model::load(&bytes).unwrap();
        for text in &texts {
            if source.manifest().task == Task::TokenClassification {
                for strategy in EntityAggregation::ALL {
                    let want = block_on(source.tag_async(text, Some(strategy))).unwrap();
                    let got = block_on(model.tag_async(text, Some(strategy))).unwrap();
                    same_entities(&got, &want, MAX_ABS_ERR_ROUNDTRIP, &format!("{dir} {}", strategy.as_str()));
                }
            } else {
                let (want, got) = (source.classify(text).unwrap(), model.classify(text).unwrap());
                assert_eq!(got.label, want.label, "{dir}");
                assert!((got.score - want.score).abs() <= MAX_ABS_ERR_ROUNDTRIP, "{dir}");
            }
        }
    }
}

fn same_entities(got: &[Entity], want: &[Entity], bound: f32, what: &str) {
    let spans = |e: &[Entity]| e.iter().map(|e| (e.label.clone(), e.start, e.end)).collect::<Vec<_>>();
    assert_eq!(spans(got), spans(want), "{what}: entities");
    for (g, w) in got.iter().zip(want) {
        assert!((g.score - w.score).abs() <= bound, "{what}: score {} vs {}", g.score, w.score);
    }
}

// ---------------------------------------------------------------------------------------
// WebGPU

/// The bar for the GPU against the CPU reference.
const MAX_GPU_DIFF: f32 = 1e-3;

/// A WebGPU device, or None (skipped) where the machine has no adapter; BEDSIDE_REQUIRE_WEBGPU
/// makes a missing one a failure (as in webgpu.rs).
fn context() -> Option<GpuContext> {
    match block_on(GpuContext::new()) {
        Ok(ctx) => {
            eprintln!("adapter: {:?}", ctx.adapter);
            Some(ctx)
        }
        Err(e) if std::env::var_os("BEDSIDE_REQUIRE_WEBGPU").is_some() => panic!("no WebGPU adapter: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: {e} (apt-get install mesa-vulkan-drivers gives lavapipe)");
            None
        }
    }
}

/// The CPU reference (quantized weights dequantized to f32, what the shaders compute) and
/// the same bundle on WebGPU.
fn cpu_and_gpu(bytes: &[u8]) -> (Model, Model) {
    let cpu = block_on(Model::load_with(bytes, Backend::Cpu, QuantizedMatmul::Dequantized)).unwrap();
    let gpu = block_on(Model::load_on(bytes, Backend::WebGpu)).unwrap();
    assert_eq!(gpu.backend(), "webgpu");
    (cpu, gpu)
}

/// A note several windows long (the last one shorter, so a batch of windows pads), made of
/// the fixture texts.
fn long_note(dir: &str) -> String {
    texts(dir).join(" ").repeat(3)
}

#[test]
fn webgpu_matches_the_cpu_reference_on_fixture_texts_in_every_format() {
    let Some(_) = context() else { return };
    for dir in MODELS {
        let texts = texts(dir);
        for quant in QUANTS {
            let (_, bytes) = export(dir, quant);
            let (cpu, gpu) = cpu_and_gpu(&bytes);
            let what = format!("{dir} {} webgpu", quant.as_str());
            let want = outputs(&cpu, &texts);
            let got = outputs(&gpu, &texts);
            within(&got, &want, exact(MAX_GPU_DIFF, 0.9), &what);
            if cpu.manifest().task == Task::TokenClassification {
                for (i, text) in texts.iter().enumerate() {
                    let strategy = Some(EntityAggregation::Simple);
                    let want = block_on(cpu.tag_async(text, strategy)).unwrap();
                    let got = block_on(gpu.tag_async(text, strategy)).unwrap();
                    same_entities(&got, &want, MAX_GPU_DIFF, &format!("{what}: text {i}"));
                }
            } else {
                for text in &texts {
                    assert_eq!(gpu.classify(text).unwrap().label, cpu.classify(text).unwrap().label, "{what}");
                }
            }
            // Still on the GPU: nothing above fell back to the CPU.
            assert_eq!(gpu.backend(), "webgpu", "{what}: {:?}", gpu.backend_detail());
        }
    }
}

/// Notes several windows long: batches of windows where the last is shorter (padded on the
/// GPU), every position of the table used (RoBERTa's from row padding_idx + 1).
#[test]
fn webgpu_matches_the_cpu_reference_on_windowed_long_notes() {
    let Some(_) = context() else { return };
    for dir in MODELS {
        let note = long_note(dir);
        for quant in [Quantization::F32, Quantization::Q8_0, Quantization::Q4_0] {
            let (_, bytes) = export(dir, quant);
            let (cpu, gpu) = cpu_and_gpu(&bytes);
            let what = format!("{dir} {} webgpu long note", quant.as_str());
            if cpu.manifest().task == Task::TokenClassification {
                for strategy in [EntityAggregation::Simple, EntityAggregation::None] {
                    let want = block_on(cpu.tag_async(&note, Some(strategy))).unwrap();
                    let got = block_on(gpu.tag_async(&note, Some(strategy))).unwrap();
                    assert!(want.len() >= 10, "{what}: only {} entities", want.len());
                    // Entities from the later windows too (the note is > 10 windows long).
                    assert!(want.last().unwrap().start > note.len() * 3 / 4, "{what}: no entity in the last quarter");
                    same_entities(&got, &want, MAX_GPU_DIFF, &format!("{what} {}", strategy.as_str()));
                }
            } else {
                let want = cpu.classify(&note).unwrap();
                let got = gpu.classify(&note).unwrap();
                assert!(want.chunks.len() > 2, "{what}: the note should need several windows");
                assert_eq!(got.chunks.len(), want.chunks.len(), "{what}");
                assert_eq!(got.label, want.label, "{what}");
                for (a, b) in want.chunks.iter().zip(&got.chunks) {
                    assert_eq!((a.start, a.end, a.num_tokens), (b.start, b.end, b.num_tokens), "{what}");
                    let p: Vec<f32> = a.probabilities.0.iter().map(|(_, p)| *p).collect();
                    let q: Vec<f32> = b.probabilities.0.iter().map(|(_, p)| *p).collect();
                    let d = max_abs_diff(&p, &q);
                    assert!(d <= MAX_GPU_DIFF, "{what}: window {}: max |Δp| {d}", a.index);
                }
            }
            assert_eq!(gpu.backend(), "webgpu", "{what}: {:?}", gpu.backend_detail());
        }
    }
}

/// The encoder and both heads kernel by kernel on batches of mixed lengths up to the full
/// position table: hidden states (every position, so a wrong position row shows), the
/// sequence head's logits, and the token head over the GPU's padded hidden states.
#[test]
fn webgpu_hidden_states_and_heads_match_on_full_windows_and_mixed_batches() {
    let Some(ctx) = context() else { return };
    for dir in MODELS {
        for quant in [Quantization::F32, Quantization::Q8_0, Quantization::Q4_0] {
            let (_, bytes) = export(dir, quant);
            let mut read = bundle::read(&bytes).unwrap();
            read.weights.set_quantized_matmul(QuantizedMatmul::Dequantized);
            let (config, w, m) = (read.manifest.config.clone(), &read.weights, &read.manifest);
            let pad = if config.architecture() == Architecture::Roberta { config.pad_token_id as u32 } else { 0 };
            let max = config.max_positions();
            let v = config.vocab_size as u32;
            // Ids away from the specials and the pad id: RoBERTa's embeddings would not care,
            // but transformers' position ids would, and these stand for real text.
            let ids = |seed: u32, len: usize| -> Vec<u32> {
                (0..len as u32)
                    .map(|i| 5 + (i.wrapping_mul(2654435761).wrapping_add(seed * 97) >> 7) % (v - 5))
                    .collect()
            };
            let head = (m.task != Task::TokenClassification).then_some((m.head_outputs, m.head_features));
            let gpu = block_on(GpuBert::load(ctx.clone(), w, &config, head)).unwrap();
            let cpu = Bert::load(w, &config).unwrap();
            for (name, batch) in [
                ("full window", vec![ids(1, max)]),
                ("mixed lengths", vec![ids(2, 7), ids(3, max), ids(4, 40), ids(5, 1)]),
            ] {
                let what = format!("{dir} {} {name}", quant.as_str());
                let refs: Vec<&[u32]> = batch.iter().map(Vec::as_slice).collect();
                let encoded = encode(&cpu, &refs, pad).unwrap();
                let want: Vec<f32> = encoded.hidden.flatten_all().unwrap().to_vec1().unwrap();
                let got = block_on(gpu.run(&refs, pad, GpuOutput::Hidden)).unwrap();
                // Compare real tokens only (padded rows are masked out everywhere downstream).
                let (seq, h) = (max, config.hidden_size);
                let mut worst = 0f32;
                for (b, ids) in batch.iter().enumerate() {
                    for t in 0..ids.len() {
                        let at = (b * seq + t) * h;
                        let d = max_abs_diff(&got[at..at + h], &want[at..at + h]);
                        assert!(d <= MAX_GPU_DIFF, "{what}: sequence {b} position {t}: hidden |Δ| {d}");
                        worst = worst.max(d);
                    }
                }
                match head {
                    Some((n, features)) => {
                        let head = SequenceHead::load(w, &config, n, features).unwrap();
                        let want: Vec<f32> = head
                            .forward(&encoded.hidden, &encoded.mask)
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .to_vec1()
                            .unwrap();
                        let got = block_on(gpu.run(&refs, pad, GpuOutput::Logits)).unwrap();
                        let d = max_abs_diff(&want, &got);
                        assert!(d <= MAX_GPU_DIFF, "{what}: sequence logits |Δ| {d}");
                    }
                    None => {
                        let head = TokenHead::load(w, &config, m.head_outputs).unwrap();
                        let want = head.forward(&encoded.hidden).unwrap().to_vec3::<f32>().unwrap();
                        let hidden = candle_core::Tensor::from_vec(
                            got.clone(),
                            (batch.len(), seq, h),
                            &candle_core::Device::Cpu,
                        )
                        .unwrap();
                        let got = head.forward(&hidden).unwrap().to_vec3::<f32>().unwrap();
                        for (b, ids) in batch.iter().enumerate() {
                            for t in 0..ids.len() {
                                let d = max_abs_diff(&got[b][t], &want[b][t]);
                                assert!(d <= MAX_GPU_DIFF, "{what}: sequence {b} token {t}: logit |Δ| {d}");
                            }
                        }
                    }
                }
                eprintln!("{what}: hidden max |Δ| {worst:.2e}");
            }
        }
    }
}
