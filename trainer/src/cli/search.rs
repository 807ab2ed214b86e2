//! `bedside search`: reads a corpus, embeds every document with the model, and prints the
//! documents closest to a query. The index is `bedside_runtime::search`, the code the
//! browser's `BedsideIndex` runs, so the CLI and a page rank a corpus the same way.
//!
//! Corpus errors name the file and line (never the text): an empty corpus, a line that is
//! not JSON, a missing or empty text, a duplicate id, invalid UTF-8.

use super::commands::load_model_on;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bedside::data::table::{self, ColumnSpec, TableSpec};
use bedside::data::Format;
use bedside_runtime::search::{self, Storage};
use bedside_runtime::Error;
use clap::Args;

/// Characters of a document shown per result in the human-readable output.
const PREVIEW_CHARS: usize = 100;

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Bundle file, Hugging Face checkpoint directory or training run directory.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub backend: super::BackendArgs,
    /// Documents: .jsonl (one {"id", "text"} per line; id optional), .csv/.tsv (header row with
    /// `text` and optionally `id`) or .txt (one document per line; blank lines skipped).
    /// Without an id column or key, the id is the line number; an empty id is an error.
    #[arg(long)]
    pub corpus: PathBuf,
    /// What to look for. Like each document, it is truncated to the model's window
    /// (max_seq_len tokens): only its beginning counts when it is longer.
    #[arg(long)]
    pub query: String,
    /// Number of results.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Print a JSON array of {"id", "score", "text"}, best first.
    #[arg(long)]
    pub json: bool,
    /// Keep document vectors as int8 (about a quarter of the memory; scores move by ~1e-3).
    #[arg(long)]
    pub int8: bool,
}

/// One document of the corpus and the line it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub id: String,
    pub text: String,
    pub line: usize,
}

#[derive(serde::Serialize)]
struct Row<'a> {
    id: &'a str,
    score: f32,
    text: &'a str,
}

pub fn run(args: SearchArgs) -> Result<()> {
    if args.k == 0 {
        bail!("-k must be at least 1");
    }
    if args.query.trim().is_empty() {
        bail!("--query is empty");
    }
    let docs = read_corpus(&args.corpus)?;
    let model = load_model_on(&args.model, &args.backend)?;
    let storage = if args.int8 { Storage::Int8 } else { Storage::F32 };
    let mut index = search::index_for(&model, storage)?;
    let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
    let started = Instant::now();
    let show_progress = std::io::stderr().is_terminal();
    search::add_texts(&mut index, &model, &ids, &texts, |done, total| {
        if show_progress {
            eprint!("\rembedding documents: {done}/{total}");
        }
        Ok(())
    })
    .map_err(|e| corpus_error(&args.corpus, &docs, e))?;
    if show_progress {
        eprintln!(
            "\rembedded {} documents in {:.1} s ({} index, {} bytes)",
            docs.len(),
            started.elapsed().as_secs_f64(),
            if args.int8 { "int8" } else { "f32" },
            index.memory_bytes()
        );
    }
    let hits = search::search_text(&index, &model, &args.query, args.k).context("embedding --query")?;
    let by_id: std::collections::HashMap<&str, &Doc> = docs.iter().map(|d| (d.id.as_str(), d)).collect();
    let rows: Vec<Row> = hits
        .iter()
        .filter_map(|h| by_id.get(h.id.as_str()).map(|d| Row { id: &d.id, score: h.score, text: &d.text }))
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &rows)?;
        writeln!(out)?;
    } else {
        for (rank, row) in rows.iter().enumerate() {
            writeln!(out, "{:>3}  {:.4}  {}  {}", rank + 1, row.score, row.id, preview(row.text))?;
        }
    }
    Ok(())
}

/// Embedding errors about one document, told as the corpus file and line.
fn corpus_error(path: &Path, docs: &[Doc], err: Error) -> anyhow::Error {
    match err {
        Error::EmptyText { index } if index < docs.len() => {
            anyhow::anyhow!("{}:{}: the text has no tokens (empty text)", path.display(), docs[index].line)
        }
        other => anyhow::Error::new(other).context(format!("indexing {}", path.display())),
    }
}

/// Reads a corpus by its extension (.jsonl/.ndjson, .csv, .txt) and checks that it holds
/// documents with distinct ids.
pub fn read_corpus(path: &Path) -> Result<Vec<Doc>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let docs = match (extension.as_deref(), Format::from_path(path)) {
        (Some("txt"), _) => read_txt(path, &bytes)?,
        (_, Some(format)) => read_table(path, &bytes, format)?,
        _ => bail!("{}: unknown corpus format: use .jsonl, .csv, .tsv or .txt", path.display()),
    };
    if docs.is_empty() {
        bail!("{}: empty corpus: no documents", path.display());
    }
    let mut first_line = std::collections::HashMap::new();
    for doc in &docs {
        if let Some(line) = first_line.insert(doc.id.as_str(), doc.line) {
            // The id itself is not repeated: it is a cell value (it may be a record number).
            bail!("{}:{}: duplicate id (first on line {line})", path.display(), doc.line);
        }
    }
    Ok(docs)
}

