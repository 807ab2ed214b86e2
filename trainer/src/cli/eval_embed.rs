//! `bedside eval embed`: scores an embedding model (and optionally its base model, side by
//! side) on related/unrelated pairs and on a retrieval set. The metrics live in
//! `bedside::eval::embedding`; this file reads flags, loads models and prints.

use super::commands::load_model;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{ArgGroup, Args};
use serde_json::{Map, Value};

use bedside::eval::embedding::{
    evaluate_model, headline, load_pairs, load_retrieval_set, write_embedding_report, EmbeddingReport, ModelEvaluation,
    PairMetricOptions, PairsOptions, RetrievalOptions,
};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("data").args(["pairs", "queries"]).required(true).multiple(true)))]
pub struct EvalEmbedArgs {
    /// The model under test: a run directory (its best/), a checkpoint directory or a bundle.
    #[arg(long)]
    pub model: PathBuf,
    /// A base model to evaluate on the same data and print beside --model.
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// Pairs (CSV, TSV or JSONL): two texts and a label, 0/1 or a score in [0, 1].
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    #[arg(long, default_value = "text1")]
    pub text1_col: String,
    #[arg(long, default_value = "text2")]
    pub text2_col: String,
    #[arg(long, default_value = "label")]
    pub label_col: String,
    /// Pairs with a label at or above this are "related" in the distributions.
    #[arg(long, default_value_t = 0.5)]
    pub related_threshold: f64,
    /// Histogram bins over cosine [-1, 1].
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub bins: u16,
    /// Retrieval queries (JSONL, CSV or TSV with id and text).
    #[arg(long, requires_all = ["corpus", "qrels"])]
    pub queries: Option<PathBuf>,
    /// Retrieval corpus (JSONL, CSV or TSV with id and text).
    #[arg(long, requires_all = ["queries", "qrels"])]
    pub corpus: Option<PathBuf>,
    /// Relevance judgements (TSV, CSV or JSONL): query_id, doc_id and optionally a graded score.
    #[arg(long, requires_all = ["queries", "corpus"])]
    pub qrels: Option<PathBuf>,
    /// Id column of --queries and --corpus (the default also accepts `_id`).
    #[arg(long, default_value = "id")]
    pub id_col: String,
    /// Text column of --queries and --corpus.
    #[arg(long, default_value = "text")]
    pub text_col: String,
    /// Query id column of --qrels (the default also accepts `query-id`).
    #[arg(long, default_value = "query_id")]
    pub query_id_col: String,
    /// Document id column of --qrels (the default also accepts `corpus-id`).
    #[arg(long, default_value = "doc_id")]
    pub doc_id_col: String,
    /// Graded relevance column of --qrels; without it every judgement counts 1.
    #[arg(long, default_value = "score")]
    pub score_col: String,
    /// Write report.json and report.html (histograms of related vs unrelated cosines) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the numbers as one JSON object (the base model's under "base").
    #[arg(long)]
    pub json: bool,
}

/// The flat numbers printed for one model: the metrics' keys plus the counts.
fn flat(m: &ModelEvaluation) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("model".into(), m.model.clone().into());
    if let Some(p) = &m.pairs {
        out.insert("spearman".into(), p.spearman.into());
        out.insert("pearson".into(), p.pearson.into());
        out.insert("n_pairs".into(), p.n_pairs.into());
        out.insert("n_related".into(), p.n_related.into());
        out.insert("related_mean_cosine".into(), p.related.as_ref().map(|d| d.mean).into());
        out.insert("unrelated_mean_cosine".into(), p.unrelated.as_ref().map(|d| d.mean).into());
    }
    if let Some(r) = &m.retrieval {
        if let Value::Object(fields) = serde_json::to_value(r).expect("metrics serialise") {
            out.extend(fields);
        }
    }
    out
}

pub fn run(a: EvalEmbedArgs) -> Result<()> {
    let pairs = match &a.pairs {
        Some(path) => {
            let options = PairsOptions {
                format: None,
                text1_col: a.text1_col.clone(),
                text2_col: a.text2_col.clone(),
                label_col: a.label_col.clone(),
            };
            Some(load_pairs(path, &options)?)
        }
        None => None,
    };
    let retrieval = match (&a.queries, &a.corpus, &a.qrels) {
        (Some(q), Some(c), Some(r)) => {
            let options = RetrievalOptions {
                id_col: a.id_col.clone(),
                text_col: a.text_col.clone(),
                query_id_col: a.query_id_col.clone(),
                doc_id_col: a.doc_id_col.clone(),
                score_col: a.score_col.clone(),
            };
            Some(load_retrieval_set(q, c, r, &options)?)
        }
        _ => None,
    };
    let options = PairMetricOptions { related_threshold: a.related_threshold, bins: usize::from(a.bins) };
    let mut models = vec![("model", &a.model)];
    if let Some(base) = &a.base {
        models.push(("base", base));
    }
    let terminal = std::io::stderr().is_terminal();
    let mut evaluations = Vec::new();
    for (role, path) in models {
        let model = load_model(path)?;
        let name = path.display().to_string();
        let mut progress = |done: usize, total: usize| {
            if terminal {
                eprint!("\r{role}: embedded {done}/{total} texts");
                if done == total {
                    eprintln!();
                }
            }
        };
        let evaluation =
            evaluate_model(&model, role, &name, pairs.as_deref(), retrieval.as_ref(), &options, &mut progress)?;
        eprintln!("{role} {name}: {} texts embedded in {:.1} s", evaluation.texts_embedded, evaluation.seconds);
        evaluations.push(evaluation);
    }

    let text = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let report = EmbeddingReport {
        created_by: format!("bedside {}", env!("CARGO_PKG_VERSION")),
        pairs_file: text(&a.pairs),
        queries_file: text(&a.queries),
        corpus_file: text(&a.corpus),
        qrels_file: text(&a.qrels),
        models: evaluations,
    };
    if let Some(out) = &a.out {
        write_embedding_report(&report, out).with_context(|| format!("writing the report to {}", out.display()))?;
    }

    let main = &report.models[0];
    if main.pairs.as_ref().is_some_and(|p| p.spearman.is_none()) {
        eprintln!("warning: every label is the same (or every cosine): Spearman and Pearson are undefined (null)");
    }
    if a.json {
        let mut value = flat(main);
        if let Some(base) = report.models.get(1) {
            value.insert("base".into(), Value::Object(flat(base)));
        }
        println!("{}", serde_json::to_string(&Value::Object(value))?);
    } else {
        print_table(&report);
        if let Some(out) = &a.out {
            println!("report: {}", out.join("report.html").display());
        }
    }
    Ok(())
}

fn print_table(report: &EmbeddingReport) {
    let main = &report.models[0];
    if let Some(p) = &main.pairs {
        println!("{} pairs ({} related)", p.n_pairs, p.n_related);
    }
    if let Some(r) = &main.retrieval {
        println!("{} queries, {} documents", r.n_queries, r.n_corpus);
    }
    let tables: Vec<_> = report.models.iter().map(headline).collect();
    print!("{:<26}", "metric");
    for m in &report.models {
        print!("{:>10}", m.role);
    }
    println!();
    for (row, (name, _)) in tables[0].iter().enumerate() {
        print!("{name:<26}");
        for t in &tables {
            print!("{:>10}", t[row].1.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}")));
        }
        println!();
    }
}
