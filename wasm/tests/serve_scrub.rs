//! A model trained on scrubbed text (`train --scrub`) is served scrubbed text: the manifest's
//! `scrub` makes classify / embed / tag / deid scrub each note first, and every offset they
//! return points into the original note.

mod common;

use bedside_runtime::bundle::{self, Manifest, Quantization, Task};
use bedside_runtime::checkpoint::{Checkpoint, ServingSettings};
use bedside_runtime::pipeline::entities::EntityAggregation;
use bedside_runtime::pipeline::scrub::{PhiKind, ScrubOptions, ScrubSettings, Scrubbed, Scrubber};
use bedside_runtime::{Error, Model};
use common::*;

/// Two dates (one with a month name), a phone number, a multi-byte character, and clinical
/// numbers the scrubber leaves alone; long enough for several 16-token windows.
const NOTE: &str = "patient seen on 03/14/2024 for chest pain at the café, follow up on March 3, 2024. \
                    call 555-123-4567 about the bp 150/90 result; metformin 500 mg twice daily. \
                    no fever or cough, shortness of breath resolved.";

fn scrubbing() -> ScrubSettings {
    ScrubSettings::new(&ScrubOptions::all(), false)
}

/// The tiny classifier with short windows (several chunks per note), scrubbing `scrub`.
fn classifier(scrub: Option<ScrubSettings>) -> (Checkpoint, Manifest) {
    let ckpt = Checkpoint::from_dir(&fixture("tiny-classifier")).unwrap();
    let manifest = Manifest { max_seq_len: 16, stride: 4, scrub, ..ckpt.default_manifest(Quantization::F32).unwrap() };
    (ckpt, manifest)
}

fn model(ckpt: &Checkpoint, manifest: &Manifest) -> Model {
    Model::from_parts(manifest.clone(), &ckpt.tokenizer_json, &ckpt.weights).unwrap()
}

fn pre_scrubbed(note: &str) -> Scrubbed {
    Scrubber::new(ScrubOptions::all()).scrub(note)
}

fn assert_in_note(note: &str, start: usize, end: usize, what: &str) {
    assert!(start <= end && end <= note.len(), "{what}: {start}..{end} outside the note ({})", note.len());
    assert!(note.is_char_boundary(start) && note.is_char_boundary(end), "{what}: {start}..{end} off a char boundary");
}

#[test]
fn classify_scrubs_like_training_and_maps_chunks_to_the_note() {
    let pre = pre_scrubbed(NOTE);
    assert_eq!(pre.count(PhiKind::Date), 2, "the note's dates");
    assert_eq!(pre.count(PhiKind::Phone), 1, "the note's phone number");
    let (ckpt, on) = classifier(Some(scrubbing()));
    let (_, off) = classifier(None);
    let served = model(&ckpt, &on).classify(NOTE).unwrap();
    let trained = model(&ckpt, &off).classify(&pre.text).unwrap();

    // Exactly what the model gives the pre-scrubbed text.
    assert_eq!(served.label, trained.label);
    assert_eq!(served.score, trained.score);
    assert_eq!(served.probabilities, trained.probabilities);
    assert_eq!(served.labels, trained.labels);
    assert!(served.chunks.len() >= 3, "expected several windows, got {}", served.chunks.len());
    assert_eq!(served.chunks.len(), trained.chunks.len());
    for (s, t) in served.chunks.iter().zip(&trained.chunks) {
        assert_eq!((s.index, s.num_tokens, s.score), (t.index, t.num_tokens, t.score));
        assert_eq!(s.probabilities, t.probabilities);
        // Offsets into the note, not into the scrubbed text.
        assert_in_note(NOTE, s.start, s.end, "chunk");
        assert_eq!((s.start, s.end), pre.to_original_span(t.start, t.end), "chunk {}", s.index);
    }
    assert_eq!(served.chunks.first().unwrap().start, 0);
    assert_eq!(served.chunks.last().unwrap().end, NOTE.len(), "the last chunk ends where the note ends");
    // Every replaced date lies whole inside a chunk that read its placeholder.
    for r in pre.replacements.iter().filter(|r| r.kind == PhiKind::Date) {
        assert!(
            served.chunks.iter().any(|c| c.start <= r.original_start && r.original_end <= c.end),
            "no chunk covers the date at {}..{}",
            r.original_start,
            r.original_end
        );
        assert!(NOTE[r.original_start..r.original_end].contains("2024"));
    }
}

#[test]
fn token_ids_and_embed_read_the_scrubbed_note() {
    let pre = pre_scrubbed(NOTE);
    let (ckpt, on) = classifier(Some(scrubbing()));
    let (_, off) = classifier(None);
    let (on, off) = (model(&ckpt, &on), model(&ckpt, &off));
    assert_eq!(on.token_ids(NOTE).unwrap(), off.token_ids(&pre.text).unwrap());
    assert_ne!(on.token_ids(NOTE).unwrap(), off.token_ids(NOTE).unwrap(), "scrubbing changed nothing");
    let texts = [NOTE, "seen 2024-03-01, no fever"];
    let want = off.embed(&[pre.text.as_str(), pre_scrubbed(texts[1]).text.as_str()]).unwrap();
    assert_eq!(on.embed(&texts).unwrap(), want);
}

#[test]
fn a_note_with_nothing_to_read_is_empty_text() {
    let (ckpt, on) = classifier(Some(scrubbing()));
    let on = model(&ckpt, &on);
    assert!(matches!(on.classify(" \n\t ").unwrap_err(), Error::EmptyText { index: 0 }));
    assert!(matches!(on.embed(&["ok", "  "]).unwrap_err(), Error::EmptyText { index: 1 }));
}

