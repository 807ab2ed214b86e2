//! Loading labelled notes: the first step of the training path
//! (data → scrub → tokenize/window → train → eval → export).
//!
//! A data set is a CSV, TSV or JSONL file with one note per row: a text column, a label
//! column (optionally several labels joined by a separator) and optional id and group
//! columns. Every row that cannot be used becomes a [`RowProblem`] with the file and the
//! 1-based physical line, so a user can fix the file instead of wondering why 3% of it
//! vanished. Nothing here ever puts note text into a message (PHI): only column names,
//! line numbers, lengths and byte offsets.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

use super::table::{CellValue, ColumnSpec, Row, RowError, RowErrorKind, TableError, TableReader, TableSpec};

/// The file formats a data set can be read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Tsv,
    Jsonl,
}

impl Format {
    /// The format implied by a path's extension (case-insensitive): `.csv`, `.tsv`/`.tab`,
    /// `.jsonl`/`.ndjson`.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "tsv" | "tab" => Some(Format::Tsv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

impl FromStr for Format {
    type Err = DatasetError;

    fn from_str(name: &str) -> Result<Format, DatasetError> {
        match name.to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "tsv" | "tab" => Ok(Format::Tsv),
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            _ => Err(DatasetError::UnknownFormat { name: name.to_string() }),
        }
    }
}

/// How to read a data set file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Overrides the format implied by the file's extension.
    pub format: Option<Format>,
    pub text_col: String,
    pub label_col: String,
    /// Column holding a row id; without it a row's id is its line number.
    pub id_col: Option<String>,
    /// Column holding a group key (e.g. an ICD-10 category) that the split keeps together.
    pub group_col: Option<String>,
    /// Splits a label cell into several labels (multi-label), e.g. `"|"`.
    pub label_separator: Option<String>,
    /// Fail on the first unusable row instead of recording it in [`Dataset::problems`].
    pub strict: bool,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            format: None,
            text_col: "text".to_string(),
            label_col: "label".to_string(),
            id_col: None,
            group_col: None,
            label_separator: None,
            strict: false,
        }
    }
}

/// One usable labelled note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    pub id: String,
    pub text: String,
    /// At least one label, trimmed, without duplicates, in file order.
    pub labels: Vec<String>,
    /// 1-based physical line where the row starts.
    pub line: usize,
    /// Rows sharing a group always land in the same split.
    pub group: Option<String>,
}

/// Why a row could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The text is empty or only whitespace.
    EmptyText,
    /// The label is missing, null or empty (after splitting and trimming).
    MissingLabel,
    /// The id or group value is empty.
    EmptyField,
    /// A JSONL object lacks one of the configured columns.
    MissingColumn,
    /// A JSONL value has a type that cannot be used (e.g. a number as text).
    WrongType,
    /// A JSONL line that is not a JSON object.
    InvalidJson,
    /// A used field (CSV/TSV) or a whole line (JSONL) is not valid UTF-8.
    InvalidUtf8,
    /// A CSV/TSV row whose number of fields differs from the header's.
    WrongFieldCount,
    /// A label that the training set does not have (see [`Dataset::filter_unseen_labels`]).
    UnseenLabel,
    /// Pairs made from labels (`train embed --pairs-from`): no other row shares a value.
    Unpaired,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::EmptyText => "empty_text",
            ProblemKind::MissingLabel => "missing_label",
            ProblemKind::EmptyField => "empty_field",
            ProblemKind::MissingColumn => "missing_column",
            ProblemKind::WrongType => "wrong_type",
            ProblemKind::InvalidJson => "invalid_json",
            ProblemKind::InvalidUtf8 => "invalid_utf8",
            ProblemKind::WrongFieldCount => "wrong_field_count",
            ProblemKind::UnseenLabel => "unseen_label",
            ProblemKind::Unpaired => "unpaired",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row that was left out, and why. `message` names columns, lengths and offsets only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowProblem {
    pub file: PathBuf,
    pub line: usize,
    pub kind: ProblemKind,
    pub message: String,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file.display(), self.line, self.kind, self.message)
    }
}

