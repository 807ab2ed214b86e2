//! The one reader of input tables: CSV, TSV and JSONL files of rows with named columns.
//!
//! Every command that reads a table of notes, pairs, triplets, documents or judgements reads
//! it here, so they all agree on these rules:
//!
//! * **Format** by extension (case-insensitive): `.csv`, `.tsv`/`.tab`, `.jsonl`/`.ndjson`
//!   ([`Format::from_path`]), unless the caller names one.
//! * **Header** (CSV/TSV): the first record. Its cells are trimmed and decoded lossily, and a
//!   column is found by **exact, case-sensitive** name (the first of a [`ColumnSpec`]'s names
//!   that the header has; the first matching header cell if it repeats). A missing required
//!   column ends the read ([`TableError::MissingColumn`]). JSONL has no header: a missing
//!   required key is a [`RowError`] of that line.
//! * **Lines** are 1-based physical lines, the header being line 1. A row's line is where it
//!   starts; a quoted CSV cell spanning lines moves the next row down by as many lines.
//!   `\n` and `\r\n` both end a line.
//! * **Blank lines** hold no row (CSV/TSV: empty lines; JSONL: lines of ASCII whitespace) and
//!   are skipped without a problem; they still count as lines.
//! * **BOM**: a UTF-8 byte-order mark at the start of the file is dropped.
//! * **UTF-8**: the cells a caller uses (every cell with [`TableSpec::all_cells`]) and every
//!   JSONL line must be UTF-8; otherwise a [`RowErrorKind::InvalidUtf8`] names the file,
//!   line, column and byte offset.
//! * **Row shape**: a CSV/TSV row with another number of fields than the header is a
//!   [`RowErrorKind::WrongFieldCount`]; a JSONL line must be a JSON object.
//! * **Values** (JSONL): a text column takes a string; a scalar column a string, number or
//!   boolean (as its JSON text); a list column also an array of those. `null` reads as an
//!   empty cell, as an empty CSV cell does. A key that is absent is [`CellValue::Absent`]
//!   for an optional column and a [`RowErrorKind::MissingKey`] for a required one.
//! * **Empty cells** are returned as they are (`""`): what empty means (an unusable text, an
//!   id that is an error) is the caller's rule; every caller refuses an empty id in a column
//!   the file has, and numbers rows by their line only when the file has no id column.
//! * **Bounds** ([`Limits`]): a JSONL line or CSV record longer than `max_record_bytes`, a
//!   cell longer than `max_cell_bytes` and more than `max_rows` rows end the read with an
//!   error naming the line. Nothing is preallocated from the input, so memory stays within a
//!   small multiple of the largest record.
//!
//! Messages name the file, the line and the column, never a cell's value or a header cell
//! (in a file without a header row the first row is a note).

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use csv::ByteRecord;
use serde_json::Value;

use super::dataset::Format;

/// What a column holds, which matters for JSONL values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// A string (a note, a query): numbers and booleans are a wrong type.
    Text,
    /// A string, number or boolean (ids, labels, scores, group keys).
    Scalar,
    /// A scalar or an array of scalars (multi-label cells).
    List,
}

/// A column to read: the names it may have (the first one is used in messages), whether a
/// file without it is an error, and what its JSONL values may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub names: Vec<String>,
    pub required: bool,
    pub kind: CellKind,
}

impl ColumnSpec {
    /// A required text column.
    pub fn text(name: &str) -> ColumnSpec {
        ColumnSpec { names: vec![name.to_string()], required: true, kind: CellKind::Text }
    }

    /// A required scalar column.
    pub fn scalar(name: &str) -> ColumnSpec {
        ColumnSpec { names: vec![name.to_string()], required: true, kind: CellKind::Scalar }
    }

    /// A required column of scalars or arrays of scalars.
    pub fn list(name: &str) -> ColumnSpec {
        ColumnSpec { names: vec![name.to_string()], required: true, kind: CellKind::List }
    }

    /// The same column, which a file may lack.
    pub fn optional(self) -> ColumnSpec {
        ColumnSpec { required: false, ..self }
    }

