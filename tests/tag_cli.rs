//! End-to-end: `bedside tag` and `bedside deid` on the token-classification fixtures
//! (tiny-bert-ner, tiny-roberta-ner): transformers' pipeline entities for every aggregation
//! strategy, a q8_0 bundle, de-identified CSVs, and the errors. Neither command may print a
//! word of a note. A module of the `cli` test binary (tests/cli.rs declares it).

use std::path::{Path, PathBuf};

use bedside_runtime::pipeline::scrub::{ScrubOptions, Scrubber};

use crate::common::{bedside, fails, fixture, ok, temp_dir};

const TOKEN_MODELS: [&str; 2] = ["tiny-bert-ner", "tiny-roberta-ner"];
const STRATEGIES: [&str; 5] = ["none", "simple", "first", "average", "max"];

fn expected(model: &str) -> serde_json::Value {
    let path = fixture(model).join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn texts(expected: &serde_json::Value) -> Vec<String> {
    expected["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
}

/// (label, byte start, byte end, score) of a list of entities, as transformers or the CLI wrote it.
fn spans(entities: &serde_json::Value, start: &str, end: &str) -> Vec<(String, usize, usize, f64)> {
    entities
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["label"].as_str().unwrap().to_string(),
                e[start].as_u64().unwrap() as usize,
                e[end].as_u64().unwrap() as usize,
                e["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn tag_json_matches_transformers_for_every_aggregation() {
    let dir = temp_dir("tag-parity");
    for name in TOKEN_MODELS {
        let want_all = expected(name);
        let notes = texts(&want_all);
        let model = fixture(name);
        for strategy in STRATEGIES {
            let mut args = vec!["tag", "--model", s(&model), "--backend", "cpu", "--json", "--aggregation", strategy];
            args.extend(notes.iter().map(String::as_str));
            let lines = json_lines(&ok(&args));
            assert_eq!(lines.len(), notes.len(), "{name} {strategy}: one line per note");
            for (i, line) in lines.iter().enumerate() {
                let keys: Vec<&String> = line.as_object().unwrap().keys().collect();
                assert_eq!(keys, ["entities"], "{name} {strategy}: no id without --input");
                let got = spans(&line["entities"], "start", "end");
                let want = spans(&want_all["entities"][strategy][i], "start_byte", "end_byte");
                let strip = |v: &[(String, usize, usize, f64)]| -> Vec<(String, usize, usize)> {
                    v.iter().map(|(l, a, b, _)| (l.clone(), *a, *b)).collect()
                };
                assert_eq!(strip(&got), strip(&want), "{name} {strategy}: text {i}");
                for (g, w) in got.iter().zip(&want) {
                    assert!((g.3 - w.3).abs() < 1e-4, "{name} {strategy}: text {i}: score {} vs {}", g.3, w.3);
                }
            }
        }
        // --input: the same entities (the bundle's aggregation, simple), each line with its id.
        let csv = dir.join(format!("{name}.csv"));
        let mut writer = csv::Writer::from_path(&csv).unwrap();
        writer.write_record(["id", "text"]).unwrap();
        for (i, text) in notes.iter().enumerate() {
            writer.write_record([format!("n{i}").as_str(), text]).unwrap();
        }
        writer.flush().unwrap();
        let lines = json_lines(&ok(&["tag", "--model", s(&model), "--backend", "cpu", "--json", "--input", s(&csv)]));
        assert_eq!(lines.len(), notes.len());
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(line["id"], format!("n{i}"));
            let got = spans(&line["entities"], "start", "end");
            let want = spans(&want_all["entities"]["simple"][i], "start_byte", "end_byte");
            assert_eq!(got.len(), want.len(), "{name} --input: text {i}");
            assert!(got.iter().zip(&want).all(|(g, w)| g.0 == w.0 && g.1 == w.1 && g.2 == w.2));
        }
    }
}

fn export(dir: &Path, name: &str, quant: &str) -> PathBuf {
    let out = dir.join(format!("{name}-{quant}.gguf"));
    ok(&["export", "--model", s(&fixture(name)), "--quant", quant, "--out", s(&out)]);
    out
}

#[test]
fn tag_runs_on_a_q8_0_bundle_and_prints_positions_not_text() {
    let dir = temp_dir("tag-q8");
    let bundle = export(&dir, "tiny-bert-ner", "q8_0");
    let manifest: serde_json::Value = serde_json::from_str(&ok(&["inspect", s(&bundle)])).unwrap();
    assert_eq!(manifest["task"], "token-classification");
    let notes = texts(&expected("tiny-bert-ner"));
    let mut args = vec!["tag", "--model", s(&bundle), "--backend", "cpu", "--json"];
    args.extend(notes.iter().map(String::as_str));
    let lines = json_lines(&ok(&args));
    assert_eq!(lines.len(), notes.len());
    let mut found = 0;
    for (line, text) in lines.iter().zip(&notes) {
        for (label, start, end, score) in spans(&line["entities"], "start", "end") {
            assert!(["NAME", "DATE", "HOSPITAL"].contains(&label.as_str()), "{label}");
            assert!(start <= end && end <= text.len() && text.is_char_boundary(start) && text.is_char_boundary(end));
            assert!((0.0..=1.0).contains(&score));
            found += 1;
        }
    }
    assert!(found >= 10, "the q8_0 bundle found only {found} entities");

    // The readable form: id, label, byte span, score; no word of the notes.
    let mut args = vec!["tag", "--model", s(&bundle), "--backend", "cpu", "--aggregation", "first"];
    args.extend(notes.iter().map(String::as_str));
    let out = bedside(&args);
    assert!(out.status.success());
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), if fields[1] == "-" { 3 } else { 4 }, "{line}");
        if fields[1] != "-" {
            assert!(fields[2].starts_with("bytes ") && fields[2].contains(".."), "{line}");
            fields[3].parse::<f64>().unwrap();
        }
    }
    for word in ["Müller", "Hospital", "Kowalski", "Smith", "admitted", "Infirmary", "García"] {
        assert!(!stdout.contains(word) && !stderr.contains(word), "printed {word:?}:\n{stdout}\n{stderr}");
    }
}