#[test]
fn tag_and_deid_map_entities_back_to_the_note() {
    let ckpt = Checkpoint::from_dir(&fixture("tiny-bert-ner")).unwrap();
    let base = ckpt.default_manifest(Quantization::F32).unwrap();
    assert_eq!(base.task, Task::TokenClassification);
    let on = model(&ckpt, &Manifest { scrub: Some(scrubbing()), ..base.clone() });
    let off = model(&ckpt, &base);
    let pre = pre_scrubbed(NOTE);
    for strategy in EntityAggregation::ALL {
        let served = bedside_runtime::runtime::block_on(on.tag_async(NOTE, Some(strategy))).unwrap();
        let trained = bedside_runtime::runtime::block_on(off.tag_async(&pre.text, Some(strategy))).unwrap();
        assert!(!trained.is_empty(), "{strategy:?}: the tiny model found nothing to compare");
        for e in &served {
            assert_in_note(NOTE, e.start, e.end, "entity");
            assert!(
                trained.iter().any(|t| t.label == e.label
                    && t.score <= e.score
                    && pre.to_original_span(t.start, t.end) == (e.start, e.end)),
                "{strategy:?}: entity {}..{} {} is no entity of the scrubbed text",
                e.start,
                e.end,
                e.label
            );
        }
        // Each entity of the scrubbed text, mapped to the note, is served (merged with the
        // other pieces of its placeholder, at their highest score).
        for t in &trained {
            let (start, end) = pre.to_original_span(t.start, t.end);
            assert!(
                served.iter().any(|e| e.label == t.label && (e.start, e.end) == (start, end) && e.score >= t.score),
                "{strategy:?}: entity {}..{} {} of the scrubbed text is not served",
                t.start,
                t.end,
                t.label
            );
        }
    }
    let redacted = on.deid(NOTE, None).unwrap();
    for r in &redacted.redactions {
        assert_in_note(NOTE, r.start, r.end, "redaction");
    }
}

#[test]
fn a_bundle_keeps_the_scrub_settings() {
    let (ckpt, on) = classifier(Some(ScrubSettings::new(&ScrubOptions::all().without(PhiKind::Url), true)));
    // Loading marks the tensors the model reads: those are what the bundle carries.
    let want = model(&ckpt, &on).classify(NOTE).unwrap();
    let bytes = bundle::write(&on, &ckpt.tokenizer_json, &ckpt.weights, &ckpt.weights.used_names()).unwrap();
    let loaded = Model::load(&bytes).unwrap();
    assert_eq!(loaded.manifest().scrub, on.scrub);
    assert!(loaded.manifest().scrub.as_ref().unwrap().names_list);
    assert_eq!(loaded.classify(NOTE).unwrap(), want);
}

#[test]
fn the_field_is_kinds_and_a_flag_and_older_manifests_do_not_scrub() {
    let (_, on) = classifier(Some(ScrubSettings::new(&ScrubOptions::only([PhiKind::Date, PhiKind::Mrn]), true)));
    let json = serde_json::to_value(&on).unwrap();
    assert_eq!(json["scrub"], serde_json::json!({"kinds": ["date", "mrn"], "names_list": true}));
    // A manifest written before the field existed (or by a run without scrubbing).
    let (_, off) = classifier(None);
    let json = serde_json::to_value(&off).unwrap();
    assert!(json.get("scrub").is_none(), "no scrubbing writes no field");
    let older: Manifest = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(older.scrub, None);
    let mut null = json;
    null["scrub"] = serde_json::Value::Null;
    assert_eq!(serde_json::from_value::<Manifest>(null).unwrap().scrub, None);
    // `kinds` absent means every kind, like ScrubOptions.
    let settings: ScrubSettings = serde_json::from_str("{}").unwrap();
    assert_eq!((settings.options(), settings.names_list), (ScrubOptions::all(), false));
}

#[test]
fn checkpoint_serving_settings_carry_scrub_into_the_manifest() {
    let dir = std::env::temp_dir().join(format!("bedside-serve-scrub-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture("tiny-classifier")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let mut config = read_json(&dir.join("config.json"));
    let serving = serde_json::json!({
        "task": "classification", "labels": ["cardiology", "endocrinology", "respiratory"],
        "max_seq_len": 32, "stride": 4, "aggregation": {"method": "mean"},
        "decision_threshold": 0.5, "min_confidence": 0.0,
    });
    // Settings from before the field: no scrubbing.
    config["bedside"] = serving.clone();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let ckpt = Checkpoint::from_dir(&dir).unwrap();
    assert_eq!(ckpt.serving.as_ref().unwrap().scrub, None);
    assert_eq!(ckpt.default_manifest(Quantization::F32).unwrap().scrub, None);

    config["bedside"]["scrub"] = serde_json::json!({"kinds": ["date", "phone"], "names_list": false});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let ckpt = Checkpoint::from_dir(&dir).unwrap();
    let want = Some(ScrubSettings::new(&ScrubOptions::only([PhiKind::Date, PhiKind::Phone]), false));
    let serving: &ServingSettings = ckpt.serving.as_ref().unwrap();
    assert_eq!(serving.scrub, want);
    assert_eq!(ckpt.default_manifest(Quantization::F32).unwrap().scrub, want);
    let from_dir = Model::from_checkpoint_dir(&dir).unwrap();
    assert_eq!(from_dir.manifest().scrub, want);
    std::fs::remove_dir_all(&dir).unwrap();
}