    /// Other names the column may have (tried in order after the first).
    pub fn aliases(mut self, aliases: &[&str]) -> ColumnSpec {
        self.names.extend(aliases.iter().map(|a| a.to_string()));
        self
    }

    /// The name used in messages.
    pub fn name(&self) -> &str {
        &self.names[0]
    }
}

/// Bounds on what one table may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One JSONL line or one CSV/TSV record (all of its physical lines), without the newline.
    pub max_record_bytes: usize,
    /// One cell (CSV/TSV field; JSONL string or array of strings).
    pub max_cell_bytes: usize,
    /// Data rows (the header and blank lines do not count).
    pub max_rows: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_record_bytes: 16 << 20, max_cell_bytes: 8 << 20, max_rows: 10_000_000 }
    }
}

/// What to read from a table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableSpec {
    pub columns: Vec<ColumnSpec>,
    pub limits: Limits,
    /// CSV/TSV: also return every field of each row ([`Row::fields`]), all checked for UTF-8
    /// (for commands that write the table back, e.g. `deid`).
    pub all_cells: bool,
}

impl TableSpec {
    pub fn new(columns: Vec<ColumnSpec>) -> TableSpec {
        TableSpec { columns, ..TableSpec::default() }
    }
}

/// A cell's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellValue {
    /// An optional column the file (CSV/TSV) or the object (JSONL) does not have.
    Absent,
    /// The cell as text; `null` reads as `""`.
    Str(String),
    /// A JSONL array (list columns only), each item as text.
    List(Vec<String>),
}

/// One requested column of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// The name the column was found under (one of its spec's names), or the spec's first
    /// name when absent.
    pub column: String,
    pub value: CellValue,
}

impl Cell {
    /// The text of a [`CellValue::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            CellValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_absent(&self) -> bool {
        self.value == CellValue::Absent
    }
}

/// One data row: where it starts and its cells, in the order of [`TableSpec::columns`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: usize,
    pub cells: Vec<Cell>,
    /// Every field of a CSV/TSV row when [`TableSpec::all_cells`] is set; else empty.
    pub fields: Vec<String>,
}

/// Why one row cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowErrorKind {
    /// CSV/TSV: the row's fields against the header's.
    WrongFieldCount { found: usize, expected: usize },
    /// The column's cell (or, for JSONL, the whole line when `column` is `None`) is not UTF-8.
    InvalidUtf8 { offset: usize, len: usize },
    /// JSONL: not JSON; the 1-based column of the syntax error.
    InvalidJson { at: usize },
    /// JSONL: JSON, but not an object.
    NotAnObject,
    /// JSONL: the object lacks a required column.
    MissingKey,
    /// JSONL: a value of a type the column cannot take.
    WrongType { found: &'static str, expected: &'static str },
}

impl RowErrorKind {
    /// A short snake_case name, for tests and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            RowErrorKind::WrongFieldCount { .. } => "wrong_field_count",
            RowErrorKind::InvalidUtf8 { .. } => "invalid_utf8",
            RowErrorKind::InvalidJson { .. } => "invalid_json",
            RowErrorKind::NotAnObject => "not_an_object",
            RowErrorKind::MissingKey => "missing_column",
            RowErrorKind::WrongType { .. } => "wrong_type",
        }
    }
}

/// A row that cannot be read. Names the file, line and column, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub path: PathBuf,
    pub line: usize,
    pub column: Option<String>,
    pub kind: RowErrorKind,
}

impl RowError {
    /// The message without the `file:line: ` prefix.
    pub fn message(&self) -> String {
        let column = self.column.as_deref().unwrap_or("");
        match &self.kind {
            RowErrorKind::WrongFieldCount { found, expected } => {
                format!("row has {found} fields, the header has {expected}")
            }
            RowErrorKind::InvalidUtf8 { offset, len } if self.column.is_some() => {
                format!("column `{column}` is not valid UTF-8 (bad byte at offset {offset} of {len})")
            }
            RowErrorKind::InvalidUtf8 { offset, len } => {
                format!("line is not valid UTF-8 (bad byte at offset {offset} of {len})")
            }
            RowErrorKind::InvalidJson { at } => format!("not valid JSON (error at column {at})"),
            RowErrorKind::NotAnObject => "line is JSON but not an object".to_string(),
            RowErrorKind::MissingKey => format!("object has no key `{column}`"),
            RowErrorKind::WrongType { found, expected } => format!("column `{column}` is {found}, expected {expected}"),
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message())
    }
}