/// Notes with an id column, a quoted multi-line note, commas, and non-ASCII text.
const NOTES: [(&str, &str, &str); 4] = [
    ("p-001", "Zoë Müller was admitted to City Hospital on 12 March 2021.", "ward a"),
    (
        "p-002",
        "Dr. Smith saw John  Brown at Mercy Hospital; BP 150/90.\nFollow-up: call 555-867-5309, next visit 03/14/2021.",
        "ward b",
    ),
    ("p-003", "Anna Kowalski, DOB 22/11/1980, café owner — chest pain.", "ward, c"),
    ("p-004", "José García: cough, wheeze; follow up 15 October 2024.", ""),
];
/// Words of the notes that no output stream may hold.
const NOTE_WORDS: [&str; 8] = ["Müller", "Hospital", "Kowalski", "García", "admitted", "wheeze", "5309", "café"];

fn write_notes(dir: &Path) -> PathBuf {
    let path = dir.join("notes.csv");
    let mut writer = csv::Writer::from_path(&path).unwrap();
    writer.write_record(["id", "text", "site"]).unwrap();
    for (id, text, site) in NOTES {
        writer.write_record([id, text, site]).unwrap();
    }
    writer.flush().unwrap();
    path
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().iter().map(str::to_string).collect();
    let rows = reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
    (headers, rows)
}

/// The note with each span replaced by `[LABEL]`, computed here from the spans alone:
/// overlapping or touching spans merge, labelled by the one that starts first (longest on a tie).
fn replace_spans(text: &str, mut spans: Vec<(usize, usize, String)>) -> String {
    spans.retain(|s| s.0 < s.1);
    spans.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut merged: Vec<(usize, usize, String)> = Vec::new();
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.0 <= last.1 => last.1 = last.1.max(span.1),
            _ => merged.push(span),
        }
    }
    let (mut out, mut at) = (String::new(), 0);
    for (start, end, label) in merged {
        out.push_str(&text[at..start]);
        out.push_str(&format!("[{label}]"));
        at = end;
    }
    out + &text[at..]
}

