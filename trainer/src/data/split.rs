//! Splitting a loaded data set into train/val/test, the second half of the data step
//! (data: load → split → scrub → tokenize/window → train → eval → export).
//!
//! The split is stratified by each row's first label, like scikit-learn's
//! `train_test_split(stratify=...)`: per class, shuffle with the seed, then cut by the
//! fractions, so rare classes keep their share in every split. Classes too small to
//! reach every split fill train first, so val/test never hold a class train lacks.
//!
//! Rows with a group key (e.g. the 3-character ICD-10 category) move as one unit: notes of
//! one category in both train and test would leak near-duplicate codes across the split.
//! A group is stratified by its most common first label, so with groups the per-class
//! shares are approximate (groups are not cut in pieces).
//!
//! The shuffle uses a small built-in PRNG (SplitMix64) so a seed means the same split on
//! every platform and release, independent of any `rand` version.

use std::collections::{BTreeMap, HashMap};

use bedside_runtime::model::SplitMix64;

use super::dataset::{Dataset, Example, RowProblem};

/// Fractions of rows per split (they must sum to 1) and the shuffle seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitOptions {
    pub train: f64,
    pub val: f64,
    pub test: f64,
    pub seed: u64,
}

impl Default for SplitOptions {
    fn default() -> SplitOptions {
        SplitOptions { train: 0.8, val: 0.1, test: 0.1, seed: 42 }
    }
}

impl SplitOptions {
    fn fractions(&self) -> [f64; 3] {
        [self.train, self.val, self.test]
    }

    fn validate(&self) -> Result<(), SplitError> {
        let fractions = self.fractions();
        let valid = fractions.iter().all(|f| f.is_finite() && *f >= 0.0)
            && self.train > 0.0
            && (fractions.iter().sum::<f64>() - 1.0).abs() < 1e-6;
        if valid {
            Ok(())
        } else {
            Err(SplitError::BadFractions { train: self.train, val: self.val, test: self.test })
        }
    }
}

/// The three splits, each in the source file's row order. `problems` carries the source
/// data set's problems along so that a report can still list them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    pub train: Dataset,
    pub val: Dataset,
    pub test: Dataset,
    pub problems: Vec<RowProblem>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    #[error(
        "split fractions must be non-negative and sum to 1, with train above 0 \
         (got train {train}, val {val}, test {test})"
    )]
    BadFractions { train: f64, val: f64, test: f64 },

    #[error("no usable rows to split")]
    Empty,
}

const TRAIN: usize = 0;

/// Splits `dataset` into train/val/test, stratified by first label, keeping groups whole.
/// The same data and seed always give the same split.
pub fn split(dataset: Dataset, options: &SplitOptions) -> Result<Split, SplitError> {
    options.validate()?;
    if dataset.examples.is_empty() {
        return Err(SplitError::Empty);
    }
    let units = units(&dataset.examples);
    let mut rng = SplitMix64::new(options.seed);
    let mut part_of = vec![TRAIN; dataset.examples.len()];
    for mut stratum in strata(&units, &dataset.examples).into_values() {
        rng.shuffle(&mut stratum);
        let parts = assign(&stratum, &units, options.fractions());
        for (unit, part) in stratum.iter().zip(parts) {
            for &row in &units[*unit] {
                part_of[row] = part;
            }
        }
    }
    let mut parts: [Dataset; 3] = Default::default();
    for (example, part) in dataset.examples.into_iter().zip(part_of) {
        parts[part].examples.push(example);
    }
    let [train, val, test] = parts;
    Ok(Split { train, val, test, problems: dataset.problems })
}

/// Rows that must stay together, as indices into the examples: one unit per group key
/// (in order of first appearance), and one per ungrouped row.
fn units(examples: &[Example]) -> Vec<Vec<usize>> {
    let mut units: Vec<Vec<usize>> = Vec::new();
    let mut by_group: HashMap<&str, usize> = HashMap::new();
    for (row, example) in examples.iter().enumerate() {
        match &example.group {
            Some(group) => {
                let unit = *by_group.entry(group.as_str()).or_insert_with(|| {
                    units.push(Vec::new());
                    units.len() - 1
                });
                units[unit].push(row);
            }
            None => units.push(vec![row]),
        }
    }
    units
}

/// Unit indices per stratum label, in sorted label order so the RNG is consumed in the same
/// order on every run.
fn strata(units: &[Vec<usize>], examples: &[Example]) -> BTreeMap<String, Vec<usize>> {
    let mut strata: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (unit, rows) in units.iter().enumerate() {
        strata.entry(stratum_label(rows, examples)).or_default().push(unit);
    }
    strata
}

