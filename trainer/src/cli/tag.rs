//! `bedside tag` and `bedside deid`: token-classification models on notes.
//!
//! Neither prints note text: `tag` prints labels, byte spans and scores; `deid` writes the
//! redacted notes to the user's own --out file and prints counts per label only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use bedside_runtime::pipeline::entities::{Entity, EntityAggregation};
use bedside_runtime::pipeline::redact::Redacted;
use bedside_runtime::pipeline::scrub::{ScrubOptions, Scrubber};
use bedside_runtime::runtime::block_on;
use bedside_runtime::{Model, Task};
use serde::Serialize;

use bedside::data::table::{self, ColumnSpec, TableReader, TableSpec};
use bedside::data::Format;
use bedside::durable::write_file_atomic;

use super::commands::{load_model_on, note_id, read_notes, report_fallback};
use super::{DeidArgs, TagArgs};

/// The runtime's `wrong_task` error, before any note is read, for a model without a token head.
fn require_token_model(model: &Model, path: &Path, operation: &'static str) -> Result<()> {
    let task = model.manifest().task;
    if task == Task::TokenClassification {
        return Ok(());
    }
    Err(bedside_runtime::Error::WrongTask {
        task: task.as_str().to_string(),
        operation,
        needs: "a token-classification bundle",
    })
    .with_context(|| format!("model {}", path.display()))
}

fn entities(model: &Model, text: &str, aggregation: EntityAggregation) -> Result<Vec<Entity>> {
    Ok(block_on(model.tag_async(text, Some(aggregation)))?)
}

pub(super) fn tag(a: TagArgs) -> Result<()> {
    let model = load_model_on(&a.model, &a.backend)?;
    require_token_model(&model, &a.model, "tag")?;
    let aggregation = a.aggregation.unwrap_or(model.manifest().entity_aggregation);
    let notes: Vec<(String, String)> = match &a.input {
        Some(path) => read_notes(path, &a.text_col, &a.id_col)?,
        None => a.texts.iter().enumerate().map(|(i, t)| (format!("{i}"), t.clone())).collect(),
    };
    let mut out = std::io::stdout().lock();
    for (id, text) in &notes {
        let found = entities(&model, text, aggregation).with_context(|| format!("note {id}"))?;
        if a.json {
            let mut value = serde_json::json!({ "entities": found });
            if a.input.is_some() {
                value["id"] = serde_json::Value::String(id.clone());
            }
            serde_json::to_writer(&mut out, &value)?;
            writeln!(out)?;
        } else if found.is_empty() {
            writeln!(out, "{id}\t-\tno entities")?;
        } else {
            // Positions and labels only: the entity's text is the note's text.
            for e in &found {
                writeln!(out, "{id}\t{}\tbytes {}..{}\t{:.3}", e.label, e.start, e.end, e.score)?;
            }
        }
    }
    report_fallback(&model);
    Ok(())
}

/// What `deid` removed, counted: overall and per note. Never the removed text.
#[derive(Debug, Default, Serialize)]
struct Audit {
    input: String,
    output: String,
    aggregation: &'static str,
    rules: bool,
    notes: usize,
    spans: usize,
    counts: BTreeMap<String, usize>,
    per_note: Vec<NoteAudit>,
}

#[derive(Debug, Serialize)]
struct NoteAudit {
    id: String,
    line: u64,
    spans: usize,
    counts: BTreeMap<String, usize>,
}

/// A note with the model's entities (and with `rules`, the PHI patterns' spans) replaced by
/// `[LABEL]`: [`Model::deid_async`] with the caller's aggregation strategy.
fn deidentify(model: &Model, text: &str, aggregation: EntityAggregation, rules: Option<&Scrubber>) -> Result<Redacted> {
    Ok(bedside_runtime::runtime::block_on(model.deid_async(text, rules, Some(aggregation)))?)
}

pub(super) fn deid(a: DeidArgs) -> Result<()> {
    let model = load_model_on(&a.model, &a.backend)?;
    require_token_model(&model, &a.model, "deid")?;
    let aggregation = a.aggregation.unwrap_or(model.manifest().entity_aggregation);
    // The same patterns as `train --scrub`.
    let scrubber = a.rules.then(|| Scrubber::new(ScrubOptions::all()));
    let path = &a.input;

    // The table is written back whole: every cell is read (and must be UTF-8).
    let format = table::format_of(path, None)?;
    if format == Format::Jsonl {
        bail!("{}: deid --input takes a CSV or TSV file (it writes the same columns back as CSV)", path.display());
    }
    let spec = TableSpec {
        all_cells: true,
        ..TableSpec::new(vec![ColumnSpec::text(&a.text_col), ColumnSpec::scalar(&a.id_col).optional()])
    };
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = TableReader::new(file, format, path, &spec)?;
    let text_index = reader.header().iter().position(|h| *h == a.text_col).context("the text column")?;
    let headers = reader.header().to_vec();
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&headers)?;
    let mut audit = Audit {
        input: path.display().to_string(),
        output: a.out.display().to_string(),
        aggregation: aggregation.as_str(),
        rules: a.rules,
        ..Default::default()
    };
    while let Some(row) = reader.next_row()? {
        let row = row?;
        let line = row.line;
        let id = note_id(path, line, row.cells[1].as_str(), &a.id_col)?;
        let text = row.cells[0].as_str().unwrap_or_default();
        let redacted = deidentify(&model, text, aggregation, scrubber.as_ref())
            .with_context(|| format!("{}:{line}: note {id}", path.display()))?;
        let cells =
            row.fields.iter().enumerate().map(|(i, cell)| if i == text_index { redacted.text.as_str() } else { cell });
        writer.write_record(cells)?;
        let spans: usize = redacted.counts.values().sum();
        for (label, n) in &redacted.counts {
            *audit.counts.entry(label.clone()).or_insert(0) += n;
        }
        audit.notes += 1;
        audit.spans += spans;
        audit.per_note.push(NoteAudit { id, line: line as u64, spans, counts: redacted.counts });
    }
    let bytes = writer.into_inner().context("writing the redacted CSV")?;
    write_file_atomic(&a.out, &bytes)?;
    if let Some(audit_path) = &a.audit {
        write_file_atomic(audit_path, &serde_json::to_vec_pretty(&audit)?)?;
    }
    report_fallback(&model);

    let per_label: Vec<String> = audit.counts.iter().map(|(label, n)| format!("{label} {n}")).collect();
    println!(
        "{} notes de-identified (aggregation {}{}): {} spans replaced{}",
        audit.notes,
        audit.aggregation,
        if a.rules { ", with PHI patterns" } else { "" },
        audit.spans,
        if per_label.is_empty() { String::new() } else { format!(": {}", per_label.join(", ")) }
    );
    println!(
        "wrote {}{}",
        a.out.display(),
        a.audit.as_ref().map(|p| format!(" and {}", p.display())).unwrap_or_default()
    );
    Ok(())
}
