//! From a config to the three data splits a run trains, selects and reports on:
//! load (CSV/TSV/JSONL) → split (explicit files, or seeded and stratified) → scrub PHI.
//! Unusable rows travel along as [`RowProblem`]s so the report can list them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use bedside_runtime::pipeline::scrub::{ScrubOptions, Scrubber};

use super::config::{TaskKind, TrainConfig};
use crate::data::{split, Dataset, LoadOptions, RowProblem, SplitOptions};

/// The data of one run.
#[derive(Debug, Clone, Default)]
pub struct RunData {
    pub train: Dataset,
    pub val: Dataset,
    pub test: Option<Dataset>,
    /// Rows left out of any split (file and line), in load order.
    pub problems: Vec<RowProblem>,
    /// PHI replacements per kind when scrubbing was on.
    pub scrub: Option<BTreeMap<String, usize>>,
}

pub fn load_options(config: &TrainConfig, task: TaskKind) -> LoadOptions {
    LoadOptions {
        text_col: config.text_col.clone(),
        label_col: config.label_col.clone(),
        id_col: config.id_col.clone(),
        group_col: config.group_col.clone(),
        label_separator: (task == TaskKind::Multilabel).then(|| config.label_separator.clone()),
        strict: config.strict,
        ..Default::default()
    }
}

/// Loads, splits and (if asked) scrubs the data a config names.
pub fn prepare(config: &TrainConfig, task: TaskKind) -> Result<RunData> {
    let options = load_options(config, task);
    let load = |path: &Path| Dataset::load(path, &options).with_context(|| format!("loading {}", path.display()));
    let mut train = load(&config.train)?;
    let mut problems = std::mem::take(&mut train.problems);
    let (train, val, test) = match &config.val {
        Some(val) => {
            let mut val = load(val)?;
            problems.append(&mut val.problems);
            let test = match &config.test {
                Some(path) => {
                    let mut test = load(path)?;
                    problems.append(&mut test.problems);
                    Some(test)
                }
                None => None,
            };
            (train, val, test)
        }
        None => {
            let shares = SplitOptions {
                train: 1.0 - config.val_ratio - config.test_ratio,
                val: config.val_ratio,
                test: config.test_ratio,
                seed: config.seed,
            };
            let parts = split(train, &shares).context("splitting the training file")?;
            problems.extend(parts.problems);
            let test = (config.test_ratio > 0.0).then_some(parts.test);
            (parts.train, parts.val, test)
        }
    };
    let mut data = RunData { train, val, test, problems, scrub: None };
    if config.scrub {
        data.scrub = Some(scrub(&mut data, config.scrub_names.as_deref())?);
    }
    Ok(data)
}

/// Replaces PHI in every split's text before tokenisation; returns counts per kind.
fn scrub(data: &mut RunData, names_file: Option<&Path>) -> Result<BTreeMap<String, usize>> {
    let mut scrubber = Scrubber::new(ScrubOptions::all());
    if let Some(path) = names_file {
        let names = std::fs::read_to_string(path).with_context(|| format!("reading names from {}", path.display()))?;
        scrubber = scrubber
            .with_names(names.lines().map(str::trim).filter(|l| !l.is_empty()))
            .with_context(|| format!("names from {}", path.display()))?;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let splits = [Some(&mut data.train), Some(&mut data.val), data.test.as_mut()];
    for dataset in splits.into_iter().flatten() {
        for example in &mut dataset.examples {
            let scrubbed = scrubber.scrub(&example.text);
            for (kind, n) in &scrubbed.counts {
                *counts.entry(kind.as_str().to_string()).or_insert(0) += n;
            }
            example.text = scrubbed.text;
        }
    }
    Ok(counts)
}