impl std::error::Error for RowError {}

/// What stops a table from being read at all (or, from [`read_all`], its first bad row).
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    #[error(
        "{}: cannot tell the format from the extension: use .csv, .tsv/.tab or .jsonl/.ndjson",
        path.display()
    )]
    UnknownExtension { path: PathBuf },

    /// The header's cells are not echoed: in a file without a header row they are a note.
    #[error(
        "{}:1: no column `{column}` in the header row, which has {columns} column(s); is the first row a header?",
        path.display()
    )]
    MissingColumn { path: PathBuf, column: String, columns: usize },

    /// CSV/TSV syntax the reader cannot get past (rare: the reader is lenient with quotes).
    #[error("{}:{line}: malformed record", path.display())]
    Malformed { path: PathBuf, line: usize },

    #[error("{}:{line}: record is longer than {max} bytes", path.display())]
    RecordTooLong { path: PathBuf, line: usize, max: usize },

    #[error("{}:{line}: column `{column}` is longer than {max} bytes", path.display())]
    CellTooLong { path: PathBuf, line: usize, column: String, max: usize },

    #[error("{}:{line}: more than {max} rows", path.display())]
    TooManyRows { path: PathBuf, line: usize, max: usize },

    #[error("{0}")]
    Row(RowError),
}

impl TableError {
    /// A short snake_case name, for tests and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            TableError::Io { .. } => "io",
            TableError::UnknownExtension { .. } => "unknown_extension",
            TableError::MissingColumn { .. } => "missing_column",
            TableError::Malformed { .. } => "malformed",
            TableError::RecordTooLong { .. } => "record_too_long",
            TableError::CellTooLong { .. } => "cell_too_long",
            TableError::TooManyRows { .. } => "too_many_rows",
            TableError::Row(row) => row.kind.as_str(),
        }
    }

    /// The line the error is about (0 when it is about the whole file).
    pub fn line(&self) -> usize {
        match self {
            TableError::Io { .. } | TableError::UnknownExtension { .. } => 0,
            TableError::MissingColumn { .. } => 1,
            TableError::Malformed { line, .. }
            | TableError::RecordTooLong { line, .. }
            | TableError::CellTooLong { line, .. }
            | TableError::TooManyRows { line, .. } => *line,
            TableError::Row(row) => row.line,
        }
    }

    /// The column the error is about, if any.
    pub fn column(&self) -> Option<&str> {
        match self {
            TableError::MissingColumn { column, .. } | TableError::CellTooLong { column, .. } => Some(column),
            TableError::Row(row) => row.column.as_deref(),
            _ => None,
        }
    }
}

/// The format named, or else the one the extension implies.
pub fn format_of(path: &Path, format: Option<Format>) -> Result<Format, TableError> {
    match format {
        Some(format) => Ok(format),
        None => Format::from_path(path).ok_or_else(|| TableError::UnknownExtension { path: path.into() }),
    }
}

/// Opens a table file (format as [`format_of`]) and reads its header.
pub fn open(path: &Path, format: Option<Format>, spec: &TableSpec) -> Result<TableReader<File>, TableError> {
    let format = format_of(path, format)?;
    let file = File::open(path).map_err(|source| TableError::Io { path: path.into(), source })?;
    TableReader::new(file, format, path, spec)
}

