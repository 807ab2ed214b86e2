//! `train classify --scrub` records how it scrubbed (kinds, and whether a names list was
//! used: never the names) in best/config.json's serving settings; `export` carries it into
//! the bundle's manifest, and the runtime then scrubs served notes the same way.

use std::path::Path;
use std::process::Command;

use bedside::train::config::TrainConfig;
use bedside::train::run::scrub_settings;
use bedside_runtime::bundle::{Manifest, Quantization};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::pipeline::scrub::{ScrubOptions, ScrubSettings, Scrubber};
use bedside_runtime::Model;

mod common;
use common::{fixture, temp_dir, write};

const NAME: &str = "Quimby";

fn notes() -> String {
    let rows = [
        ("chest pain and cardiac murmur on 03/14/2024", "cardiac"),
        ("cough and fever, call 617-555-0123", "respiratory"),
        ("heart murmur with chest pain, seen by Dr Quimby", "cardiac"),
        ("asthma with shortness of breath since March 3, 2024", "respiratory"),
    ];
    let mut csv = String::from("text,label\n");
    for _ in 0..2 {
        for (text, label) in rows {
            csv.push_str(&format!("\"{text}\",{label}\n"));
        }
    }
    csv
}

fn bedside(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_bedside")).args(args).output().unwrap();
    assert!(out.status.success(), "bedside {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn train_classify_with_scrub_records_it_and_export_carries_it() {
    let dir = temp_dir("serve-scrub");
    let train = write(&dir, "train.csv", &notes());
    let val = write(&dir, "val.csv", &notes());
    let names = write(&dir, "names.txt", &format!("{NAME}\n"));
    let out = dir.join("run");
    let base = fixture();
    #[rustfmt::skip]
    bedside(&[
        "train", "classify", "--base", path(&base), "--train", path(&train), "--val", path(&val),
        "--out", path(&out), "--epochs", "1", "--batch-size", "4", "--max-seq-len", "16",
        "--seed", "3", "--scrub-names", path(&names), "--no-baseline-probe",
    ]);

    let want = Some(ScrubSettings::new(&ScrubOptions::all(), true));
    let config_text = std::fs::read_to_string(out.join("best/config.json")).unwrap();
    assert!(!config_text.contains(NAME), "best/config.json holds a name from the list");
    let config: serde_json::Value = serde_json::from_str(&config_text).unwrap();
    let recorded: Option<ScrubSettings> = serde_json::from_value(config["bedside"]["scrub"].clone()).unwrap();
    assert_eq!(recorded, want, "best/config.json bedside.scrub");
    assert_eq!(config["bedside"]["scrub"]["names_list"], true);

    let bundle = dir.join("model.gguf");
    bedside(&["export", "--model", path(&out), "--quant", "f32", "--out", path(&bundle)]);
    let bytes = std::fs::read(&bundle).unwrap();
    assert!(!bytes.windows(NAME.len()).any(|w| w == NAME.as_bytes()), "the bundle holds a name from the list");
    let served = Model::load(&bytes).unwrap();
    assert_eq!(served.manifest().scrub, want, "the bundle's manifest scrub");

    // The bundle scrubs what it serves: a note reads as its pre-scrubbed text does to the
    // same weights with scrubbing off; chunk offsets point into the note.
    let note = "chest pain since 03/14/2024, call 617-555-0123";
    let ckpt = Checkpoint::from_dir(&out.join("best")).unwrap();
    let raw = Manifest { scrub: None, ..ckpt.default_manifest(Quantization::F32).unwrap() };
    let raw = Model::from_parts(raw, &ckpt.tokenizer_json, &ckpt.weights).unwrap();
    let scrubbed = Scrubber::new(ScrubOptions::all()).scrub(note);
    let got = served.classify(note).unwrap();
    let expected = raw.classify(&scrubbed.text).unwrap();
    assert_eq!(got.probabilities, expected.probabilities);
    assert_eq!((got.chunks[0].start, got.chunks.last().unwrap().end), (0, note.len()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_without_scrub_records_none() {
    assert_eq!(scrub_settings(&TrainConfig::default()), None);
    let patterns = TrainConfig { scrub: true, ..Default::default() };
    assert_eq!(scrub_settings(&patterns), Some(ScrubSettings::new(&ScrubOptions::all(), false)));
}