/// Errors that stop a data set from loading at all. Row-level trouble is a [`RowProblem`]
/// instead, unless [`LoadOptions::strict`] is set.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    #[error(
        "{}: cannot tell the format from the extension: use .csv, .tsv/.tab or .jsonl/.ndjson, \
         or name the format",
        path.display()
    )]
    UnknownExtension { path: PathBuf },

    #[error("unknown data format {name:?}: use csv, tsv or jsonl")]
    UnknownFormat { name: String },

    /// The header's cells are not echoed: in a file without a header row they are a note.
    #[error(
        "{}:1: no column `{column}` in the header row, which has {columns} column(s); is the first row a header?",
        path.display()
    )]
    MissingColumn { path: PathBuf, column: String, columns: usize },

    /// A table that cannot be read past a line (malformed record, a size or row cap).
    #[error(transparent)]
    Table(TableError),

    /// The first unusable row, in strict mode.
    #[error("{0}")]
    Row(RowProblem),
}

/// Usable rows and the rows that were left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dataset {
    pub examples: Vec<Example>,
    pub problems: Vec<RowProblem>,
}

impl Dataset {
    /// Reads a data set; the format comes from `options.format` or else the extension.
    pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Dataset, DatasetError> {
        let path = path.as_ref();
        let format = match options.format {
            Some(format) => format,
            None => Format::from_path(path).ok_or_else(|| DatasetError::UnknownExtension { path: path.into() })?,
        };
        let file = File::open(path).map_err(|source| DatasetError::Io { path: path.into(), source })?;
        Dataset::from_reader(file, format, path, options)
    }

    /// Reads a data set in `format` from any reader; `source` names it in errors and
    /// problems. [`Dataset::load`] and the fuzz target (fuzz/fuzz_targets/tables.rs) share it.
    pub fn from_reader(
        reader: impl Read,
        format: Format,
        source: &Path,
        options: &LoadOptions,
    ) -> Result<Dataset, DatasetError> {
        let mut sink = Sink { file: source, strict: options.strict, dataset: Dataset::default() };
        load_rows(reader, format, options, &mut sink)?;
        Ok(sink.dataset)
    }

    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// How many rows carry each label (a multi-label row counts once per label).
    pub fn label_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for label in self.examples.iter().flat_map(|e| &e.labels) {
            *counts.entry(label.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Moves rows with any label outside `known` (the training labels) into `problems` as
    /// `unseen_label`, reported against `file`. A model cannot predict a class it never saw,
    /// so scoring such rows would only blur the metrics. Returns how many rows moved.
    pub fn filter_unseen_labels(&mut self, known: &[String], file: &Path) -> usize {
        let known: HashSet<&str> = known.iter().map(String::as_str).collect();
        let (kept, unseen): (Vec<Example>, Vec<Example>) = std::mem::take(&mut self.examples)
            .into_iter()
            .partition(|e| e.labels.iter().all(|l| known.contains(l.as_str())));
        self.examples = kept;
        let moved = unseen.len();
        self.problems.extend(unseen.into_iter().map(|e| {
            // Counted, not named: a report or log must not carry cell values.
            let missing = e.labels.iter().filter(|l| !known.contains(l.as_str())).count();
            RowProblem {
                file: file.into(),
                line: e.line,
                kind: ProblemKind::UnseenLabel,
                message: format!("{missing} label(s) not in the training set"),
            }
        }));
        moved
    }

    /// Sets each example's group from a function, e.g. the 3-character category of an
    /// ICD-10 label, when the file has no group column.
    pub fn assign_groups(&mut self, group_of: impl Fn(&Example) -> Option<String>) {
        for example in &mut self.examples {
            example.group = group_of(example);
        }
    }
}

/// Why one row was left out, before it is tied to a file and line.
#[derive(Debug)]
struct Issue {
    kind: ProblemKind,
    message: String,
}

impl Issue {
    fn new(kind: ProblemKind, message: impl Into<String>) -> Issue {
        Issue { kind, message: message.into() }
    }
}

/// Collects rows and problems; in strict mode the first problem ends the load.
struct Sink<'a> {
    file: &'a Path,
    strict: bool,
    dataset: Dataset,
}

impl Sink<'_> {
    fn push(&mut self, line: usize, row: Result<Example, Issue>) -> Result<(), DatasetError> {
        match row {
            Ok(example) => self.dataset.examples.push(example),
            Err(issue) => {
                let problem = RowProblem { file: self.file.into(), line, kind: issue.kind, message: issue.message };
                if self.strict {
                    return Err(DatasetError::Row(problem));
                }
                self.dataset.problems.push(problem);
            }
        }
        Ok(())
    }
}

