//! End-to-end: `bedside eval embed` on the tiny fixture checkpoint — pairs and retrieval metrics,
//! a base model beside the model under test, the report files, errors naming file and line —
//! and `bedside eval --model … --data …` (classification) still parsing beside the subcommand.

mod common;

use std::path::Path;

use common::{ok, temp_dir};
use serde_json::Value;

fn fixture(name: &str) -> String {
    common::fixture(name).to_str().unwrap().to_string()
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_string()
}

/// Runs a command that must fail with exit code 2; returns stderr.
fn fails(args: &[&str]) -> String {
    let out = common::bedside(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "bedside {args:?} should fail with 2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    stderr
}

const PAIRS: &str = "text1,text2,label\n\
    chest pain,angina pectoris on exertion,1\n\
    chest pain,type 2 diabetes mellitus,0\n\
    shortness of breath,dyspnea at rest,1\n\
    shortness of breath,metformin 500 mg daily,0\n\
    high blood sugar,hyperglycemia,1\n\
    high blood sugar,fractured left wrist,0\n\
    fever and cough,pneumonia,0.8\n\
    fever and cough,knee replacement,0.1\n";

fn retrieval_files(dir: &Path) -> (String, String, String) {
    let queries = write(
        dir,
        "queries.jsonl",
        "{\"id\":\"q1\",\"text\":\"chest pain\"}\n{\"id\":\"q2\",\"text\":\"high blood sugar\"}\n\
         {\"id\":\"q3\",\"text\":\"no judgement for me\"}\n",
    );
    let corpus = write(
        dir,
        "corpus.csv",
        "id,text\nd1,angina pectoris on exertion\nd2,hyperglycemia\nd3,fractured left wrist\nd4,pneumonia\n",
    );
    let qrels = write(dir, "qrels.tsv", "query_id\tdoc_id\nq1\td1\nq2\td2\nq2\td4\n");
    (queries, corpus, qrels)
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mx, my) = (mean(x), mean(y));
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let var = |v: &[f64], m: f64| v.iter().map(|a| (a - m) * (a - m)).sum::<f64>();
    cov / (var(x, mx) * var(y, my)).sqrt()
}