/// Every row of a table, the first bad row being the error (for readers where a silently
/// shorter table would change the result).
pub fn read_all(reader: impl Read, format: Format, path: &Path, spec: &TableSpec) -> Result<Vec<Row>, TableError> {
    let mut table = TableReader::new(reader, format, path, spec)?;
    let mut rows = Vec::new();
    while let Some(row) = table.next_row()? {
        rows.push(row.map_err(TableError::Row)?);
    }
    Ok(rows)
}

/// The column names of a table: a CSV/TSV header (trimmed), or the keys of a JSONL file's
/// first non-blank line (none when it is not a JSON object; reading the rows reports it).
pub fn column_names(path: &Path, format: Option<Format>) -> Result<Vec<String>, TableError> {
    let table = open(path, format, &TableSpec::default())?;
    if format_of(path, format)? != Format::Jsonl {
        return Ok(table.header().to_vec());
    }
    let Inner::Jsonl { mut reader, .. } = table.inner else { unreachable!("a JSONL table") };
    let limits = table.spec.limits;
    let mut lines = Lines { reader: &mut reader, path, line: 0, buf: Vec::new(), max: limits.max_record_bytes };
    while let Some((_, bytes)) = lines.next()? {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return Ok(match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(object)) => object.keys().cloned().collect(),
            _ => Vec::new(),
        });
    }
    Ok(Vec::new())
}

enum Inner<R: Read> {
    Csv {
        reader: csv::Reader<Windowed<R>>,
        window: Rc<RefCell<Window>>,
        record: ByteRecord,
        /// Per spec column: the name found and its index in the header.
        positions: Vec<Option<(String, usize)>>,
        width: usize,
    },
    Jsonl {
        reader: BufReader<R>,
        line: usize,
        buf: Vec<u8>,
    },
}

/// Reads a table row by row. Each row is `Ok` or a [`RowError`] (a caller that keeps going
/// records it); a [`TableError`] ends the read.
pub struct TableReader<R: Read> {
    path: PathBuf,
    spec: TableSpec,
    header: Vec<String>,
    rows: usize,
    inner: Inner<R>,
}

impl<R: Read> TableReader<R> {
    /// Starts reading `reader` in `format`; `path` names the table in errors. Reads the
    /// header of a CSV/TSV table and checks the required columns.
    pub fn new(reader: R, format: Format, path: &Path, spec: &TableSpec) -> Result<TableReader<R>, TableError> {
        let (inner, header) = match format {
            Format::Csv | Format::Tsv => {
                let delimiter = if format == Format::Csv { b',' } else { b'\t' };
                // `flexible`: a row with another width is a row error, not the end of the read.
                // The csv crate drops a leading UTF-8 BOM and skips empty lines. Its record
                // positions are taken before it skips the `\n` of a `\r\n` and blank lines, so
                // the line comes from the bytes themselves ([`Window`]).
                let window = Rc::new(RefCell::new(Window::default()));
                let source = Windowed { inner: reader, window: Rc::clone(&window) };
                let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(source);
                let headers = reader.byte_headers().map_err(|e| csv_error(e, path))?.clone();
                check_record(&headers, 1, path, &spec.limits)?;
                let header: Vec<String> =
                    headers.iter().map(|h| String::from_utf8_lossy(h).trim().to_string()).collect();
                let mut positions = Vec::with_capacity(spec.columns.len());
                for column in &spec.columns {
                    let found =
                        column.names.iter().find_map(|n| header.iter().position(|h| h == n).map(|i| (n.clone(), i)));
                    if found.is_none() && column.required {
                        return Err(TableError::MissingColumn {
                            path: path.into(),
                            column: column.name().to_string(),
                            columns: header.len(),
                        });
                    }
                    positions.push(found);
                }
                let width = header.len();
                (Inner::Csv { reader, window, record: ByteRecord::new(), positions, width }, header)
            }
            Format::Jsonl => (Inner::Jsonl { reader: BufReader::new(reader), line: 0, buf: Vec::new() }, Vec::new()),
        };
        Ok(TableReader { path: path.into(), spec: spec.clone(), header, rows: 0, inner })
    }

