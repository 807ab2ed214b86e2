//! End-to-end: `bedside search` on the tiny fixture model, over JSONL, CSV and TXT corpora,
//! f32 and int8, and the corpus errors it must name by file and line.

mod common;

use std::path::{Path, PathBuf};

use common::{fails, fixture, ok, temp_dir};

fn export(dir: &Path, quant: &str) -> PathBuf {
    let out = dir.join(format!("tiny-{quant}.gguf"));
    let model = fixture("tiny-safetensors");
    ok(&["export", "--model", model.to_str().unwrap(), "--quant", quant, "--out", out.to_str().unwrap()]);
    out
}

const NOTES: &[(&str, &str)] = &[
    ("n1", "patient denies chest pain."),
    ("n2", "no fever or cough"),
    ("n3", "metformin 500 mg twice daily"),
    ("n4", "shortness of breath on exertion"),
    ("n5", "blood pressure 150/90, started lisinopril"),
    ("n6", "follow up in two weeks"),
];

fn write_jsonl(dir: &Path) -> PathBuf {
    let path = dir.join("notes.jsonl");
    let lines: Vec<String> =
        NOTES.iter().map(|(id, text)| serde_json::json!({ "id": id, "text": text }).to_string()).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[derive(Debug, serde::Deserialize, PartialEq)]
struct Row {
    id: String,
    score: f32,
    text: String,
}

fn search(model: &Path, corpus: &Path, query: &str, extra: &[&str]) -> Vec<Row> {
    let mut args = vec![
        "search",
        "--model",
        model.to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--query",
        query,
        "--json",
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(&args)).unwrap()
}

#[test]
fn json_results_are_best_first_with_their_text() {
    let dir = temp_dir("json");
    let bundle = export(&dir, "q8_0");
    let corpus = write_jsonl(&dir);
    let rows = search(&bundle, &corpus, "metformin 500 mg twice daily", &["-k", "4"]);
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].id, "n3", "a document's own text ranks it first");
    assert!((rows[0].score - 1.0).abs() < 1e-4, "{}", rows[0].score);
    assert!(rows.windows(2).all(|w| w[0].score >= w[1].score), "best first");
    for row in &rows {
        let (_, text) = NOTES.iter().find(|(id, _)| *id == row.id).unwrap();
        assert_eq!(row.text, *text);
    }
    // k larger than the corpus returns every document once.
    assert_eq!(search(&bundle, &corpus, "cough", &["-k", "50"]).len(), NOTES.len());
    // The human-readable output lists the same ids.
    let human =
        ok(&["search", "--model", bundle.to_str().unwrap(), "--corpus", corpus.to_str().unwrap(), "--query", "cough"]);
    let all = search(&bundle, &corpus, "cough", &[]);
    let ids: Vec<&str> = human.lines().map(|l| l.split_whitespace().nth(2).unwrap()).collect();
    assert_eq!(ids, all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>());
}

#[test]
fn int8_keeps_the_ranking_of_f32() {
    let dir = temp_dir("int8");
    let corpus = write_jsonl(&dir);
    let model = fixture("tiny-safetensors");
    for (_, text) in NOTES {
        let f32_rows = search(&model, &corpus, text, &["-k", "3"]);
        let int8_rows = search(&model, &corpus, text, &["-k", "3", "--int8"]);
        assert_eq!(int8_rows[0].id, f32_rows[0].id);
        for (a, b) in f32_rows.iter().zip(&int8_rows) {
            assert!((a.score - b.score).abs() < 1e-2, "{} vs {}", a.score, b.score);
        }
    }
}

#[test]
fn csv_and_txt_corpora() {
    let dir = temp_dir("formats");
    let model = fixture("tiny-safetensors");
    let with_ids = dir.join("with_ids.csv");
    std::fs::write(&with_ids, "id,text\nx1,no fever or cough\nx2,\"metformin 500 mg, twice daily\"\n").unwrap();
    let rows = search(&model, &with_ids, "metformin 500 mg, twice daily", &[]);
    assert_eq!((rows[0].id.as_str(), rows.len()), ("x2", 2));
    assert_eq!(rows[0].text, "metformin 500 mg, twice daily");
    let no_ids = dir.join("no_ids.csv");
    std::fs::write(&no_ids, "text,source\nno fever or cough,a\nmetformin 500 mg,b\n").unwrap();
    assert_eq!(search(&model, &no_ids, "metformin 500 mg", &[])[0].id, "3", "id = line number");
    let txt = dir.join("notes.txt");
    std::fs::write(&txt, "no fever or cough\n\nmetformin 500 mg\r\nfollow up in two weeks\n").unwrap();
    let rows = search(&model, &txt, "metformin 500 mg", &[]);
    assert_eq!(rows.len(), 3, "blank lines are not documents");
    assert_eq!(rows[0].id, "3");
    assert_eq!(rows[0].text, "metformin 500 mg");
}