/// The raw values of one row, before the checks shared by every format.
struct RawRow {
    text: String,
    labels: Vec<String>,
    id: Option<String>,
    group: Option<String>,
}

fn build_example(row: RawRow, line: usize, options: &LoadOptions) -> Result<Example, Issue> {
    if row.text.trim().is_empty() {
        let message = format!("column `{}` is empty ({} bytes of whitespace)", options.text_col, row.text.len());
        return Err(Issue::new(ProblemKind::EmptyText, message));
    }
    if row.labels.is_empty() {
        return Err(Issue::new(ProblemKind::MissingLabel, format!("column `{}` is empty", options.label_col)));
    }
    let id = match (row.id, &options.id_col) {
        (Some(id), Some(col)) => non_empty(id, col)?,
        _ => line.to_string(),
    };
    let group = match (row.group, &options.group_col) {
        (Some(group), Some(col)) => Some(non_empty(group, col)?),
        _ => None,
    };
    Ok(Example { id, text: row.text, labels: row.labels, line, group })
}

/// An id or group key, trimmed; empty ones are a problem because an empty group would
/// silently merge unrelated rows.
fn non_empty(value: String, col: &str) -> Result<String, Issue> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Issue::new(ProblemKind::EmptyField, format!("column `{col}` is empty")));
    }
    Ok(trimmed.to_string())
}

/// Splits a label cell on the separator (if any), trims each part and drops empty parts
/// and repeats, so `"a | b|a|"` is `["a", "b"]`.
fn split_labels(cell: &str, separator: Option<&str>) -> Vec<String> {
    let parts: Box<dyn Iterator<Item = &str>> = match separator {
        Some(sep) if !sep.is_empty() => Box::new(cell.split(sep)),
        _ => Box::new(std::iter::once(cell)),
    };
    let mut labels: Vec<String> = Vec::new();
    for part in parts.map(str::trim).filter(|p| !p.is_empty()) {
        if !labels.iter().any(|l| l == part) {
            labels.push(part.to_string());
        }
    }
    labels
}

// ---------------------------------------------------------------------------------------
// Reading (data::table)

impl From<TableError> for DatasetError {
    fn from(err: TableError) -> DatasetError {
        match err {
            TableError::Io { path, source } => DatasetError::Io { path, source },
            TableError::UnknownExtension { path } => DatasetError::UnknownExtension { path },
            TableError::MissingColumn { path, column, columns } => {
                DatasetError::MissingColumn { path, column, columns }
            }
            other => DatasetError::Table(other),
        }
    }
}

/// A row the table reader refused, as the data set's problem kinds.
fn row_issue(err: &RowError) -> Issue {
    let kind = match err.kind {
        RowErrorKind::WrongFieldCount { .. } => ProblemKind::WrongFieldCount,
        RowErrorKind::InvalidUtf8 { .. } => ProblemKind::InvalidUtf8,
        RowErrorKind::InvalidJson { .. } | RowErrorKind::NotAnObject => ProblemKind::InvalidJson,
        RowErrorKind::MissingKey => ProblemKind::MissingColumn,
        RowErrorKind::WrongType { .. } => ProblemKind::WrongType,
    };
    Issue::new(kind, err.message())
}

fn load_rows(reader: impl Read, format: Format, options: &LoadOptions, sink: &mut Sink) -> Result<(), DatasetError> {
    // Text, label, then the optional id and group columns, all required when configured.
    let mut columns = vec![ColumnSpec::text(&options.text_col), ColumnSpec::list(&options.label_col)];
    columns.extend(options.id_col.as_deref().map(ColumnSpec::scalar));
    columns.extend(options.group_col.as_deref().map(ColumnSpec::scalar));
    let mut table = TableReader::new(reader, format, sink.file, &TableSpec::new(columns))?;
    while let Some(row) = table.next_row()? {
        let (line, row) = match row {
            Ok(row) => {
                let line = row.line;
                (line, raw_row(row, options).and_then(|raw| build_example(raw, line, options)))
            }
            Err(err) => (err.line, Err(row_issue(&err))),
        };
        sink.push(line, row)?;
    }
    Ok(())
}