fn assert_no_note_words(what: &str, output: &std::process::Output) {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    for word in NOTE_WORDS {
        assert!(!text.contains(word), "{what} printed {word:?}: {text}");
    }
}

#[test]
fn deid_replaces_the_spans_tag_finds_and_prints_counts_only() {
    let dir = temp_dir("deid");
    let notes = write_notes(&dir);
    for name in TOKEN_MODELS {
        let model = fixture(name);
        let tagged = bedside(&["tag", "--model", s(&model), "--backend", "cpu", "--json", "--input", s(&notes)]);
        assert!(tagged.status.success());
        assert_no_note_words("tag --json --input", &tagged);
        let tagged = json_lines(&String::from_utf8(tagged.stdout).unwrap());
        assert_eq!(tagged.len(), NOTES.len());

        let (out, audit) = (dir.join(format!("{name}-redacted.csv")), dir.join(format!("{name}-audit.json")));
        let run = bedside(&[
            "deid",
            "--model",
            s(&model),
            "--backend",
            "cpu",
            "--input",
            s(&notes),
            "--out",
            s(&out),
            "--audit",
            s(&audit),
        ]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        assert_no_note_words("deid", &run);
        let stdout = String::from_utf8(run.stdout).unwrap();
        assert!(stdout.contains("4 notes de-identified"), "{stdout}");

        let (headers, rows) = read_csv(&out);
        assert_eq!(headers, ["id", "text", "site"]);
        assert_eq!(rows.len(), NOTES.len());
        let mut total = 0;
        for ((row, (id, text, site)), line) in rows.iter().zip(NOTES).zip(&tagged) {
            assert_eq!((row[0].as_str(), row[2].as_str()), (id, site), "{name}: the other columns stay");
            assert_eq!(line["id"], id);
            let entities = spans(&line["entities"], "start", "end");
            assert!(!entities.is_empty(), "{name}: the model finds nothing in {id}");
            let want = replace_spans(text, entities.iter().map(|(l, a, b, _)| (*a, *b, l.clone())).collect());
            assert_eq!(row[1], want, "{name}: {id}");
            total += row[1].matches('[').count();
        }
        // The audit: counts per label and per note id, never text.
        let audit_text = std::fs::read_to_string(&audit).unwrap();
        for word in NOTE_WORDS {
            assert!(!audit_text.contains(word), "the audit holds {word:?}");
        }
        let audit: serde_json::Value = serde_json::from_str(&audit_text).unwrap();
        assert_eq!(audit["notes"], 4);
        assert_eq!(audit["spans"].as_u64().unwrap() as usize, total);
        let per_label: u64 = audit["counts"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(per_label as usize, total);
        let ids: Vec<&str> = audit["per_note"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["p-001", "p-002", "p-003", "p-004"]);
        assert_eq!(audit["per_note"][2]["line"], 5, "p-003 starts on line 5: p-002's note spans lines 3 and 4");
    }
}

#[test]
fn deid_rules_also_remove_what_the_phi_patterns_find() {
    let dir = temp_dir("deid-rules");
    let notes = write_notes(&dir);
    let model = fixture("tiny-bert-ner");
    let deid = |out: &Path, extra: &[&str]| -> Vec<Vec<String>> {
        let mut args = vec!["deid", "--model", s(&model), "--backend", "cpu", "--input", s(&notes), "--out", s(out)];
        args.extend_from_slice(extra);
        let run = bedside(&args);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        assert_no_note_words("deid --rules", &run);
        read_csv(out).1
    };
    let plain = deid(&dir.join("plain.csv"), &[]);
    let rules = deid(&dir.join("rules.csv"), &["--rules"]);
    assert_eq!(rules.len(), plain.len());
    let (phone, date) = ("555-867-5309", "03/14/2021");
    // The tiny model leaves parts of p-002's phone number and numeric date; the patterns take
    // them whole (each merged span is labelled by the one that starts first: these).
    assert!(plain[1][1].contains("867") && plain[1][1].contains("03/"), "{}", plain[1][1]);
    for part in ["867", "5309", "03/", "14/", "/2021"] {
        assert!(!rules[1][1].contains(part), "{part:?} left in {}", rules[1][1]);
    }
    assert!(rules[1][1].contains("[PHONE]") && rules[1][1].contains("[DATE]"), "{}", rules[1][1]);
    // Exactly the model's spans plus the scrubber's (what `train --scrub` removes), per note.
    let scrubber = Scrubber::new(ScrubOptions::all());
    let tagged = json_lines(&ok(&["tag", "--model", s(&model), "--backend", "cpu", "--json", "--input", s(&notes)]));
    for ((row, (id, text, _)), line) in rules.iter().zip(NOTES).zip(&tagged) {
        let mut want: Vec<(usize, usize, String)> =
            spans(&line["entities"], "start", "end").into_iter().map(|(l, a, b, _)| (a, b, l)).collect();
        let found = scrubber.scrub(text);
        want.extend(
            found.replacements.iter().map(|r| (r.original_start, r.original_end, r.kind.as_str().to_ascii_uppercase())),
        );
        assert_eq!(row[1], replace_spans(text, want), "{id}");
    }
    let (p, d) = (NOTES[1].1.find(phone).unwrap(), NOTES[1].1.find(date).unwrap());
    let found = scrubber.scrub(NOTES[1].1);
    assert!(found.replacements.iter().any(|r| r.original_start == p && r.original_end == p + phone.len()));
    assert!(found.replacements.iter().any(|r| r.original_start == d && r.original_end == d + date.len()));
    // --aggregation reaches deid too, and `none`'s B-/I- tags redact as their entity type.
    let none = deid(&dir.join("none.csv"), &["--aggregation", "none"]);
    assert!(none.iter().all(|row| !row[1].contains("[B-") && !row[1].contains("[I-")));
    assert!(none.iter().any(|row| row[1].contains("[NAME]")));
    let first = deid(&dir.join("first.csv"), &["--aggregation", "first"]);
    assert!(first.iter().zip(&plain).any(|(a, b)| a[1] != b[1]), "--aggregation first changed nothing");
}

#[test]
fn tag_and_deid_refuse_a_sequence_classifier_naming_the_task() {
    let dir = temp_dir("tag-wrong-task");
    let notes = write_notes(&dir);
    let classifier = fixture("tiny-classifier");
    let stderr = fails(&["tag", "--model", s(&classifier), "chest pain"]);
    assert!(stderr.contains("task is `classification`") && stderr.contains("token-classification"), "{stderr}");
    let out = dir.join("out.csv");
    let stderr = fails(&["deid", "--model", s(&classifier), "--input", s(&notes), "--out", s(&out)]);
    assert!(stderr.contains("task is `classification`") && stderr.contains("deid"), "{stderr}");
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn tag_and_deid_name_a_missing_text_column() {
    let dir = temp_dir("tag-no-column");
    let notes = write_notes(&dir);
    let model = fixture("tiny-bert-ner");
    let out = dir.join("out.csv");
    for args in [
        vec!["tag", "--model", s(&model), "--input", s(&notes), "--text-col", "note"],
        vec!["deid", "--model", s(&model), "--input", s(&notes), "--out", s(&out), "--text-col", "note"],
    ] {
        let output = bedside(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr.clone()).unwrap();
        assert!(stderr.contains("no column `note`") && stderr.contains("notes.csv"), "{stderr}");
        assert_no_note_words(args[0], &output);
    }
    assert!(!out.exists());
    let stderr = fails(&["tag", "--model", s(&model), "--aggregation", "longest", "x"]);
    assert!(stderr.contains("longest") && stderr.contains("average"), "{stderr}");
}