/// The most common first label among a unit's rows; ties go to the smallest label.
fn stratum_label(rows: &[usize], examples: &[Example]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for &row in rows {
        *counts.entry(examples[row].labels[0].as_str()).or_insert(0) += 1;
    }
    let best = counts.values().copied().max().unwrap_or(0);
    counts.into_iter().find(|(_, n)| *n == best).map(|(label, _)| label.to_string()).unwrap_or_default()
}

/// The split of each unit of one shuffled stratum. The first unit goes to train so every
/// class is trained on; each later unit goes to the split furthest below its target. For
/// single rows this hits the targets exactly, i.e. it is "shuffle, then cut".
fn assign(stratum: &[usize], units: &[Vec<usize>], fractions: [f64; 3]) -> Vec<usize> {
    let total = stratum.iter().map(|&u| units[u].len()).sum();
    let targets = allocate(total, fractions);
    let mut filled = [0usize; 3];
    let mut parts = Vec::with_capacity(stratum.len());
    for (i, &unit) in stratum.iter().enumerate() {
        let part = if i == 0 { TRAIN } else { furthest_below(targets, filled) };
        filled[part] += units[unit].len();
        parts.push(part);
    }
    parts
}

/// The split with the largest shortfall against its target; ties go to the earlier split.
fn furthest_below(targets: [usize; 3], filled: [usize; 3]) -> usize {
    let shortfall = |p: usize| targets[p] as i64 - filled[p] as i64;
    (0..3).fold(TRAIN, |best, p| if shortfall(p) > shortfall(best) { p } else { best })
}