#[test]
fn a_query_longer_than_the_window_is_truncated() {
    let dir = temp_dir("long-query");
    let corpus = write_jsonl(&dir);
    let model = fixture("tiny-safetensors");
    // The fixture's window is 64 tokens: both queries share their first 62 text tokens.
    let long = vec!["shortness of breath on exertion"; 40].join(" ");
    let longer = format!("{long} metformin metformin metformin");
    let a = search(&model, &corpus, &long, &[]);
    let b = search(&model, &corpus, &longer, &[]);
    assert_eq!(a, b);
}

#[test]
fn corpus_errors_name_the_file_and_line() {
    let dir = temp_dir("errors");
    let model = fixture("tiny-safetensors");
    let run = |name: &str, content: &str, extra: &[&str]| -> String {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        let mut args =
            vec!["search", "--model", model.to_str().unwrap(), "--corpus", path.to_str().unwrap(), "--query", "cough"];
        args.extend_from_slice(extra);
        fails(&args)
    };
    let err = run("empty.jsonl", "\n\n", &[]);
    assert!(err.contains("empty.jsonl: empty corpus"), "{err}");
    let err = run("empty.txt", "", &[]);
    assert!(err.contains("empty.txt: empty corpus"), "{err}");
    let err = run(
        "dup.jsonl",
        "{\"id\":\"a\",\"text\":\"x\"}\n{\"id\":\"b\",\"text\":\"y\"}\n{\"id\":\"a\",\"text\":\"z\"}\n",
        &[],
    );
    assert!(err.contains("dup.jsonl:3: duplicate id (first on line 1)"), "{err}");
    let err = run("dup.csv", "id,text\na,x\na,y\n", &[]);
    assert!(err.contains("dup.csv:3: duplicate id (first"), "{err}");
    let err = run("bad.jsonl", "{\"id\":\"a\",\"text\":\"x\"}\n{\"id\": \"b\", \"text\": \"secret note\n", &[]);
    assert!(err.contains("bad.jsonl:2: not valid JSON"), "{err}");
    assert!(!err.contains("secret"), "errors carry no note text: {err}");
    let err = run("missing.jsonl", "{\"id\":\"a\",\"body\":\"x\"}\n", &[]);
    assert!(err.contains("missing.jsonl:1: object has no key `text`"), "{err}");
    let err = run("blank.csv", "id,text\na,x\nb,  \n", &[]);
    assert!(err.contains("blank.csv:3: empty text"), "{err}");
    let err = run("controls.txt", "fine\n\u{0}\u{0}\n", &[]);
    assert!(err.contains("controls.txt:2: the text has no tokens"), "{err}");
    let mut invalid = b"fine\n".to_vec();
    invalid.extend_from_slice(b"caf\xE9\n");
    let path = dir.join("latin1.txt");
    std::fs::write(&path, invalid).unwrap();
    let err =
        fails(&["search", "--model", model.to_str().unwrap(), "--corpus", path.to_str().unwrap(), "--query", "q"]);
    assert!(err.contains("latin1.txt:2: not valid UTF-8"), "{err}");
    let err = run("notes.pdf", "x", &[]);
    assert!(err.contains("unknown corpus format"), "{err}");
    let err = run("ok.txt", "x\n", &["-k", "0"]);
    assert!(err.contains("-k must be at least 1"), "{err}");
    let path = dir.join("ok.txt");
    let err =
        fails(&["search", "--model", model.to_str().unwrap(), "--corpus", path.to_str().unwrap(), "--query", " "]);
    assert!(err.contains("--query is empty"), "{err}");
}