#[test]
fn pairs_json_has_the_correlations_of_the_models_cosines() {
    let dir = temp_dir("pairs");
    let pairs = write(&dir, "pairs.csv", PAIRS);
    let model = fixture("tiny-safetensors");
    let got: Value =
        serde_json::from_str(&ok(&["eval", "embed", "--model", &model, "--pairs", &pairs, "--json"])).unwrap();
    for key in ["spearman", "pearson"] {
        let v = got[key].as_f64().unwrap_or_else(|| panic!("{key} missing or null in {got}"));
        assert!((-1.0..=1.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(got["n_pairs"], 8);
    assert_eq!(got["n_related"], 4, "0.8 and the three 1s are related at the default threshold 0.5");
    assert!(got.get("mrr@10").is_none(), "no retrieval metrics without a retrieval set");

    // The same Pearson from `bedside embed`'s vectors: the command scores cosines of these texts.
    let rows: Vec<Vec<&str>> = PAIRS.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let mut cosines = Vec::new();
    for row in &rows {
        let v: Vec<Vec<f64>> =
            serde_json::from_str(&ok(&["embed", "--model", &model, "--json", row[0], row[1]])).unwrap();
        cosines.push(cosine(&v[0], &v[1]));
    }
    let labels: Vec<f64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
    let want = pearson(&cosines, &labels);
    let diff = (got["pearson"].as_f64().unwrap() - want).abs();
    assert!(diff < 1e-4, "pearson {} vs {want} from bedside embed", got["pearson"]);
}

#[test]
fn retrieval_and_base_side_by_side_with_reports() {
    let dir = temp_dir("retrieval");
    let pairs = write(&dir, "pairs.tsv", &PAIRS.replace(',', "\t"));
    let (queries, corpus, qrels) = retrieval_files(&dir);
    let out = dir.join("report");
    let model = fixture("tiny-safetensors");
    let base = fixture("tiny-pth-vocab");
    let args = [
        "eval",
        "embed",
        "--model",
        &model,
        "--base",
        &base,
        "--pairs",
        &pairs,
        "--queries",
        &queries,
        "--corpus",
        &corpus,
        "--qrels",
        &qrels,
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let got: Value = serde_json::from_str(&ok(&args)).unwrap();
    let keys = ["spearman", "pearson", "mrr@10", "ndcg@10", "recall@1", "recall@5", "recall@10", "map@100"];
    for side in [&got, &got["base"]] {
        for key in keys {
            let v = side[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {side}"));
            assert!((-1.0..=1.0).contains(&v), "{key} = {v}");
        }
        // 2 queries have a relevant document (q3 has none and is left out), 4 documents: q2's two
        // relevant documents are both in the top 4, so recall@5 is 1 for both queries.
        assert_eq!((side["n_queries"].as_u64(), side["n_corpus"].as_u64()), (Some(2), Some(4)));
        assert_eq!(side["n_queries_without_relevant"], 1);
        assert_eq!(side["recall@5"], 1.0);
        assert_eq!(side["relevance"], "binary");
        let r: Vec<f64> = ["recall@1", "recall@5", "recall@10"].iter().map(|k| side[k].as_f64().unwrap()).collect();
        assert!(r[0] <= r[1] && r[1] <= r[2]);
    }
    assert_eq!(got["model"].as_str(), Some(model.as_str()));
    assert_eq!(got["base"]["model"].as_str(), Some(base.as_str()));

    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let models = report["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!((models[0]["role"].as_str(), models[1]["role"].as_str()), (Some("model"), Some("base")));
    assert_eq!(models[0]["pairs"]["histogram"]["related"].as_array().unwrap().len(), 40);
    assert!((models[0]["pairs"]["spearman"].as_f64().unwrap() - got["spearman"].as_f64().unwrap()).abs() < 1e-12);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 2, "one histogram per model");
    assert!(!html.contains("<script") && !html.contains("http"), "self-contained");

    // Without --json: a table with both columns.
    let table = ok(&args[..args.len() - 1]);
    assert!(table.lines().any(|l| l.starts_with("metric") && l.contains("model") && l.contains("base")), "{table}");
    assert!(table.contains("ndcg@10"));
}

#[test]
fn graded_qrels_are_reported_as_graded() {
    let dir = temp_dir("graded");
    let (queries, corpus, _) = retrieval_files(&dir);
    let qrels = write(&dir, "qrels.csv", "query-id,corpus-id,score\nq1,d1,2\nq2,d2,1\nq2,d4,0\n");
    let got: Value = serde_json::from_str(&ok(&[
        "eval",
        "embed",
        "--model",
        &fixture("tiny-safetensors"),
        "--queries",
        &queries,
        "--corpus",
        &corpus,
        "--qrels",
        &qrels,
        "--json",
    ]))
    .unwrap();
    assert_eq!(got["relevance"], "graded");
    assert!(got.get("spearman").is_none(), "no pair metrics without --pairs");
    assert!(got["ndcg@10"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_inputs_name_the_file_and_line() {
    let dir = temp_dir("errors");
    let model = fixture("tiny-safetensors");
    let (queries, corpus, qrels) = retrieval_files(&dir);
    let pair_cases = [
        ("empty.csv", "text1,text2,label\na,b,1\n  ,c,0\n", "empty.csv:3: field `text1`: empty text"),
        ("label.csv", "text1,text2,label\na,b,1\nc,d,2\n", "label.csv:3: field `label`: must be a number in [0, 1]"),
        (
            "bad.jsonl",
            "{\"text1\":\"a\",\"text2\":\"b\",\"label\":1}\n{\"text1\": oops}\n",
            "bad.jsonl:2: not valid JSON",
        ),
        ("cols.csv", "a,b,label\nx,y,1\n", "cols.csv:1: no column `text1`"),
    ];
    for (name, contents, want) in pair_cases {
        let path = write(&dir, name, contents);
        let stderr = fails(&["eval", "embed", "--model", &model, "--pairs", &path]);
        assert!(stderr.contains(want), "{name}: {stderr:?} lacks {want:?}");
    }
    let run = |q: &str, c: &str, r: &str| {
        fails(&["eval", "embed", "--model", &model, "--queries", q, "--corpus", c, "--qrels", r])
    };
    let unknown = write(&dir, "unknown.tsv", "query_id\tdoc_id\nq1\td1\nq2\td9\n");
    let stderr = run(&queries, &corpus, &unknown);
    assert!(stderr.contains("unknown.tsv:3: field `doc_id`: an id that is not in"), "{stderr}");
    assert!(!stderr.contains("d9"), "the id itself is a cell value: {stderr}");
    let duplicate = write(&dir, "dup.csv", "id,text\nd1,a\nd2,b\nd1,c\n");
    let stderr = run(&queries, &duplicate, &qrels);
    assert!(stderr.contains("dup.csv:4: field `id`: duplicate id (first on line 2)"), "{stderr}");
    let invalid = write(&dir, "q.jsonl", "{\"id\":\"q1\",\"text\":\"a\"}\nnot json\n");
    let stderr = run(&invalid, &corpus, &qrels);
    assert!(stderr.contains("q.jsonl:2: not valid JSON"), "{stderr}");
    // Text never reaches the message, only its place.
    let secret = write(&dir, "secret.csv", "text1,text2,label\nJohn Smith MRN 12345,b,7\n");
    let stderr = fails(&["eval", "embed", "--model", &model, "--pairs", &secret]);
    assert!(stderr.contains("secret.csv:2") && !stderr.contains("John"), "{stderr}");

    // A retrieval set needs all three files; some data is required.
    let stderr = fails(&["eval", "embed", "--model", &model, "--queries", &queries]);
    assert!(stderr.contains("--corpus") && stderr.contains("--qrels"), "{stderr}");
    let stderr = fails(&["eval", "embed", "--model", &model]);
    assert!(stderr.contains("--pairs"), "{stderr}");
    let good = write(&dir, "good.csv", PAIRS);
    let stderr = fails(&["eval", "embed", "--model", dir.join("nowhere").to_str().unwrap(), "--pairs", &good]);
    assert!(stderr.contains("nowhere"), "{stderr}");
}

#[test]
fn classification_eval_still_parses_beside_the_subcommand() {
    let dir = temp_dir("classify");
    let data = write(
        &dir,
        "notes.csv",
        "text,label\nchest pain radiating to the left arm,cardiology\nthyroid nodule on ultrasound,endocrinology\n\
         wheezing and cough,respiratory\n",
    );
    let out = dir.join("eval");
    let printed =
        ok(&["eval", "--model", &fixture("tiny-classifier"), "--data", &data, "--out", out.to_str().unwrap()]);
    assert!(printed.contains("3 notes"), "{printed}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["n"], 3);
    let stderr = fails(&["eval", "--model", &fixture("tiny-classifier")]);
    assert!(stderr.contains("--data"), "{stderr}");
}