    /// The CSV/TSV header's names, trimmed (empty for JSONL).
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// The next row, `None` at the end.
    pub fn next_row(&mut self) -> Result<Option<Result<Row, RowError>>, TableError> {
        let path = self.path.as_path();
        let spec = &self.spec;
        match &mut self.inner {
            Inner::Csv { reader, window, record, positions, width } => {
                if !reader.read_byte_record(record).map_err(|e| csv_error(e, path))? {
                    return Ok(None);
                }
                let line = window.borrow_mut().line_at(record.position().map_or(0, |p| p.byte()));
                count_row(&mut self.rows, line, path, &spec.limits)?;
                check_record(record, line, path, &spec.limits)?;
                Ok(Some(csv_row(record, line, positions, *width, path, spec)))
            }
            Inner::Jsonl { reader, line, buf } => {
                let mut lines =
                    Lines { reader, path, line: *line, buf: std::mem::take(buf), max: spec.limits.max_record_bytes };
                let result = loop {
                    let Some((line, bytes)) = lines.next()? else { break None };
                    // Blank lines (a trailing newline, spacing) hold no row.
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    break Some((line, jsonl_row(bytes, line, path, spec)));
                };
                *line = lines.line;
                *buf = lines.buf;
                match result {
                    None => Ok(None),
                    Some((line, row)) => {
                        count_row(&mut self.rows, line, path, &spec.limits)?;
                        Ok(Some(row?))
                    }
                }
            }
        }
    }
}

/// The bytes the csv reader has been handed since the start of the last record, with the
/// number of `\n` before them: enough to find the line a record starts on.
#[derive(Default)]
struct Window {
    /// Offset in the input of `bytes[0]`.
    start: u64,
    /// `\n` bytes before `start`.
    newlines: usize,
    bytes: Vec<u8>,
}

impl Window {
    /// The 1-based line of the record the csv reader placed at `offset`: past the line ends
    /// (`\r`, `\n`) it had not skipped yet. Forgets the bytes before it.
    fn line_at(&mut self, offset: u64) -> usize {
        let from = (offset.saturating_sub(self.start) as usize).min(self.bytes.len());
        let skip = self.bytes[from..].iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
        let to = from + skip;
        self.newlines += self.bytes[..to].iter().filter(|&&b| b == b'\n').count();
        self.bytes.drain(..to);
        self.start += to as u64;
        self.newlines + 1
    }
}

/// The input, copying what it reads into a [`Window`].
struct Windowed<R> {
    inner: R,
    window: Rc<RefCell<Window>>,
}

impl<R: Read> Read for Windowed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.window.borrow_mut().bytes.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

fn count_row(rows: &mut usize, line: usize, path: &Path, limits: &Limits) -> Result<(), TableError> {
    if *rows >= limits.max_rows {
        return Err(TableError::TooManyRows { path: path.into(), line, max: limits.max_rows });
    }
    *rows += 1;
    Ok(())
}

/// The record and cell caps on a CSV/TSV record (cells are named by position: a header cell
/// may be a note).
fn check_record(record: &ByteRecord, line: usize, path: &Path, limits: &Limits) -> Result<(), TableError> {
    if record.as_slice().len() > limits.max_record_bytes {
        return Err(TableError::RecordTooLong { path: path.into(), line, max: limits.max_record_bytes });
    }
    if let Some(i) = record.iter().position(|f| f.len() > limits.max_cell_bytes) {
        let column = format!("#{}", i + 1);
        return Err(TableError::CellTooLong { path: path.into(), line, column, max: limits.max_cell_bytes });
    }
    Ok(())
}

/// csv errors reduced to their kind and position: the crate's own messages are safe today,
/// but building ours keeps cell values out by construction.
fn csv_error(err: csv::Error, path: &Path) -> TableError {
    let line = err.position().map_or(0, |p| p.line() as usize);
    match err.into_kind() {
        csv::ErrorKind::Io(source) => TableError::Io { path: path.into(), source },
        _ => TableError::Malformed { path: path.into(), line },
    }
}