/// Rows per split for a class of `n` rows: floors of `n * fraction`, then the rows left
/// over by largest remainder (ties in train, val, test order), so each count is within one
/// row of its exact share. A non-empty class always gets at least one training row.
fn allocate(n: usize, fractions: [f64; 3]) -> [usize; 3] {
    let exact = fractions.map(|f| n as f64 * f);
    let mut counts = exact.map(|e| e.floor() as usize);
    let mut order = [0, 1, 2];
    // Stable sort keeps train before val before test among equal remainders.
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let assigned: usize = counts.iter().sum();
    for &part in order.iter().cycle().take(n.saturating_sub(assigned)) {
        counts[part] += 1;
    }
    if n > 0 && counts[TRAIN] == 0 {
        let donor = if counts[1] >= counts[2] { 1 } else { 2 };
        counts[donor] -= 1;
        counts[TRAIN] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::ProblemKind;
    use std::collections::HashSet;

    fn example(line: usize, label: &str, group: Option<&str>) -> Example {
        Example {
            id: format!("r{line}"),
            text: format!("note {line}"),
            labels: vec![label.to_string()],
            line,
            group: group.map(str::to_string),
        }
    }

    /// `sizes` rows per class, classes named c0, c1, …, rows interleaved as in a real file.
    fn dataset(sizes: &[usize]) -> Dataset {
        let mut examples = Vec::new();
        let longest = sizes.iter().copied().max().unwrap_or(0);
        for i in 0..longest {
            for (class, &size) in sizes.iter().enumerate() {
                if i < size {
                    examples.push(example(examples.len() + 2, &format!("c{class}"), None));
                }
            }
        }
        Dataset { examples, problems: Vec::new() }
    }

    fn ids(dataset: &Dataset) -> Vec<&str> {
        dataset.examples.iter().map(|e| e.id.as_str()).collect()
    }

    fn count(dataset: &Dataset, class: &str) -> usize {
        dataset.label_counts().get(class).copied().unwrap_or(0)
    }

    #[test]
    fn every_class_keeps_its_share_within_one_row() {
        let sizes = [100, 37, 10, 7, 3, 2, 1];
        let options = SplitOptions { train: 0.8, val: 0.1, test: 0.1, seed: 7 };
        let split = split(dataset(&sizes), &options).unwrap();
        for (class, &n) in sizes.iter().enumerate() {
            let name = format!("c{class}");
            let got = [count(&split.train, &name), count(&split.val, &name), count(&split.test, &name)];
            assert_eq!(got.iter().sum::<usize>(), n, "{name}");
            assert!(got[0] >= 1, "{name} has no training row");
            for (got, fraction) in got.iter().zip(options.fractions()) {
                let exact = n as f64 * fraction;
                assert!((*got as f64 - exact).abs() <= 1.0, "{name}: {got} rows, expected about {exact}");
            }
        }
        // 100 rows at 0.8/0.1/0.1 is exact.
        assert_eq!([count(&split.train, "c0"), count(&split.val, "c0"), count(&split.test, "c0")], [80, 10, 10]);
    }

    #[test]
    fn tiny_classes_go_to_train_first() {
        assert_eq!(allocate(1, [0.8, 0.1, 0.1]), [1, 0, 0]);
        assert_eq!(allocate(2, [0.8, 0.1, 0.1]), [2, 0, 0]);
        assert_eq!(allocate(5, [0.8, 0.1, 0.1]), [4, 1, 0]);
        assert_eq!(allocate(1, [0.2, 0.4, 0.4]), [1, 0, 0]);
        assert_eq!(allocate(10, [0.7, 0.3, 0.0]), [7, 3, 0]);
        assert_eq!(allocate(0, [0.8, 0.1, 0.1]), [0, 0, 0]);
    }

    #[test]
    fn same_seed_same_split_other_seed_other_split() {
        let options = SplitOptions { seed: 1, ..SplitOptions::default() };
        let a = split(dataset(&[50, 30, 20]), &options).unwrap();
        let b = split(dataset(&[50, 30, 20]), &options).unwrap();
        assert_eq!(a, b);
        let c = split(dataset(&[50, 30, 20]), &SplitOptions { seed: 2, ..options }).unwrap();
        assert_ne!(ids(&a.test), ids(&c.test));
        // Same per-class sizes either way: only membership changes with the seed.
        assert_eq!(a.test.label_counts(), c.test.label_counts());
    }

    #[test]
    fn splits_keep_file_order_and_lose_no_row() {
        let source = dataset(&[40, 25]);
        let all: HashSet<String> = source.examples.iter().map(|e| e.id.clone()).collect();
        let split = split(source, &SplitOptions::default()).unwrap();
        let mut seen = HashSet::new();
        for part in [&split.train, &split.val, &split.test] {
            assert!(part.examples.windows(2).all(|w| w[0].line < w[1].line));
            for e in &part.examples {
                assert!(seen.insert(e.id.clone()), "{} in two splits", e.id);
            }
        }
        assert_eq!(seen, all);
    }

    #[test]
    fn a_group_never_spans_two_splits() {
        // ICD-10-like: label is the code, group is its 3-character category.
        let codes = ["E11.9", "E11.65", "I10", "J45.909", "J45.20", "N18.3", "K21.9", "M54.5", "F32.9", "G43.909"];
        let mut examples = Vec::new();
        for i in 0..400 {
            let code = codes[(i * 7 + i / 13) % codes.len()];
            let category = format!("{}{}", &code[..2], i % 9);
            examples.push(example(i + 2, code, Some(&category)));
        }
        // Some rows without a group move on their own.
        examples.push(example(500, "I10", None));
        examples.push(example(501, "I10", None));
        let total = examples.len();
        for seed in 0..20 {
            let options = SplitOptions { seed, ..SplitOptions::default() };
            let split = split(Dataset { examples: examples.clone(), problems: Vec::new() }, &options).unwrap();
            let mut home: HashMap<String, usize> = HashMap::new();
            for (part, data) in [&split.train, &split.val, &split.test].into_iter().enumerate() {
                for group in data.examples.iter().filter_map(|e| e.group.clone()) {
                    assert_eq!(*home.entry(group.clone()).or_insert(part), part, "group {group} split, seed {seed}");
                }
            }
            assert_eq!(split.train.len() + split.val.len() + split.test.len(), total);
        }
    }

    #[test]
    fn group_split_still_roughly_follows_the_fractions() {
        // 200 groups of 2 rows over 4 labels: whole groups, so counts are within one group.
        let examples: Vec<Example> =
            (0..400).map(|i| example(i + 2, &format!("c{}", (i / 2) % 4), Some(&format!("g{}", i / 2)))).collect();
        let split = split(Dataset { examples, problems: Vec::new() }, &SplitOptions::default()).unwrap();
        for class in ["c0", "c1", "c2", "c3"] {
            assert!((count(&split.train, class) as i64 - 80).abs() <= 2, "{class}");
            assert!((count(&split.val, class) as i64 - 10).abs() <= 2, "{class}");
        }
    }

    #[test]
    fn bad_fractions_and_empty_data_are_errors() {
        let bad = SplitOptions { train: 0.8, val: 0.3, test: 0.1, seed: 0 };
        assert!(matches!(split(dataset(&[5]), &bad), Err(SplitError::BadFractions { .. })));
        let no_train = SplitOptions { train: 0.0, val: 0.5, test: 0.5, seed: 0 };
        assert!(matches!(split(dataset(&[5]), &no_train), Err(SplitError::BadFractions { .. })));
        let nan = SplitOptions { train: f64::NAN, val: 0.5, test: 0.5, seed: 0 };
        assert!(matches!(split(dataset(&[5]), &nan), Err(SplitError::BadFractions { .. })));
        assert_eq!(split(Dataset::default(), &SplitOptions::default()), Err(SplitError::Empty));
    }

    #[test]
    fn source_problems_are_carried_along() {
        let mut source = dataset(&[10]);
        source.problems.push(RowProblem {
            file: "notes.csv".into(),
            line: 99,
            kind: ProblemKind::EmptyText,
            message: "column `text` is empty".into(),
        });
        let split = split(source, &SplitOptions::default()).unwrap();
        assert_eq!(split.problems.len(), 1);
    }
}
