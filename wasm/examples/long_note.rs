//! Classifies a 20,000-word note (or as many words as the second argument says) with all-MiniLM-L6-v2 plus a random binary head (q8_0
//! bundle, 256-token windows) and prints windows, time and peak memory.
//!
//!     cargo run --release -p bedside-runtime --example long_note -- "$(bash models/minilm.sh)"

use bedside_runtime::bundle::{self, Quantization, Task};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::model::{Weight, Weights};
use bedside_runtime::pipeline::aggregate::Aggregation;
use bedside_runtime::Model;
use candle_core::{Device, Tensor};

/// A memory line of /proc/self/status (Linux), in MB: VmRSS now, VmHWM peak.
fn rss_mb(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: long_note <MiniLM checkpoint dir> [words]")?;
    let target_words: usize = std::env::args().nth(2).and_then(|w| w.parse().ok()).unwrap_or(20_000);
    let ckpt = Checkpoint::from_dir(std::path::Path::new(&dir))?;
    let mut weights = Weights::new("example");
    for (name, w) in ckpt.weights.iter() {
        weights.insert(name.clone(), Weight::Dense(w.to_f32()?));
    }
    let h = ckpt.config.hidden_size;
    weights.insert("classifier.weight".into(), Weight::Dense(Tensor::randn(0f32, 0.05, (1, h), &Device::Cpu)?));
    weights.insert("classifier.bias".into(), Weight::Dense(Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu)?));
    let mut manifest = ckpt.default_manifest(Quantization::Q8_0)?;
    manifest.task = Task::Binary;
    manifest.labels = vec!["no".into(), "yes".into()];
    manifest.head_outputs = 1;
    manifest.aggregation = Aggregation::Clinicalbert { c: 2.0 };
    Model::from_parts(manifest.clone(), &ckpt.tokenizer_json, &weights)?;
    let bytes = bundle::write(&manifest, &ckpt.tokenizer_json, &weights, &weights.used_names())?;
    drop(weights);
    drop(ckpt);
    let model = Model::load(&bytes)?;
    drop(bytes);
    let resident = rss_mb("VmRSS:");
    // Reset the peak, so it measures classification alone (not the export above).
    let _ = std::fs::write("/proc/self/clear_refs", "5");

    let sentences = [
        "Patient presents with chest pain radiating to the left arm.",
        "Metformin 500 mg PO b.i.d.; paracetamol 1 g q.i.d. PRN for pain.",
        "Chest X-ray shows bilateral lower-lobe infiltrates consistent with pneumonia.",
        "Denies fever, chills, nausea, vomiting or diarrhoea.",
    ];
    let mut note = String::new();
    let mut words = 0;
    for i in 0.. {
        if words >= target_words {
            break;
        }
        let s = sentences[i % sentences.len()];
        note.push_str(s);
        note.push(' ');
        words += s.split_whitespace().count();
    }
    let start = std::time::Instant::now();
    let p = model.classify(&note)?;
    let elapsed = start.elapsed();
    println!(
        "{words} words, {} bytes → {} windows of ≤{} tokens (stride {}); P(yes) = {:.4}; {:.1} s; \
         resident {:.0} MB after load, peak {:.0} MB while classifying",
        note.len(),
        p.chunks.len(),
        model.manifest().max_seq_len,
        model.manifest().stride,
        p.probabilities.get("yes").unwrap_or(f32::NAN),
        elapsed.as_secs_f64(),
        resident,
        rss_mb("VmHWM:")
    );
    Ok(())
}