fn utf8<'b>(bytes: &'b [u8], line: usize, column: &str, path: &Path) -> Result<&'b str, RowError> {
    std::str::from_utf8(bytes).map_err(|e| RowError {
        path: path.into(),
        line,
        column: Some(column.to_string()),
        kind: RowErrorKind::InvalidUtf8 { offset: e.valid_up_to(), len: bytes.len() },
    })
}

fn csv_row(
    record: &ByteRecord,
    line: usize,
    positions: &[Option<(String, usize)>],
    width: usize,
    path: &Path,
    spec: &TableSpec,
) -> Result<Row, RowError> {
    if record.len() != width {
        let kind = RowErrorKind::WrongFieldCount { found: record.len(), expected: width };
        return Err(RowError { path: path.into(), line, column: None, kind });
    }
    let mut cells = Vec::with_capacity(positions.len());
    for (column, position) in spec.columns.iter().zip(positions) {
        cells.push(match position {
            Some((name, i)) => {
                Cell { column: name.clone(), value: CellValue::Str(utf8(&record[*i], line, name, path)?.to_string()) }
            }
            None => Cell { column: column.name().to_string(), value: CellValue::Absent },
        });
    }
    let mut fields = Vec::new();
    if spec.all_cells {
        fields.reserve(record.len());
        for (i, field) in record.iter().enumerate() {
            let name = match positions.iter().flatten().find(|(_, p)| *p == i) {
                Some((name, _)) => name.clone(),
                None => format!("#{}", i + 1),
            };
            fields.push(utf8(field, line, &name, path)?.to_string());
        }
    }
    Ok(Row { line, cells, fields })
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn jsonl_row(bytes: &[u8], line: usize, path: &Path, spec: &TableSpec) -> Result<Result<Row, RowError>, TableError> {
    let error = |column: Option<&str>, kind: RowErrorKind| RowError {
        path: path.into(),
        line,
        column: column.map(str::to_string),
        kind,
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return Ok(Err(error(None, RowErrorKind::InvalidUtf8 { offset: e.valid_up_to(), len: bytes.len() }))),
    };
    // Only the error's position is kept: serde_json's messages are about syntax, but that is
    // the crate's choice, not a guarantee.
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => return Ok(Err(error(None, RowErrorKind::InvalidJson { at: e.column() }))),
    };
    let Value::Object(object) = value else { return Ok(Err(error(None, RowErrorKind::NotAnObject))) };
    let mut cells = Vec::with_capacity(spec.columns.len());
    for column in &spec.columns {
        let found = column.names.iter().find_map(|n| object.get(n).map(|v| (n, v)));
        let Some((name, value)) = found else {
            if column.required {
                return Ok(Err(error(Some(column.name()), RowErrorKind::MissingKey)));
            }
            cells.push(Cell { column: column.name().to_string(), value: CellValue::Absent });
            continue;
        };
        let wrong = |expected: &'static str| {
            Ok(Err(error(Some(name), RowErrorKind::WrongType { found: type_name(value), expected })))
        };
        let value = match (column.kind, value) {
            (_, Value::Null) => CellValue::Str(String::new()),
            (_, Value::String(s)) => CellValue::Str(s.clone()),
            (CellKind::Text, _) => return wrong("a string"),
            (CellKind::Scalar | CellKind::List, Value::Number(_) | Value::Bool(_)) => {
                CellValue::Str(scalar_string(value).expect("a scalar"))
            }
            (CellKind::List, Value::Array(items)) => {
                let mut list = Vec::new();
                for item in items {
                    match scalar_string(item) {
                        Some(s) => list.push(s),
                        None => return wrong("a string or an array of strings"),
                    }
                }
                CellValue::List(list)
            }
            (CellKind::Scalar, _) => return wrong("a string or a number"),
            (CellKind::List, _) => return wrong("a string or an array of strings"),
        };
        let size = match &value {
            CellValue::Str(s) => s.len(),
            CellValue::List(items) => items.iter().map(String::len).sum(),
            CellValue::Absent => 0,
        };
        if size > spec.limits.max_cell_bytes {
            let max = spec.limits.max_cell_bytes;
            return Err(TableError::CellTooLong { path: path.into(), line, column: name.clone(), max });
        }
        cells.push(Cell { column: name.clone(), value });
    }
    Ok(Ok(Row { line, cells, fields: Vec::new() }))
}