/// Lines as (1-based number, text), `\r\n` or `\n`, a leading byte-order mark dropped.
fn lines<'a>(path: &'a Path, bytes: &'a [u8]) -> impl Iterator<Item = Result<(usize, &'a str)>> + 'a {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.split(|&b| b == b'\n').enumerate().filter(|_| !bytes.is_empty()).map(move |(i, line)| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        std::str::from_utf8(line)
            .map(|text| (i + 1, text))
            .map_err(|e| anyhow::anyhow!("{}:{}: not valid UTF-8 (byte {})", path.display(), i + 1, e.valid_up_to()))
    })
}

fn read_txt(path: &Path, bytes: &[u8]) -> Result<Vec<Doc>> {
    let mut docs = Vec::new();
    for line in lines(path, bytes) {
        let (line, text) = line?;
        if !text.trim().is_empty() {
            docs.push(Doc { id: line.to_string(), text: text.to_string(), line });
        }
    }
    Ok(docs)
}

/// Documents from a table (`data::table`): a `text` column and an optional `id` column. A
/// file without an id column numbers documents by line; an empty id in one that has it is an
/// error, as in every other table reader.
fn read_table(path: &Path, bytes: &[u8], format: Format) -> Result<Vec<Doc>> {
    let spec = TableSpec::new(vec![ColumnSpec::text("text"), ColumnSpec::scalar("id").optional()]);
    let mut docs = Vec::new();
    for row in table::read_all(bytes, format, path, &spec)? {
        let line = row.line;
        let text = row.cells[0].as_str().unwrap_or_default();
        if text.trim().is_empty() {
            bail!("{}:{line}: empty text", path.display());
        }
        let id = match row.cells[1].as_str() {
            None => line.to_string(),
            Some(id) if id.trim().is_empty() => bail!("{}:{line}: empty id", path.display()),
            Some(id) => id.trim().to_string(),
        };
        docs.push(Doc { id, text: text.to_string(), line });
    }
    Ok(docs)
}

/// The first [`PREVIEW_CHARS`] characters of a document on one line.
fn preview(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, content: &str) -> Result<Vec<Doc>> {
        let path = Path::new(name);
        match name.rsplit('.').next() {
            Some("jsonl") => read_table(path, content.as_bytes(), Format::Jsonl),
            Some("csv") => read_table(path, content.as_bytes(), Format::Csv),
            _ => read_txt(path, content.as_bytes()),
        }
    }

    #[test]
    fn txt_ids_are_line_numbers_and_blank_lines_are_skipped() {
        let docs = parse("d.txt", "first\r\n\nthird\n").unwrap();
        let got: Vec<(&str, &str)> = docs.iter().map(|d| (d.id.as_str(), d.text.as_str())).collect();
        assert_eq!(got, [("1", "first"), ("3", "third")]);
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let err = |content: &str| parse("d.jsonl", content).unwrap_err().to_string();
        assert!(err("{\"id\":\"a\",\"text\":\"x\"}\n{oops\n").starts_with("d.jsonl:2: not valid JSON"));
        assert_eq!(err("{\"id\":\"a\"}"), "d.jsonl:1: object has no key `text`");
        assert_eq!(err("\n{\"text\":\" \"}"), "d.jsonl:2: empty text");
        assert_eq!(err("[1]"), "d.jsonl:1: line is JSON but not an object");
        assert_eq!(err("{\"id\":\"\",\"text\":\"x\"}"), "d.jsonl:1: empty id");
        assert_eq!(err("{\"id\":null,\"text\":\"x\"}"), "d.jsonl:1: empty id");
        let docs = parse("d.jsonl", "{\"id\": 7, \"text\": \"x\"}\n{\"text\": \"y\"}\n").unwrap();
        assert_eq!((docs[0].id.as_str(), docs[1].id.as_str()), ("7", "2"));
    }

    #[test]
    fn csv_id_is_optional_and_lines_count_the_header() {
        let docs = parse("d.csv", "text\nalpha\n\"multi\nline\"\ngamma\n").unwrap();
        let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["2", "3", "5"]);
        let docs = parse("d.csv", "id,text\nn1,alpha\n").unwrap();
        assert_eq!(docs[0].id, "n1");
        assert_eq!(parse("d.csv", "id,text\nn1,\n").unwrap_err().to_string(), "d.csv:2: empty text");
        assert!(parse("d.csv", "id,body\n").unwrap_err().to_string().starts_with("d.csv:1: no column `text`"));
    }

    #[test]
    fn preview_cuts_on_a_character() {
        let long = "é".repeat(150);
        assert_eq!(preview(&long).chars().count(), PREVIEW_CHARS + 1);
        assert_eq!(preview("a\n b"), "a b");
    }
}