fn raw_row(row: Row, options: &LoadOptions) -> Result<RawRow, Issue> {
    let mut cells = row.cells.into_iter().map(|c| c.value);
    let text = match cells.next() {
        Some(CellValue::Str(text)) => text,
        _ => String::new(),
    };
    // A JSONL array is already multi-label, so it is not split again.
    let labels = match cells.next() {
        Some(CellValue::Str(label)) => split_labels(&label, options.label_separator.as_deref()),
        Some(CellValue::List(items)) => {
            let mut labels: Vec<String> = Vec::new();
            for label in items.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
                if !labels.iter().any(|l| l == label) {
                    labels.push(label.to_string());
                }
            }
            labels
        }
        _ => Vec::new(),
    };
    let mut scalar = || match cells.next() {
        Some(CellValue::Str(value)) => Some(value),
        _ => None,
    };
    let id = options.id_col.as_ref().and_then(|_| scalar());
    let group = options.group_col.as_ref().and_then(|_| scalar());
    Ok(RawRow { text, labels, id, group })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Writes `bytes` to a fresh file in the temp dir; the name is unique per process and
    /// call so parallel tests never share a file.
    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("bedside-dataset-{}-{n}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn load(name: &str, bytes: &[u8], options: &LoadOptions) -> Dataset {
        let path = temp_file(name, bytes);
        let dataset = Dataset::load(&path, options).unwrap();
        std::fs::remove_file(&path).unwrap();
        dataset
    }

    /// The only problem of a data set, checked against the file's name.
    fn only_problem(dataset: &Dataset) -> &RowProblem {
        assert_eq!(dataset.problems.len(), 1, "{:?}", dataset.problems);
        &dataset.problems[0]
    }

    #[test]
    fn csv_rows_load_with_physical_line_numbers() {
        let csv = b"id,text,label\nn1,chest pain,cardio\nn2,\"cough,\nthen fever\",pulm\nn3,rash,derm\n";
        let options = LoadOptions { id_col: Some("id".into()), ..LoadOptions::default() };
        let dataset = load("ok.csv", csv, &options);
        assert!(dataset.problems.is_empty());
        let lines: Vec<usize> = dataset.examples.iter().map(|e| e.line).collect();
        // The quoted field spans lines 3-4, so the next record starts on line 5.
        assert_eq!(lines, [2, 3, 5]);
        assert_eq!(dataset.examples[1].id, "n2");
        assert_eq!(dataset.examples[1].text, "cough,\nthen fever");
        assert_eq!(dataset.examples[1].labels, ["pulm"]);
        assert_eq!(dataset.examples[0].group, None);
    }

    #[test]
    fn id_defaults_to_the_line_number() {
        let dataset = load("noid.csv", b"text,label\na,x\nb,y\n", &LoadOptions::default());
        let ids: Vec<&str> = dataset.examples.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["2", "3"]);
    }

    #[test]
    fn empty_text_is_reported_with_its_line() {
        let dataset = load("empty.csv", b"text,label\nfine,a\n   ,b\nalso fine,a\n", &LoadOptions::default());
        assert_eq!(dataset.len(), 2);
        let problem = only_problem(&dataset);
        assert_eq!((problem.kind, problem.line), (ProblemKind::EmptyText, 3));
        assert!(problem.file.to_string_lossy().ends_with("empty.csv"));
    }

    #[test]
    fn missing_label_is_reported_with_its_line() {
        let dataset = load("nolabel.csv", b"text,label\nfine,a\nno label here,\n", &LoadOptions::default());
        let problem = only_problem(&dataset);
        assert_eq!((problem.kind, problem.line), (ProblemKind::MissingLabel, 3));
    }

    #[test]
    fn separator_only_label_is_missing() {
        let options = LoadOptions { label_separator: Some("|".into()), ..LoadOptions::default() };
        let dataset = load("sep.csv", b"text,label\nnote, | |\n", &options);
        let problem = only_problem(&dataset);
        assert_eq!((problem.kind, problem.line), (ProblemKind::MissingLabel, 2));
    }

    #[test]
    fn empty_id_or_group_is_reported() {
        let options =
            LoadOptions { id_col: Some("id".into()), group_col: Some("cat".into()), ..LoadOptions::default() };
        let dataset = load("fields.csv", b"id,text,label,cat\n1,a,x,E11\n,b,x,E11\n3,c,y, \n", &options);
        assert_eq!(dataset.len(), 1);
        assert_eq!(dataset.examples[0].group.as_deref(), Some("E11"));
        let found: Vec<(ProblemKind, usize)> = dataset.problems.iter().map(|p| (p.kind, p.line)).collect();
        assert_eq!(found, [(ProblemKind::EmptyField, 3), (ProblemKind::EmptyField, 4)]);
        assert!(dataset.problems[0].message.contains("`id`"));
        assert!(dataset.problems[1].message.contains("`cat`"));
    }

    #[test]
    fn wrong_field_count_is_reported_with_its_line() {
        let csv = b"text,label\nok,a\ntoo,many,fields\nshort\nok again,b\n";
        let dataset = load("width.csv", csv, &LoadOptions::default());
        assert_eq!(dataset.len(), 2);
        let found: Vec<(ProblemKind, usize)> = dataset.problems.iter().map(|p| (p.kind, p.line)).collect();
        assert_eq!(found, [(ProblemKind::WrongFieldCount, 3), (ProblemKind::WrongFieldCount, 4)]);
        assert_eq!(dataset.problems[0].message, "row has 3 fields, the header has 2");
    }

    #[test]
    fn invalid_utf8_in_csv_is_reported_without_panicking() {
        let csv = b"text,label,notes\nok,a,x\nbad \xff\xfe text,a,x\nok,b,\xff\n";
        let dataset = load("bytes.csv", csv, &LoadOptions::default());
        // The stray byte in the unused `notes` column on line 4 does not cost the row.
        assert_eq!(dataset.len(), 2);
        let problem = only_problem(&dataset);
        assert_eq!((problem.kind, problem.line), (ProblemKind::InvalidUtf8, 3));
        assert_eq!(problem.message, "column `text` is not valid UTF-8 (bad byte at offset 4 of 11)");
    }

    #[test]
    fn problem_messages_never_contain_note_text() {
        let csv = b"text,label\nSECRET PATIENT NAME,\nSECRET \xff,a\nSECRET,x,y\n";
        let dataset = load("phi.csv", csv, &LoadOptions::default());
        assert_eq!(dataset.problems.len(), 3);
        for problem in &dataset.problems {
            assert!(!problem.to_string().contains("SECRET"), "{problem}");
        }
    }

    #[test]
    fn missing_header_column_is_an_error_naming_file_and_column_count() {
        let path = temp_file("cols.csv", b"note,diagnosis\na,b\n");
        let err = Dataset::load(&path, &LoadOptions::default()).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(&err, DatasetError::MissingColumn { column, columns: 2, .. } if column == "text"));
        let message = err.to_string();
        assert!(message.contains("cols.csv:1") && message.contains("2 column(s)"), "{message}");
        // Header cells are never echoed: without a header row they are a note.
        assert!(!message.contains("note") && !message.contains("diagnosis"), "{message}");
    }

    #[test]
    fn missing_id_column_is_an_error_even_when_not_strict() {
        let path = temp_file("idcol.csv", b"text,label\na,b\n");
        let options = LoadOptions { id_col: Some("id".into()), ..LoadOptions::default() };
        let err = Dataset::load(&path, &options).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, DatasetError::MissingColumn { column, .. } if column == "id"));
    }

    #[test]
    fn strict_mode_fails_on_the_first_problem() {
        let path = temp_file("strict.csv", b"text,label\nok,a\n,b\nok,\n");
        let options = LoadOptions { strict: true, ..LoadOptions::default() };
        let err = Dataset::load(&path, &options).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        let DatasetError::Row(problem) = &err else { panic!("expected a row error, got {err:?}") };
        assert_eq!((problem.kind, problem.line), (ProblemKind::EmptyText, 3));
        assert!(err.to_string().contains("strict.csv:3: empty_text"), "{err}");
    }

    #[test]
    fn multi_label_cells_are_split_trimmed_and_deduplicated() {
        let options = LoadOptions { label_separator: Some("|".into()), ..LoadOptions::default() };
        let dataset = load("multi.csv", b"text,label\nnote one, E11.9 | I10 |E11.9\nnote two,I10\n", &options);
        assert_eq!(dataset.examples[0].labels, ["E11.9", "I10"]);
        assert_eq!(dataset.examples[1].labels, ["I10"]);
        let counts = dataset.label_counts();
        assert_eq!(counts.get("I10"), Some(&2));
        assert_eq!(counts.get("E11.9"), Some(&1));
    }

    #[test]
    fn without_a_separator_the_label_is_one_trimmed_string() {
        let dataset = load("single.csv", b"text,label\nnote, a|b \n", &LoadOptions::default());
        assert_eq!(dataset.examples[0].labels, ["a|b"]);
    }

    #[test]
    fn tsv_loads_by_extension_with_custom_columns() {
        let tsv = b"note_id\tbody\tdx\n7\tpain, left knee\tortho\n8\t\tortho\n";
        let options = LoadOptions {
            text_col: "body".into(),
            label_col: "dx".into(),
            id_col: Some("note_id".into()),
            ..LoadOptions::default()
        };
        let dataset = load("notes.tsv", tsv, &options);
        assert_eq!(dataset.len(), 1);
        assert_eq!(dataset.examples[0].text, "pain, left knee");
        assert_eq!(dataset.examples[0].id, "7");
        let problem = only_problem(&dataset);
        assert_eq!((problem.kind, problem.line), (ProblemKind::EmptyText, 3));
    }

    #[test]
    fn explicit_format_overrides_the_extension() {
        let options = LoadOptions { format: Some(Format::Tsv), ..LoadOptions::default() };
        let dataset = load("notes.txt", b"text\tlabel\na, b\tx\n", &options);
        assert_eq!(dataset.examples[0].text, "a, b");
        assert_eq!("JSONL".parse::<Format>().unwrap(), Format::Jsonl);
        assert!("xlsx".parse::<Format>().is_err());
    }

    #[test]
    fn unknown_extension_is_an_error() {
        let err = Dataset::load("notes.xlsx", &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, DatasetError::UnknownExtension { .. }));
        assert_eq!(Format::from_path(Path::new("a/B.NDJSON")), Some(Format::Jsonl));
        assert_eq!(Format::from_path(Path::new("a/b.tab")), Some(Format::Tsv));
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let path = std::env::temp_dir().join("bedside-dataset-does-not-exist.csv");
        let err = Dataset::load(&path, &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, DatasetError::Io { .. }));
        assert!(err.to_string().contains("bedside-dataset-does-not-exist.csv"));
    }

    #[test]
    fn csv_with_a_byte_order_mark_finds_the_first_column() {
        let dataset = load("bom.csv", b"\xEF\xBB\xBFtext,label\na,b\n", &LoadOptions::default());
        assert_eq!(dataset.len(), 1);
    }

    #[test]
    fn jsonl_with_unicode_and_a_bad_line() {
        let jsonl = "{\"text\": \"Patiënt heeft koorts 🌡️, 発熱\", \"label\": \"fever\"}\n\
                     {\"text\": \"broken\", \"label\": \n\
                     \n\
                     {\"text\": \"Ωμέγα\", \"label\": [\"a\", \" b \", \"a\"], \"id\": 12}\n";
        let dataset = load("uni.jsonl", jsonl.as_bytes(), &LoadOptions::default());
        assert_eq!(dataset.len(), 2);
        assert_eq!(dataset.examples[0].text, "Patiënt heeft koorts 🌡️, 発熱");
        assert_eq!((dataset.examples[1].line, dataset.examples[1].labels.clone()), (4, vec!["a".into(), "b".into()]));
        let problem = only_problem(&dataset);
        assert_eq!((problem.kind, problem.line), (ProblemKind::InvalidJson, 2));
        assert!(!problem.message.contains("broken"));
    }

    #[test]
    fn jsonl_missing_key_wrong_type_and_null_label() {
        let jsonl = b"{\"label\": \"a\"}\n{\"text\": 5, \"label\": \"a\"}\n{\"text\": \"x\", \"label\": null}\n\
                      [1, 2]\n{\"text\": \"x\", \"label\": 1}\n";
        let dataset = load("kinds.jsonl", jsonl, &LoadOptions::default());
        let found: Vec<(ProblemKind, usize)> = dataset.problems.iter().map(|p| (p.kind, p.line)).collect();
        assert_eq!(
            found,
            [
                (ProblemKind::MissingColumn, 1),
                (ProblemKind::WrongType, 2),
                (ProblemKind::MissingLabel, 3),
                (ProblemKind::InvalidJson, 4),
            ]
        );
        // Numeric labels are common (0/1 targets) and read as their decimal text.
        assert_eq!(dataset.examples[0].labels, ["1"]);
        assert_eq!(dataset.examples[0].line, 5);
    }

    #[test]
    fn jsonl_invalid_utf8_line_is_reported() {
        let jsonl = b"{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \"\xc3\x28\", \"label\": \"a\"}\n";
        let dataset = load("bytes.ndjson", jsonl, &LoadOptions::default());
        assert_eq!(dataset.len(), 1);
        let problem = only_problem(&dataset);
        assert_eq!((problem.kind, problem.line), (ProblemKind::InvalidUtf8, 2));
    }

    #[test]
    fn jsonl_groups_and_strict_mode() {
        let jsonl = b"{\"text\": \"a\", \"label\": \"E11.9\", \"cat\": \"E11\"}\n{\"text\": \"b\", \"label\": \"x\"}\n";
        let options = LoadOptions { group_col: Some("cat".into()), ..LoadOptions::default() };
        let dataset = load("groups.jsonl", jsonl, &options);
        assert_eq!(dataset.examples[0].group.as_deref(), Some("E11"));
        assert_eq!((only_problem(&dataset).kind, only_problem(&dataset).line), (ProblemKind::MissingColumn, 2));

        let path = temp_file("strict.jsonl", jsonl);
        let err = Dataset::load(&path, &LoadOptions { strict: true, ..options }).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, DatasetError::Row(RowProblem { line: 2, kind: ProblemKind::MissingColumn, .. })));
    }

    #[test]
    fn unseen_labels_move_to_problems() {
        let csv = b"text,label\na,x\nb,y\nc,z\nd,x|z\n";
        let options = LoadOptions { label_separator: Some("|".into()), ..LoadOptions::default() };
        let mut dataset = load("val.csv", csv, &options);
        let moved = dataset.filter_unseen_labels(&["x".to_string(), "y".to_string()], Path::new("val.csv"));
        assert_eq!(moved, 2);
        let kept: Vec<usize> = dataset.examples.iter().map(|e| e.line).collect();
        assert_eq!(kept, [2, 3]);
        let found: Vec<(ProblemKind, usize)> = dataset.problems.iter().map(|p| (p.kind, p.line)).collect();
        assert_eq!(found, [(ProblemKind::UnseenLabel, 4), (ProblemKind::UnseenLabel, 5)]);
        assert_eq!(dataset.problems[1].message, "1 label(s) not in the training set");
        assert_eq!(dataset.problems[1].file, Path::new("val.csv"));
    }

    #[test]
    fn groups_can_come_from_a_function() {
        let mut dataset = load("icd.csv", b"text,label\na,E11.9\nb,E11.65\nc,I10\n", &LoadOptions::default());
        dataset.assign_groups(|e| e.labels[0].get(..3).map(str::to_string));
        let groups: Vec<Option<&str>> = dataset.examples.iter().map(|e| e.group.as_deref()).collect();
        assert_eq!(groups, [Some("E11"), Some("E11"), Some("I10")]);
    }

    #[test]
    fn problem_kinds_serialize_as_snake_case() {
        assert_eq!(serde_json::to_string(&ProblemKind::WrongFieldCount).unwrap(), "\"wrong_field_count\"");
        assert_eq!(ProblemKind::UnseenLabel.to_string(), "unseen_label");
    }
}
