//! Scoring a model as users run it (a bundle or a checkpoint through the runtime: windows,
//! aggregation, the stored threshold) on labelled notes, for `bedside eval` and the export
//! parity report.

use std::path::Path;

use anyhow::{bail, Context, Result};
use bedside_runtime::{Model, Task};

use super::report::{Predictions, ReportTask, Truth};
use crate::data::Dataset;

/// The report's task for a model's task.
pub fn report_task(task: Task) -> Result<ReportTask> {
    Ok(match task {
        Task::Classification => ReportTask::Multiclass,
        Task::Binary => ReportTask::Binary,
        Task::Multilabel => ReportTask::Multilabel,
        Task::Embedding => bail!("an embedding model has no labels to score; export or train a classifier"),
        Task::TokenClassification => {
            bail!("a token classifier is scored on tagged files by entity F1 (`bedside train ner --test`), not on labelled notes")
        }
    })
}

/// Classifies every note of `data` with `model`. Rows whose labels the model lacks move to
/// `data.problems` (as `unseen_label`, reported against `file`) instead of being scored.
pub fn score(model: &Model, data: &mut Dataset, file: &Path) -> Result<Predictions> {
    let manifest = model.manifest();
    let task = report_task(manifest.task)?;
    let labels = manifest.labels.clone();
    data.filter_unseen_labels(&labels, file);
    let index = |label: &str| labels.iter().position(|l| l == label);
    let (mut classes, mut binary, mut multi) = (Vec::new(), Vec::new(), Vec::new());
    let mut probs = Vec::with_capacity(data.len());
    for example in &data.examples {
        let at = || format!("{}:{}", file.display(), example.line);
        let prediction = model.classify(&example.text).with_context(at)?;
        probs.push(prediction.probabilities.0.iter().map(|(_, p)| f64::from(*p)).collect());
        let first = example.labels.first().map(String::as_str).unwrap_or_default();
        match task {
            ReportTask::Multiclass => classes.push(index(first).with_context(at)?),
            ReportTask::Binary => binary.push(index(first) == Some(1)),
            ReportTask::Multilabel => {
                let mut row = vec![false; labels.len()];
                for label in &example.labels {
                    row[index(label).with_context(at)?] = true;
                }
                multi.push(row);
            }
        }
    }
    let truth = match task {
        ReportTask::Multiclass => Truth::Classes(classes),
        ReportTask::Binary => Truth::Binary(binary),
        ReportTask::Multilabel => Truth::Multilabel(multi),
    };
    Ok(Predictions { task, labels, truth, probs })
}