/// Physical lines with the record cap applied before a line is kept in memory whole. Also
/// what `tags.rs` reads CoNLL and JSONL tag files with.
pub(crate) struct Lines<'p, R> {
    reader: R,
    pub(crate) path: &'p Path,
    line: usize,
    buf: Vec<u8>,
    max: usize,
}

impl<'p, R: BufRead> Lines<'p, R> {
    /// Lines of `reader` (named `path` in errors), each at most `max` bytes.
    pub(crate) fn new(reader: R, path: &'p Path, max: usize) -> Self {
        Lines { reader, path, line: 0, buf: Vec::new(), max }
    }
}

impl<R: BufRead> Lines<'_, R> {
    /// The next line's bytes without its `\n`/`\r\n` (and without a BOM on line 1).
    pub(crate) fn next(&mut self) -> Result<Option<(usize, &[u8])>, TableError> {
        self.buf.clear();
        let limit = self.max.saturating_add(2) as u64; // room for "\r\n"
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| TableError::Io { path: self.path.into(), source })?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        let mut bytes: &[u8] = &self.buf;
        bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if bytes.len() > self.max || (read as u64 == limit && !self.buf.ends_with(b"\n")) {
            return Err(TableError::RecordTooLong { path: self.path.into(), line: self.line, max: self.max });
        }
        if self.line == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        Ok(Some((self.line, bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `\xNN` escapes as raw bytes (for the non-UTF-8 cases).
    fn unescape(content: &str) -> Vec<u8> {
        let bytes = content.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i..].starts_with(b"\\x") && i + 4 <= bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 4;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    fn spec_of(case: &Value) -> TableSpec {
        let columns = case["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let name = c["name"].as_str().unwrap();
                let mut column = match c["kind"].as_str().unwrap_or("text") {
                    "text" => ColumnSpec::text(name),
                    "scalar" => ColumnSpec::scalar(name),
                    "list" => ColumnSpec::list(name),
                    other => panic!("kind {other}"),
                };
                if let Some(aliases) = c["aliases"].as_array() {
                    let aliases: Vec<&str> = aliases.iter().map(|a| a.as_str().unwrap()).collect();
                    column = column.aliases(&aliases);
                }
                if c["required"] == Value::Bool(false) {
                    column = column.optional();
                }
                column
            })
            .collect();
        let mut spec = TableSpec::new(columns);
        spec.all_cells = case["all_cells"].as_bool().unwrap_or(false);
        let limit = |key: &str, default: usize| case["limits"][key].as_u64().map_or(default, |v| v as usize);
        spec.limits = Limits {
            max_record_bytes: limit("max_record_bytes", spec.limits.max_record_bytes),
            max_cell_bytes: limit("max_cell_bytes", spec.limits.max_cell_bytes),
            max_rows: limit("max_rows", spec.limits.max_rows),
        };
        spec
    }

    fn cell_json(cell: &Cell) -> Value {
        match &cell.value {
            CellValue::Absent => Value::Null,
            CellValue::Str(s) => Value::String(s.clone()),
            CellValue::List(items) => Value::from(items.clone()),
        }
    }

    fn error_json(kind: &str, line: usize, column: Option<&str>) -> Value {
        serde_json::json!({"kind": kind, "line": line, "column": column})
    }

    #[test]
    fn shared_table_cases() {
        let fixture: Value = serde_json::from_str(include_str!("../../../tests/fixtures/tables.json")).unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert!(cases.len() >= 30);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let content = case["content"].as_str().unwrap();
            let bytes =
                if case["escaped"] == Value::Bool(true) { unescape(content) } else { content.as_bytes().to_vec() };
            let format: Format = case["format"].as_str().unwrap().parse().unwrap();
            let path = Path::new("case.table");
            let spec = spec_of(case);
            let mut rows = Vec::new();
            let mut row_errors = Vec::new();
            let result = (|| {
                let mut table = TableReader::new(bytes.as_slice(), format, path, &spec)?;
                while let Some(row) = table.next_row()? {
                    match row {
                        Ok(row) => rows.push(serde_json::json!({
                            "line": row.line,
                            "cells": row.cells.iter().map(cell_json).collect::<Vec<_>>(),
                        })),
                        Err(err) => {
                            let message = err.to_string();
                            assert!(message.starts_with(&format!("case.table:{}: ", err.line)), "{name}: {message}");
                            row_errors.push(error_json(err.kind.as_str(), err.line, err.column.as_deref()));
                        }
                    }
                }
                Ok::<(), TableError>(())
            })();
            match &case["error"] {
                Value::Null => {
                    if let Err(err) = result {
                        panic!("{name}: unexpected error {err}");
                    }
                    assert_eq!(Value::from(rows), case["rows"], "{name}: rows");
                    let want = case.get("row_errors").cloned().unwrap_or(Value::Array(Vec::new()));
                    assert_eq!(Value::from(row_errors), want, "{name}: row errors");
                }
                want => {
                    let err = result.expect_err(name);
                    assert_eq!(&error_json(err.kind(), err.line(), err.column()), want, "{name}: {err}");
                    assert!(err.to_string().starts_with("case.table"), "{name}: {err}");
                }
            }
        }
    }

    #[test]
    fn messages_never_contain_cell_values() {
        let sentinel = "Jane Q Patient MRN 1234567";
        let tables: [(Format, String); 6] = [
            (Format::Csv, format!("{sentinel},label\nx,y\n")),
            (Format::Csv, format!("text,label\n{sentinel},a,b\n")),
            (Format::Csv, format!("text,label\n\"{sentinel} \u{FFFD}\",a\n").replace('\u{FFFD}', "\u{0}")),
            (Format::Jsonl, format!("{{\"text\": \"{sentinel}\", \"label\": {{\"{sentinel}\": 1}}}}\n")),
            (Format::Jsonl, format!("{{\"text\": \"{sentinel}\", \n")),
            (Format::Jsonl, format!("[\"{sentinel}\"]\n")),
        ];
        let spec = TableSpec::new(vec![ColumnSpec::text("text"), ColumnSpec::scalar("label")]);
        for (format, content) in tables {
            let message = match read_all(content.as_bytes(), format, Path::new("t"), &spec) {
                Err(err) => err.to_string(),
                Ok(rows) => {
                    assert_eq!(rows.len(), 1, "{content:?}");
                    continue;
                }
            };
            assert!(!message.contains("Jane") && !message.contains("1234567"), "{message}");
        }
        let mut bytes = b"text\n".to_vec();
        bytes.extend_from_slice(sentinel.as_bytes());
        bytes.extend_from_slice(b"\xff\n");
        let err = read_all(
            bytes.as_slice(),
            Format::Csv,
            Path::new("t.csv"),
            &TableSpec::new(vec![ColumnSpec::text("text")]),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "t.csv:2: column `text` is not valid UTF-8 (bad byte at offset 26 of 27)");
    }

    #[test]
    fn column_names_of_each_format() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("t.csv");
        std::fs::write(&csv, "\u{feff}anchor, positive ,negative\nx,y,z\n").unwrap();
        assert_eq!(column_names(&csv, None).unwrap(), ["anchor", "positive", "negative"]);
        let jsonl = dir.path().join("t.jsonl");
        std::fs::write(&jsonl, "\n{\"b\": 1, \"a\": 2}\n").unwrap();
        let mut keys = column_names(&jsonl, None).unwrap();
        keys.sort();
        assert_eq!(keys, ["a", "b"]);
        let bad = dir.path().join("b.jsonl");
        std::fs::write(&bad, "not json\n").unwrap();
        assert!(column_names(&bad, None).unwrap().is_empty());
        assert_eq!(column_names(Path::new("x.xlsx"), None).unwrap_err().kind(), "unknown_extension");
    }
}
