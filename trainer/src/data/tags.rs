//! Token-classification (NER) training files: the data step of the tagging path
//! (data → tokenize/align → train → eval with `eval::entities`).
//!
//! Three layouts are read:
//! * **CoNLL** (`.conll`, `.txt`, `.tsv`, `.bio`): one `token<TAB>tag` per line, or
//!   whitespace-separated columns (`token POS chunk tag`, CoNLL-2003); the token is the first
//!   column and the tag the last. A blank line ends a sentence; `-DOCSTART-` lines are skipped
//!   (and end a sentence). A tab anywhere on a line makes the line tab-separated, so a token may
//!   hold spaces there.
//! * **Word JSONL** (`.jsonl`/`.json` whose first record has `tokens`): the Hugging Face datasets
//!   layout `{"tokens": [...], "ner_tags": [...]}` (`tags` is accepted for `ner_tags`). Tags are
//!   strings, or integers indexing [`TagLoadOptions::labels`].
//! * **Span JSONL** (first record has `text`): doccano / Label Studio exports
//!   `{"text": "...", "entities": [{"start": 0, "end": 5, "label": "PER"}]}` (`start_offset` /
//!   `end_offset` are accepted too), or doccano's older `{"text": "...", "label": [[0, 5, "PER"]]}`.
//!   Offsets count characters (Unicode scalar values, what Python's `str` indexes) unless
//!   [`TagLoadOptions::span_units`] says UTF-16 code units (JavaScript strings) or bytes; they are
//!   converted to UTF-8 byte offsets into `text`.
//!
//! Every problem is a [`TagError`] naming the file and the 1-based physical line; entities are
//! named by their 0-based index in the record's entity array, tokens by their 1-based position in
//! the sentence. No message ever contains a token, the note text or a tag that is not in the
//! caller's label set (PHI: a mistyped tag column may hold a word of the note).
//!
//! Reading is bounded: a line longer than [`TagLoadOptions::max_line_bytes`] is an error before it
//! is parsed, and so are more than [`TagLoadOptions::max_records`] records and CoNLL sentences
//! longer than [`TagLoadOptions::max_sentence_tokens`]. Nothing is preallocated from a count read
//! in the input, so memory stays proportional to the bytes actually read.
//!
//! Tag schemes ([`TagScheme`]): a tag is `O` or `<prefix>-<TYPE>` with a non-empty type; IOB2
//! allows the prefixes `B`/`I`, BIOES also `E`/`S`. [`TagScheme::validate`] always checks that
//! shape; in **strict** mode it also requires well-formed chunks (IOB2: `I-X` continues a `B-X` or
//! `I-X`; BIOES: additionally every `B-X`/`I-X` is closed by `I-X`/`E-X` of the same type). The
//! lenient default accepts an `I-X` that follows nothing, as conlleval and `seqeval` (default mode)
//! do: it starts a new entity. Conversions between schemes decode chunks that lenient way and
//! re-encode them, so they never fail on such sequences.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};

use super::table;

// ---------------------------------------------------------------------------------------
// Formats, options, examples

/// The layouts a tagging file can be read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TagFormat {
    /// `token<TAB>tag` (or whitespace columns) per line, blank lines between sentences.
    Conll,
    /// `{"tokens": [...], "ner_tags": [...]}` per line.
    WordJsonl,
    /// `{"text": "...", "entities": [...]}` per line.
    SpanJsonl,
}

impl FromStr for TagFormat {
    type Err = TagError;

    fn from_str(name: &str) -> Result<TagFormat, TagError> {
        match name.to_ascii_lowercase().as_str() {
            "conll" | "bio" => Ok(TagFormat::Conll),
            "word-jsonl" | "word_jsonl" | "hf" => Ok(TagFormat::WordJsonl),
            "span-jsonl" | "span_jsonl" | "doccano" | "spans" => Ok(TagFormat::SpanJsonl),
            _ => Err(TagError::UnknownFormat { name: name.to_string() }),
        }
    }
}

/// What the offsets of a span file count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanUnits {
    /// Unicode scalar values (Python `str` indices: doccano, Label Studio exports).
    #[default]
    Chars,
    /// UTF-16 code units (JavaScript string indices).
    Utf16,
    /// UTF-8 bytes.
    Bytes,
}

/// A tagging scheme: which prefixes a tag may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TagScheme {
    /// `B-` begins, `I-` continues.
    Iob2,
    /// `B-` begins, `I-` continues, `E-` ends, `S-` is a one-word entity.
    Bioes,
}

/// How to read a tagging file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagLoadOptions {
    /// Overrides the format implied by the extension and the first record.
    pub format: Option<TagFormat>,
    /// The full tag list (e.g. `["O", "B-PER", "I-PER"]`). When given, every tag must be in it,
    /// integer `ner_tags` index it, and span labels must be one of its entity types.
    pub labels: Option<Vec<String>>,
    /// When given, every word-level tag sequence is checked with [`TagScheme::validate`].
    pub scheme: Option<TagScheme>,
    /// Strict scheme validation (well-formed chunks only); see the module doc.
    pub strict: bool,
    /// What span offsets count.
    pub span_units: SpanUnits,
    /// Longest accepted line in bytes (a JSONL line holds a whole note).
    pub max_line_bytes: usize,
    /// Most records (sentences or JSONL objects) in one file.
    pub max_records: usize,
    /// Most tokens in one CoNLL sentence: more usually means the blank lines are missing.
    pub max_sentence_tokens: usize,
}

impl Default for TagLoadOptions {
    fn default() -> TagLoadOptions {
        TagLoadOptions {
            format: None,
            labels: None,
            scheme: None,
            strict: false,
            span_units: SpanUnits::Chars,
            max_line_bytes: 8 << 20,
            max_records: 10_000_000,
            max_sentence_tokens: 10_000,
        }
    }
}

/// One sentence with a tag per word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WordExample {
    pub tokens: Vec<String>,
    pub tags: Vec<String>,
    /// 1-based line of the first token (CoNLL) or of the record (JSONL).
    pub line: usize,
}

/// An entity as UTF-8 byte offsets into its example's text (`end_byte` exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Span {
    pub start_byte: usize,
    pub end_byte: usize,
    pub label: String,
}

/// One text with entity spans in file order (so an entity's index is its index in the file's
/// array); as loaded, spans never overlap and are never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpanExample {
    pub text: String,
    pub entities: Vec<Span>,
    /// 1-based line of the record.
    pub line: usize,
}

/// One training example of a tagging file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaggedExample {
    Words(WordExample),
    Spans(SpanExample),
}

impl TaggedExample {
    pub fn line(&self) -> usize {
        match self {
            TaggedExample::Words(w) => w.line,
            TaggedExample::Spans(s) => s.line,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors

/// Why a tag fails [`TagScheme::validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TagIssueKind {
    /// Not `O` and not `<B|I|E|S>-<TYPE>` with a non-empty type.
    Malformed,
    /// A well-formed prefix the scheme does not use (`E-`/`S-` in IOB2).
    PrefixNotInScheme,
    /// Strict mode: an `I-X` (or `E-X`) that does not continue a `B-X`/`I-X`.
    Orphan,
    /// Strict BIOES: a `B-X`/`I-X` not followed by `I-X`/`E-X`.
    Unterminated,
}

impl TagIssueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TagIssueKind::Malformed => "is not `O` or `<B|I|E|S>-<TYPE>`",
            TagIssueKind::PrefixNotInScheme => "has a prefix the scheme does not use",
            TagIssueKind::Orphan => "continues no entity of its type",
            TagIssueKind::Unterminated => "begins an entity that is never ended",
        }
    }
}

impl fmt::Display for TagIssueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tag that breaks the scheme: `position` is 0-based in the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TagIssue {
    pub position: usize,
    pub kind: TagIssueKind,
}

/// Why a span example could not become word-level tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanWordIssue {
    /// The entity starts or ends inside a word.
    BoundaryInsideWord,
    /// The entity covers only whitespace.
    NoWord,
}

/// An entity (0-based index into the example's entities) that does not fit the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SpanWordError {
    pub entity: usize,
    pub issue: SpanWordIssue,
}

/// Everything that stops a tagging file from loading. Each variant names the file and the 1-based
/// line; none carries text from the file, except a tag that is in the caller's label set.
#[derive(Debug, thiserror::Error)]
pub enum TagError {
    // === File-level ===
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    #[error(
        "{}: cannot tell the format from the extension: use .conll/.txt/.tsv/.bio or .jsonl/.json, \
         or name the format",
        path.display()
    )]
    UnknownExtension { path: PathBuf },

    #[error("unknown tagging format {name:?}: use conll, word-jsonl or span-jsonl")]
    UnknownFormat { name: String },

    #[error(
        "{}:{line}: the first record has neither `tokens` (word JSONL) nor `text` (span JSONL)",
        path.display()
    )]
    UnrecognizedRecord { path: PathBuf, line: usize },

    // === Bounds ===
    #[error("{}:{line}: line is longer than {max} bytes", path.display())]
    LineTooLong { path: PathBuf, line: usize, max: usize },

    #[error("{}:{line}: more than {max} records", path.display())]
    TooManyRecords { path: PathBuf, line: usize, max: usize },

    #[error("{}:{line}: sentence has more than {max} tokens (missing blank lines?)", path.display())]
    TooManyTokens { path: PathBuf, line: usize, max: usize },

    // === Syntax ===
    #[error("{}:{line}: not valid UTF-8 (bad byte at offset {offset} of the line)", path.display())]
    InvalidUtf8 { path: PathBuf, line: usize, offset: usize },

    #[error("{}:{line}: not valid JSON (error at column {column})", path.display())]
    InvalidJson { path: PathBuf, line: usize, column: usize },

    #[error("{}:{line}: {what}", path.display())]
    WrongShape { path: PathBuf, line: usize, what: &'static str },

    #[error("{}:{line}: object has no key `{key}`", path.display())]
    MissingKey { path: PathBuf, line: usize, key: &'static str },

    #[error("{}:{line}: `{key}` is not {expected}", path.display())]
    WrongValue { path: PathBuf, line: usize, key: &'static str, expected: &'static str },

    #[error("{}:{line}: `{key}` item {index} is not {expected}", path.display())]
    WrongType { path: PathBuf, line: usize, key: &'static str, index: usize, expected: &'static str },

    #[error("{}:{line}: a token line needs at least two columns (token and tag)", path.display())]
    MissingTag { path: PathBuf, line: usize },

    // === Tags ===
    #[error("{}:{line}: {tokens} token(s) but {tags} tag(s)", path.display())]
    LengthMismatch { path: PathBuf, line: usize, tokens: usize, tags: usize },

    #[error("{}:{line}: the tag of token {position} is not in the label set", path.display())]
    UnknownTag { path: PathBuf, line: usize, position: usize },

    #[error("{}:{line}: tag index {index} of token {position} is out of range for {labels} label(s)", path.display())]
    TagIndexOutOfRange { path: PathBuf, line: usize, position: usize, index: i64, labels: usize },

    #[error("{}:{line}: integer tags need a label list", path.display())]
    IntegerTagsWithoutLabels { path: PathBuf, line: usize },

    #[error(
        "{}:{line}: the tag of token {position}{} {kind}",
        path.display(),
        label.as_deref().map(|l| format!(" ({l})")).unwrap_or_default()
    )]
    InvalidTag { path: PathBuf, line: usize, position: usize, kind: TagIssueKind, label: Option<String> },

    // === Spans ===
    #[error(
        "{}:{line}: entity {entity}: offsets {start}..{end} are empty, reversed or past the text ({len} {units})",
        path.display()
    )]
    SpanOutOfRange { path: PathBuf, line: usize, entity: usize, start: u64, end: u64, len: usize, units: &'static str },

    #[error("{}:{line}: entity {entity}: offset {offset} is not on a character boundary", path.display())]
    SpanNotOnCharBoundary { path: PathBuf, line: usize, entity: usize, offset: u64 },

    #[error("{}:{line}: entities {first} and {second} overlap", path.display())]
    OverlappingSpans { path: PathBuf, line: usize, first: usize, second: usize },

    #[error("{}:{line}: entity {entity} has an empty label", path.display())]
    EmptyLabel { path: PathBuf, line: usize, entity: usize },

    #[error("{}:{line}: the label of entity {entity} is not an entity type of the label set", path.display())]
    UnknownSpanLabel { path: PathBuf, line: usize, entity: usize },

    #[error("{}:{line}: entity {entity}: {}", path.display(), match issue {
        SpanWordIssue::BoundaryInsideWord => "a boundary falls inside a word",
        SpanWordIssue::NoWord => "the span covers no word",
    })]
    SpanToWords { path: PathBuf, line: usize, entity: usize, issue: SpanWordIssue },
}

// ---------------------------------------------------------------------------------------
// Tag schemes

/// A parsed tag: `O`, or a prefix and a non-empty type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag<'a> {
    Outside,
    Begin(&'a str),
    Inside(&'a str),
    End(&'a str),
    Single(&'a str),
}

impl<'a> Tag<'a> {
    /// Parses `O` or `<B|I|E|S>-<TYPE>`; anything else is `None`.
    pub fn parse(tag: &'a str) -> Option<Tag<'a>> {
        if tag == "O" {
            return Some(Tag::Outside);
        }
        let (prefix, kind) = tag.split_once('-')?;
        if kind.is_empty() {
            return None;
        }
        match prefix {
            "B" => Some(Tag::Begin(kind)),
            "I" => Some(Tag::Inside(kind)),
            "E" => Some(Tag::End(kind)),
            "S" => Some(Tag::Single(kind)),
            _ => None,
        }
    }

    /// The entity type, `None` for `O`.
    pub fn kind(self) -> Option<&'a str> {
        match self {
            Tag::Outside => None,
            Tag::Begin(k) | Tag::Inside(k) | Tag::End(k) | Tag::Single(k) => Some(k),
        }
    }
}

/// A decoded chunk: words `start..end` (exclusive) of one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub start: usize,
    pub end: usize,
    pub kind: String,
}

impl TagScheme {
    /// Checks each tag's shape and prefix and, in strict mode, that chunks are well formed.
    /// Returns the first problem.
    pub fn validate<S: AsRef<str>>(self, tags: &[S], strict: bool) -> Result<(), TagIssue> {
        let mut open: Option<&str> = None; // type of a B-/I- chunk that may continue
        for (position, tag) in tags.iter().enumerate() {
            let issue = |kind| TagIssue { position, kind };
            let tag = Tag::parse(tag.as_ref()).ok_or(issue(TagIssueKind::Malformed))?;
            if self == TagScheme::Iob2 && matches!(tag, Tag::End(_) | Tag::Single(_)) {
                return Err(issue(TagIssueKind::PrefixNotInScheme));
            }
            if strict {
                let continues = matches!(tag, Tag::Inside(_) | Tag::End(_));
                if continues && open != tag.kind() {
                    return Err(issue(TagIssueKind::Orphan));
                }
                // In BIOES an open chunk must be continued or closed by the very next tag.
                if self == TagScheme::Bioes && open.is_some() && !continues {
                    return Err(TagIssue { position: position - 1, kind: TagIssueKind::Unterminated });
                }
            }
            open = match tag {
                Tag::Begin(k) | Tag::Inside(k) => Some(k),
                _ => None,
            };
        }
        if strict && self == TagScheme::Bioes && open.is_some() {
            return Err(TagIssue { position: tags.len() - 1, kind: TagIssueKind::Unterminated });
        }
        Ok(())
    }

    /// Decodes chunks leniently (any scheme's prefixes accepted): `B`/`S` start a chunk, `I`/`E`
    /// continue an open chunk of the same type or else start one, `E`/`S` close it, `O` closes
    /// it. A malformed tag is an error.
    pub fn decode<S: AsRef<str>>(tags: &[S]) -> Result<Vec<Chunk>, TagIssue> {
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut open = false;
        for (position, tag) in tags.iter().enumerate() {
            let tag = Tag::parse(tag.as_ref()).ok_or(TagIssue { position, kind: TagIssueKind::Malformed })?;
            let continues = open
                && matches!(tag, Tag::Inside(_) | Tag::End(_))
                && chunks.last().map(|c| c.kind.as_str()) == tag.kind();
            match tag {
                Tag::Outside => {}
                _ if continues => chunks.last_mut().expect("open chunk").end = position + 1,
                _ => chunks.push(Chunk { start: position, end: position + 1, kind: tag.kind().unwrap_or("").into() }),
            }
            open = matches!(tag, Tag::Begin(_) | Tag::Inside(_));
        }
        Ok(chunks)
    }

    /// Tags for `len` words holding non-overlapping `chunks` (sorted by start).
    pub fn encode(self, chunks: &[Chunk], len: usize) -> Vec<String> {
        let mut tags = vec!["O".to_string(); len];
        for chunk in chunks {
            for (i, tag) in tags.iter_mut().enumerate().take(chunk.end).skip(chunk.start) {
                let prefix = match self {
                    TagScheme::Iob2 if i == chunk.start => "B",
                    TagScheme::Iob2 => "I",
                    TagScheme::Bioes if chunk.end - chunk.start == 1 => "S",
                    TagScheme::Bioes if i == chunk.start => "B",
                    TagScheme::Bioes if i + 1 == chunk.end => "E",
                    TagScheme::Bioes => "I",
                };
                *tag = format!("{prefix}-{}", chunk.kind);
            }
        }
        tags
    }

    /// Re-tags a sequence in this scheme (via [`TagScheme::decode`], so lenient input is fine).
    pub fn convert<S: AsRef<str>>(self, tags: &[S]) -> Result<Vec<String>, TagIssue> {
        Ok(self.encode(&TagScheme::decode(tags)?, tags.len()))
    }
}

/// IOB2 → BIOES. See [`TagScheme::convert`].
pub fn iob2_to_bioes<S: AsRef<str>>(tags: &[S]) -> Result<Vec<String>, TagIssue> {
    TagScheme::Bioes.convert(tags)
}

/// BIOES → IOB2. See [`TagScheme::convert`].
pub fn bioes_to_iob2<S: AsRef<str>>(tags: &[S]) -> Result<Vec<String>, TagIssue> {
    TagScheme::Iob2.convert(tags)
}

// ---------------------------------------------------------------------------------------
// Spans → words

/// Byte ranges of the words of `text`: runs of alphanumeric characters (and marks such as
/// combining accents, i.e. anything not whitespace or punctuation), with every other
/// non-whitespace character (punctuation, symbols) a word of its own.
pub fn split_words(text: &str) -> Vec<(usize, usize)> {
    let mut words = Vec::new();
    let mut run: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || is_punct(c) {
            if let Some(start) = run.take() {
                words.push((start, i));
            }
            if !c.is_whitespace() {
                words.push((i, i + c.len_utf8()));
            }
        } else if run.is_none() {
            run = Some(i);
        }
    }
    if let Some(start) = run {
        words.push((start, text.len()));
    }
    words
}

fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation() || (!c.is_ascii() && !c.is_alphanumeric() && !is_mark(c))
}

/// Combining marks keep a word whole (e.g. `e` + U+0301).
fn is_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
        || matches!(c, '\u{200C}' | '\u{200D}' | '\u{FE0F}')
}

impl SpanExample {
    /// Word-level tags in `scheme`, with words from [`split_words`]. An entity boundary inside a
    /// word, or an entity covering only whitespace, is an error naming the entity.
    pub fn to_words(&self, scheme: TagScheme) -> Result<WordExample, SpanWordError> {
        let words = split_words(&self.text);
        let mut chunks = Vec::with_capacity(self.entities.len());
        for (entity, span) in self.entities.iter().enumerate() {
            let fail = |issue| SpanWordError { entity, issue };
            let inside = |offset: usize| words.iter().any(|&(s, e)| s < offset && offset < e);
            if inside(span.start_byte) || inside(span.end_byte) {
                return Err(fail(SpanWordIssue::BoundaryInsideWord));
            }
            let first = words.partition_point(|&(s, _)| s < span.start_byte);
            let last = words.partition_point(|&(_, e)| e <= span.end_byte);
            if last <= first {
                return Err(fail(SpanWordIssue::NoWord));
            }
            chunks.push(Chunk { start: first, end: last, kind: span.label.clone() });
        }
        Ok(WordExample {
            tokens: words.iter().map(|&(s, e)| self.text[s..e].to_string()).collect(),
            tags: scheme.encode(&chunks, words.len()),
            line: self.line,
        })
    }
}

/// Every example as words: span examples go through [`SpanExample::to_words`] in `scheme`, word
/// examples are kept as they are. `path` names the file in errors.
pub fn to_word_examples(
    examples: Vec<TaggedExample>,
    scheme: TagScheme,
    path: &Path,
) -> Result<Vec<WordExample>, TagError> {
    examples
        .into_iter()
        .map(|example| match example {
            TaggedExample::Words(words) => Ok(words),
            TaggedExample::Spans(spans) => spans.to_words(scheme).map_err(|e| TagError::SpanToWords {
                path: path.into(),
                line: spans.line,
                entity: e.entity,
                issue: e.issue,
            }),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Loading

impl TagFormat {
    /// The format implied by the extension alone: CoNLL for `.conll`/`.txt`/`.tsv`/`.bio`;
    /// `.jsonl`/`.json`/`.ndjson` need the first record ([`detect_format`]).
    pub fn from_path(path: &Path) -> Option<TagFormat> {
        match extension(path).as_deref() {
            Some("conll" | "txt" | "tsv" | "bio") => Some(TagFormat::Conll),
            _ => None,
        }
    }
}

fn extension(path: &Path) -> Option<String> {
    Some(path.extension()?.to_str()?.to_ascii_lowercase())
}

fn is_jsonl_path(path: &Path) -> bool {
    matches!(extension(path).as_deref(), Some("jsonl" | "json" | "ndjson"))
}

/// Reads a tagging file; the format comes from `options.format`, else the extension (and for
/// JSONL the first record's keys).
pub fn load_tagged(path: impl AsRef<Path>, options: &TagLoadOptions) -> Result<Vec<TaggedExample>, TagError> {
    let path = path.as_ref();
    if options.format.is_none() && TagFormat::from_path(path).is_none() && !is_jsonl_path(path) {
        return Err(TagError::UnknownExtension { path: path.into() });
    }
    let file = File::open(path).map_err(|source| TagError::Io { path: path.into(), source })?;
    read_tagged(BufReader::new(file), path, options)
}

/// Reads a tagging file from any reader; `source` names it in errors and picks the format when
/// `options.format` is `None` (by extension; JSONL by its first record).
pub fn read_tagged(
    reader: impl BufRead,
    source: &Path,
    options: &TagLoadOptions,
) -> Result<Vec<TaggedExample>, TagError> {
    let mut lines = Lines { inner: table::Lines::new(reader, source, options.max_line_bytes), path: source };
    let format = match options.format.or_else(|| TagFormat::from_path(source)) {
        Some(format) => Some(format),
        None if is_jsonl_path(source) => None,
        None => return Err(TagError::UnknownExtension { path: source.into() }),
    };
    let checker = Checker::new(source, options);
    match format {
        Some(TagFormat::Conll) => read_conll(&mut lines, &checker),
        json => read_jsonl(&mut lines, json, &checker),
    }
}

/// Looks at the first non-blank record of a JSONL file: `tokens` → word JSONL, `text` → span
/// JSONL.
pub fn detect_format(first_record: &Map<String, Value>) -> Option<TagFormat> {
    if first_record.contains_key("tokens") {
        Some(TagFormat::WordJsonl)
    } else if first_record.contains_key("text") {
        Some(TagFormat::SpanJsonl)
    } else {
        None
    }
}

/// Physical lines (the table reader's, `table.rs`) as UTF-8.
struct Lines<'p, R> {
    inner: table::Lines<'p, R>,
    path: &'p Path,
}

impl<R: BufRead> Lines<'_, R> {
    /// The next line as UTF-8 without its `\n`/`\r\n` (and without a BOM on line 1).
    fn next(&mut self) -> Result<Option<(usize, &str)>, TagError> {
        let path = self.path;
        let next = self.inner.next().map_err(|e| match e {
            table::TableError::RecordTooLong { path, line, max } => TagError::LineTooLong { path, line, max },
            table::TableError::Io { path, source } => TagError::Io { path, source },
            // `Lines` fails in no other way.
            other => TagError::Io { path: path.into(), source: io::Error::other(other.to_string()) },
        })?;
        let Some((line, bytes)) = next else { return Ok(None) };
        std::str::from_utf8(bytes).map(|text| Some((line, text))).map_err(|e| TagError::InvalidUtf8 {
            path: path.into(),
            line,
            offset: e.valid_up_to(),
        })
    }
}

/// The checks shared by every format: labels, scheme, record count.
struct Checker<'a> {
    path: &'a Path,
    options: &'a TagLoadOptions,
    labels: Option<HashSet<&'a str>>,
    types: Option<HashSet<&'a str>>,
}

impl<'a> Checker<'a> {
    fn new(path: &'a Path, options: &'a TagLoadOptions) -> Checker<'a> {
        let labels = options.labels.as_ref().map(|l| l.iter().map(String::as_str).collect::<HashSet<_>>());
        let types = options
            .labels
            .as_ref()
            .map(|l| l.iter().filter_map(|t| Tag::parse(t).and_then(Tag::kind)).collect::<HashSet<_>>());
        Checker { path, options, labels, types }
    }

    fn count(&self, records: usize, line: usize) -> Result<(), TagError> {
        if records >= self.options.max_records {
            return Err(TagError::TooManyRecords { path: self.path.into(), line, max: self.options.max_records });
        }
        Ok(())
    }

    fn words(&self, example: &WordExample) -> Result<(), TagError> {
        let (path, line) = (self.path, example.line);
        if example.tokens.len() != example.tags.len() {
            let (tokens, tags) = (example.tokens.len(), example.tags.len());
            return Err(TagError::LengthMismatch { path: path.into(), line, tokens, tags });
        }
        if let Some(labels) = &self.labels {
            if let Some(i) = example.tags.iter().position(|t| !labels.contains(t.as_str())) {
                return Err(TagError::UnknownTag { path: path.into(), line, position: i + 1 });
            }
        }
        if let Some(scheme) = self.options.scheme {
            scheme.validate(&example.tags, self.options.strict).map_err(|issue| {
                let tag = example.tags[issue.position].as_str();
                // A tag is echoed only when the caller's label set vouches that it is a label.
                let label = self.labels.as_ref().filter(|l| l.contains(tag)).map(|_| tag.to_string());
                TagError::InvalidTag { path: path.into(), line, position: issue.position + 1, kind: issue.kind, label }
            })?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// CoNLL

fn read_conll<R: BufRead>(lines: &mut Lines<R>, checker: &Checker) -> Result<Vec<TaggedExample>, TagError> {
    let mut examples = Vec::new();
    let mut current = WordExample { tokens: Vec::new(), tags: Vec::new(), line: 0 };
    let finish = |current: &mut WordExample, examples: &mut Vec<TaggedExample>| -> Result<(), TagError> {
        if current.tokens.is_empty() {
            return Ok(());
        }
        checker.count(examples.len(), current.line)?;
        let example = std::mem::replace(current, WordExample { tokens: Vec::new(), tags: Vec::new(), line: 0 });
        checker.words(&example)?;
        examples.push(TaggedExample::Words(example));
        Ok(())
    };
    let path = lines.path;
    while let Some((line, text)) = lines.next()? {
        let text = text.trim_end();
        if text.trim_start().is_empty() || text.trim_start().starts_with("-DOCSTART-") {
            finish(&mut current, &mut examples)?;
            continue;
        }
        let (token, tag) = if text.contains('\t') {
            let mut cols = text.split('\t');
            let token = cols.next().unwrap_or("").trim();
            match cols.next_back() {
                Some(tag) => (token, tag.trim()),
                None => (token, ""),
            }
        } else {
            let mut cols = text.split_whitespace();
            let token = cols.next().unwrap_or("");
            (token, cols.next_back().unwrap_or(""))
        };
        if token.is_empty() || tag.is_empty() {
            return Err(TagError::MissingTag { path: path.into(), line });
        }
        if current.tokens.is_empty() {
            current.line = line;
        }
        if current.tokens.len() >= checker.options.max_sentence_tokens {
            let max = checker.options.max_sentence_tokens;
            return Err(TagError::TooManyTokens { path: path.into(), line: current.line, max });
        }
        current.tokens.push(token.to_string());
        current.tags.push(tag.to_string());
    }
    finish(&mut current, &mut examples)?;
    Ok(examples)
}

// ---------------------------------------------------------------------------------------
// JSONL

fn read_jsonl<R: BufRead>(
    lines: &mut Lines<R>,
    mut format: Option<TagFormat>,
    checker: &Checker,
) -> Result<Vec<TaggedExample>, TagError> {
    let mut examples = Vec::new();
    let path = lines.path;
    while let Some((line, text)) = lines.next()? {
        if text.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(text).map_err(|e| TagError::InvalidJson {
            path: path.into(),
            line,
            column: e.column(),
        })?;
        let Value::Object(object) = value else {
            let what = if value.is_array() {
                "a JSON array; expected one object per line (JSON Lines)"
            } else {
                "line is JSON but not an object"
            };
            return Err(TagError::WrongShape { path: path.into(), line, what });
        };
        let format = match format {
            Some(format) => format,
            None => {
                let detected =
                    detect_format(&object).ok_or_else(|| TagError::UnrecognizedRecord { path: path.into(), line })?;
                *format.insert(detected)
            }
        };
        checker.count(examples.len(), line)?;
        let at = At { path, line };
        examples.push(match format {
            TagFormat::SpanJsonl => TaggedExample::Spans(span_record(&object, at, checker)?),
            _ => {
                let example = word_record(&object, at, checker)?;
                checker.words(&example)?;
                TaggedExample::Words(example)
            }
        });
    }
    Ok(examples)
}

/// Where a record is, for its errors.
#[derive(Clone, Copy)]
struct At<'a> {
    path: &'a Path,
    line: usize,
}

impl At<'_> {
    fn missing(self, key: &'static str) -> TagError {
        TagError::MissingKey { path: self.path.into(), line: self.line, key }
    }

    fn not(self, key: &'static str, expected: &'static str) -> TagError {
        TagError::WrongValue { path: self.path.into(), line: self.line, key, expected }
    }

    fn wrong(self, key: &'static str, index: usize, expected: &'static str) -> TagError {
        TagError::WrongType { path: self.path.into(), line: self.line, key, index, expected }
    }
}

fn array<'v>(object: &'v Map<String, Value>, key: &'static str, at: At) -> Result<&'v Vec<Value>, TagError> {
    match object.get(key) {
        None => Err(at.missing(key)),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(at.not(key, "an array")),
    }
}

fn word_record(object: &Map<String, Value>, at: At, checker: &Checker) -> Result<WordExample, TagError> {
    let tokens = array(object, "tokens", at)?;
    let (key, tags) = match object.get("ner_tags") {
        Some(_) => ("ner_tags", array(object, "ner_tags", at)?),
        None if object.contains_key("tags") => ("tags", array(object, "tags", at)?),
        None => return Err(at.missing("ner_tags")),
    };
    let tokens = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| t.as_str().map(str::to_string).ok_or_else(|| at.wrong("tokens", i, "a string")))
        .collect::<Result<Vec<_>, _>>()?;
    let labels = checker.options.labels.as_deref();
    let tags = tags
        .iter()
        .enumerate()
        .map(|(i, t)| match t {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => {
                let labels =
                    labels.ok_or_else(|| TagError::IntegerTagsWithoutLabels { path: at.path.into(), line: at.line })?;
                let index = n.as_i64().ok_or_else(|| at.wrong(key, i, "a string or an integer"))?;
                usize::try_from(index).ok().and_then(|k| labels.get(k)).cloned().ok_or_else(|| {
                    TagError::TagIndexOutOfRange {
                        path: at.path.into(),
                        line: at.line,
                        position: i + 1,
                        index,
                        labels: labels.len(),
                    }
                })
            }
            _ => Err(at.wrong(key, i, "a string or an integer")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(WordExample { tokens, tags, line: at.line })
}

/// An entity as read, before offsets are converted.
struct RawSpan {
    start: u64,
    end: u64,
    label: String,
}

fn span_record(object: &Map<String, Value>, at: At, checker: &Checker) -> Result<SpanExample, TagError> {
    let text = match object.get("text") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(at.not("text", "a string")),
        None => return Err(at.missing("text")),
    };
    let raw = if object.contains_key("entities") {
        let items = array(object, "entities", at)?;
        items.iter().enumerate().map(|(i, item)| entity_object(item, i, at)).collect::<Result<Vec<_>, _>>()?
    } else if object.contains_key("label") {
        let items = array(object, "label", at)?;
        items.iter().enumerate().map(|(i, item)| entity_triple(item, i, at)).collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new() // a text with no entities: all `O`
    };
    let offsets = Offsets::new(&text, checker.options.span_units);
    let mut spans = Vec::with_capacity(raw.len());
    for (entity, span) in raw.into_iter().enumerate() {
        let (path, line) = (at.path.into(), at.line);
        if span.label.trim().is_empty() {
            return Err(TagError::EmptyLabel { path, line, entity });
        }
        if let Some(types) = &checker.types {
            if !types.contains(span.label.as_str()) {
                return Err(TagError::UnknownSpanLabel { path, line, entity });
            }
        }
        if span.start >= span.end || span.end > offsets.len as u64 {
            let (start, end, len, units) = (span.start, span.end, offsets.len, offsets.units_name());
            return Err(TagError::SpanOutOfRange { path, line, entity, start, end, len, units });
        }
        let byte = |offset: u64| {
            offsets.byte(offset).ok_or(TagError::SpanNotOnCharBoundary { path: at.path.into(), line, entity, offset })
        };
        spans.push((entity, Span { start_byte: byte(span.start)?, end_byte: byte(span.end)?, label: span.label }));
    }
    let mut order: Vec<&(usize, Span)> = spans.iter().collect();
    order.sort_by_key(|(_, s)| (s.start_byte, s.end_byte));
    for pair in order.windows(2) {
        if pair[1].1.start_byte < pair[0].1.end_byte {
            let (first, second) = (pair[0].0.min(pair[1].0), pair[0].0.max(pair[1].0));
            return Err(TagError::OverlappingSpans { path: at.path.into(), line: at.line, first, second });
        }
    }
    Ok(SpanExample { text, entities: spans.into_iter().map(|(_, s)| s).collect(), line: at.line })
}

fn entity_object(item: &Value, index: usize, at: At) -> Result<RawSpan, TagError> {
    let Value::Object(entity) = item else {
        return Err(at.wrong("entities", index, "an object"));
    };
    let offset = |keys: [&str; 2]| keys.iter().find_map(|k| entity.get(*k)).and_then(Value::as_u64);
    let label = match entity.get("label") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(_) => return Err(at.wrong("entities", index, "an object with a string `label`")),
    };
    match (offset(["start", "start_offset"]), offset(["end", "end_offset"])) {
        (Some(start), Some(end)) => Ok(RawSpan { start, end, label }),
        _ => Err(at.wrong("entities", index, "an object with non-negative integer `start` and `end`")),
    }
}

fn entity_triple(item: &Value, index: usize, at: At) -> Result<RawSpan, TagError> {
    let expected = "a [start, end, label] triple";
    match item.as_array().map(Vec::as_slice) {
        Some([start, end, label]) => match (start.as_u64(), end.as_u64(), label) {
            (Some(start), Some(end), Value::String(label)) => Ok(RawSpan { start, end, label: label.clone() }),
            _ => Err(at.wrong("label", index, expected)),
        },
        _ => Err(at.wrong("label", index, expected)),
    }
}

/// Converts span offsets in some unit to byte offsets of one text.
struct Offsets<'t> {
    text: &'t str,
    units: SpanUnits,
    /// Byte offset of each unit boundary (`None`: inside a character), for chars and UTF-16.
    table: Vec<Option<usize>>,
    /// Offsets `0..=len` are in range.
    len: usize,
}

impl<'t> Offsets<'t> {
    fn new(text: &'t str, units: SpanUnits) -> Offsets<'t> {
        let mut table = Vec::new();
        match units {
            SpanUnits::Bytes => {}
            SpanUnits::Chars => table.extend(text.char_indices().map(|(i, _)| Some(i))),
            SpanUnits::Utf16 => {
                for (i, c) in text.char_indices() {
                    table.push(Some(i));
                    if c.len_utf16() == 2 {
                        table.push(None); // between the two halves of a surrogate pair
                    }
                }
            }
        }
        let len = if units == SpanUnits::Bytes { text.len() } else { table.len() };
        table.push(Some(text.len()));
        Offsets { text, units, table, len }
    }

    fn byte(&self, offset: u64) -> Option<usize> {
        let offset = usize::try_from(offset).ok()?;
        match self.units {
            SpanUnits::Bytes => self.text.is_char_boundary(offset).then_some(offset),
            _ => self.table.get(offset).copied().flatten(),
        }
    }

    fn units_name(&self) -> &'static str {
        match self.units {
            SpanUnits::Chars => "characters",
            SpanUnits::Utf16 => "UTF-16 code units",
            SpanUnits::Bytes => "bytes",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Reads `bytes` as if it were the file `name` (no disk: the name only picks the format).
    fn read(name: &str, bytes: &[u8], options: &TagLoadOptions) -> Result<Vec<TaggedExample>, TagError> {
        read_tagged(Cursor::new(bytes.to_vec()), Path::new(name), options)
    }

    fn words(examples: &[TaggedExample]) -> Vec<&WordExample> {
        examples
            .iter()
            .map(|e| match e {
                TaggedExample::Words(w) => w,
                TaggedExample::Spans(_) => panic!("expected word examples"),
            })
            .collect()
    }

    fn spans(examples: &[TaggedExample]) -> Vec<&SpanExample> {
        examples
            .iter()
            .map(|e| match e {
                TaggedExample::Spans(s) => s,
                TaggedExample::Words(_) => panic!("expected span examples"),
            })
            .collect()
    }

    /// The error of reading `bytes` as `name`; its message must name `name:line` and must not
    /// contain `secret` (a distinctive string from the input).
    fn error(name: &str, bytes: &[u8], options: &TagLoadOptions, line: usize, secret: &str) -> TagError {
        let err = read(name, bytes, options).expect_err("expected an error");
        let message = err.to_string();
        assert!(message.contains(&format!("{name}:{line}:")), "{message}");
        assert!(!message.contains(secret), "{message}");
        err
    }

    fn strings(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| t.to_string()).collect()
    }

    fn with_labels(labels: &[&str]) -> TagLoadOptions {
        TagLoadOptions { labels: Some(strings(labels)), ..TagLoadOptions::default() }
    }

    // ---- CoNLL ------------------------------------------------------------------------

    #[test]
    fn conll_tabs_spaces_docstart_and_sentence_lines() {
        let conll = "-DOCSTART- -X- -X- O\n\nAspirin\tB-DRUG\n81\tI-DRUG\nmg\tO\n\n\n\
                     EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n";
        let examples = read("train.conll", conll.as_bytes(), &TagLoadOptions::default()).unwrap();
        let w = words(&examples);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].tokens, ["Aspirin", "81", "mg"]);
        assert_eq!(w[0].tags, ["B-DRUG", "I-DRUG", "O"]);
        assert_eq!(w[0].line, 3);
        assert_eq!(w[1].tokens, ["EU", "rejects"]);
        assert_eq!(w[1].tags, ["B-ORG", "O"]);
        assert_eq!(w[1].line, 8);
    }

    #[test]
    fn conll_tab_columns_may_hold_spaces_and_crlf_is_stripped() {
        let conll = b"\xEF\xBB\xBFNew York\tB-LOC\r\nclinic\tO\r\n\r\nfever\tO\r\n";
        let examples = read("a.tsv", conll, &TagLoadOptions::default()).unwrap();
        let w = words(&examples);
        assert_eq!(w[0].tokens, ["New York", "clinic"]);
        assert_eq!(w[0].tags, ["B-LOC", "O"]);
        assert_eq!((w[1].tokens.clone(), w[1].line), (vec!["fever".to_string()], 4));
    }

    #[test]
    fn conll_missing_tag_names_the_line_only() {
        let err = error("a.bio", b"ok O\nZEBRAFISH\n", &TagLoadOptions::default(), 2, "ZEBRAFISH");
        assert!(matches!(err, TagError::MissingTag { line: 2, .. }));
    }

    #[test]
    fn conll_unknown_tag_is_reported_by_position_not_text() {
        let options = with_labels(&["O", "B-DRUG", "I-DRUG"]);
        let err = error("a.conll", b"x O\ny B-DRUG\nz ZEBRAFISH\n", &options, 1, "ZEBRAFISH");
        assert!(matches!(err, TagError::UnknownTag { line: 1, position: 3, .. }), "{err:?}");
    }

    #[test]
    fn conll_invalid_utf8_names_the_line() {
        let err = error("a.txt", b"a O\nb\xff\xfe O\n", &TagLoadOptions::default(), 2, "\u{fffd}");
        assert!(matches!(err, TagError::InvalidUtf8 { line: 2, offset: 1, .. }), "{err:?}");
    }

    #[test]
    fn line_cap_and_sentence_cap() {
        let options = TagLoadOptions { max_line_bytes: 16, ..TagLoadOptions::default() };
        let long = b"ok O\nZEBRAFISHZEBRAFISHZEBRAFISH O\n";
        let err = error("a.conll", long, &options, 2, "ZEBRAFISH");
        assert!(matches!(err, TagError::LineTooLong { line: 2, max: 16, .. }));
        // Exactly at the cap, with CRLF, is fine.
        assert!(read("a.conll", b"abcdefghijklmn O\r\n", &options).is_ok());

        let options = TagLoadOptions { max_sentence_tokens: 2, ..TagLoadOptions::default() };
        let err = error("a.conll", b"a O\n\nb O\nc O\nZEBRAFISH O\n", &options, 3, "ZEBRAFISH");
        assert!(matches!(err, TagError::TooManyTokens { line: 3, max: 2, .. }));
    }

    #[test]
    fn record_cap() {
        let options = TagLoadOptions { max_records: 2, ..TagLoadOptions::default() };
        let err = error("a.conll", b"a O\n\nb O\n\nZEBRAFISH O\n", &options, 5, "ZEBRAFISH");
        assert!(matches!(err, TagError::TooManyRecords { line: 5, max: 2, .. }));
        let jsonl = b"{\"tokens\": [\"a\"], \"ner_tags\": [\"O\"]}\n".repeat(3);
        let err = error("a.jsonl", &jsonl, &options, 3, "\"a\"");
        assert!(matches!(err, TagError::TooManyRecords { line: 3, .. }));
    }

    #[test]
    fn scheme_validation_in_the_loader() {
        let options = TagLoadOptions { scheme: Some(TagScheme::Iob2), ..with_labels(&["O", "B-X", "I-X", "E-X"]) };
        // Lenient IOB2: an I-X after O is fine.
        assert!(read("a.conll", b"a O\nb I-X\n", &options).is_ok());
        // E-X is in the label set, so the message may name it.
        let err = error("a.conll", b"a O\nZEBRAFISH E-X\n", &options, 1, "ZEBRAFISH");
        assert!(matches!(err, TagError::InvalidTag { position: 2, kind: TagIssueKind::PrefixNotInScheme, .. }));
        assert!(err.to_string().contains("(E-X)"), "{err}");

        let strict = TagLoadOptions { strict: true, ..options.clone() };
        let err = error("a.conll", b"a O\nZEBRAFISH I-X\n", &strict, 1, "ZEBRAFISH");
        assert!(matches!(err, TagError::InvalidTag { position: 2, kind: TagIssueKind::Orphan, .. }));

        // Without a label set a malformed tag is never echoed: it may be a word of the note.
        let bare = TagLoadOptions { scheme: Some(TagScheme::Iob2), ..TagLoadOptions::default() };
        let err = error("a.conll", b"a O\nb ZEBRAFISH\n", &bare, 1, "ZEBRAFISH");
        assert!(matches!(err, TagError::InvalidTag { position: 2, kind: TagIssueKind::Malformed, label: None, .. }));
    }

    // ---- Word JSONL -------------------------------------------------------------------

    #[test]
    fn word_jsonl_with_string_and_integer_tags() {
        let jsonl = "{\"id\": \"0\", \"tokens\": [\"Metformin\", \"500\", \"mg\"], \"ner_tags\": [1, 2, 0]}\n\
                     \n\
                     {\"tokens\": [\"Ωμέγα\"], \"ner_tags\": [\"B-DRUG\"]}\n";
        let examples = read("train.jsonl", jsonl.as_bytes(), &with_labels(&["O", "B-DRUG", "I-DRUG"])).unwrap();
        let w = words(&examples);
        assert_eq!(w[0].tags, ["B-DRUG", "I-DRUG", "O"]);
        assert_eq!((w[1].tokens[0].as_str(), w[1].line), ("Ωμέγα", 3));

        let err = error("t.jsonl", jsonl.as_bytes(), &TagLoadOptions::default(), 1, "Metformin");
        assert!(matches!(err, TagError::IntegerTagsWithoutLabels { .. }));
        let err = error("t.jsonl", jsonl.as_bytes(), &with_labels(&["O", "B-DRUG"]), 1, "Metformin");
        assert!(matches!(err, TagError::TagIndexOutOfRange { position: 2, index: 2, labels: 2, .. }), "{err:?}");
    }

    #[test]
    fn word_jsonl_length_mismatch_and_shape_errors() {
        let options = TagLoadOptions::default();
        let ok = "{\"tokens\": [\"a\"], \"ner_tags\": [\"O\"]}\n";
        let mismatch = format!("{ok}{{\"tokens\": [\"ZEBRAFISH\", \"b\"], \"ner_tags\": [\"O\"]}}\n");
        let err = error("m.jsonl", mismatch.as_bytes(), &options, 2, "ZEBRAFISH");
        assert!(matches!(err, TagError::LengthMismatch { tokens: 2, tags: 1, .. }));

        let bad_json = format!("{ok}{{\"tokens\": [\"ZEBRAFISH\"\n");
        let err = error("m.jsonl", bad_json.as_bytes(), &options, 2, "ZEBRAFISH");
        assert!(matches!(err, TagError::InvalidJson { .. }));

        let not_string = format!("{ok}{{\"tokens\": [\"ZEBRAFISH\", 3], \"ner_tags\": [\"O\", \"O\"]}}\n");
        let err = error("m.jsonl", not_string.as_bytes(), &options, 2, "ZEBRAFISH");
        assert!(matches!(err, TagError::WrongType { key: "tokens", index: 1, .. }));

        let no_tags = format!("{ok}{{\"tokens\": [\"ZEBRAFISH\"]}}\n");
        let err = error("m.jsonl", no_tags.as_bytes(), &options, 2, "ZEBRAFISH");
        assert!(matches!(err, TagError::MissingKey { key: "ner_tags", .. }));

        let err = error("m.json", b"[{\"tokens\": [\"ZEBRAFISH\"]}]\n", &options, 1, "ZEBRAFISH");
        assert!(matches!(err, TagError::WrongShape { .. }));

        let err = error("m.jsonl", b"{\"words\": [\"ZEBRAFISH\"]}\n", &options, 1, "ZEBRAFISH");
        assert!(matches!(err, TagError::UnrecognizedRecord { .. }));

        let err = error("m.jsonl", b"{\"tokens\": [\"ZEBRA\xffFISH\"]}\n", &options, 1, "ZEBRA");
        assert!(matches!(err, TagError::InvalidUtf8 { offset: 18, .. }), "{err:?}");
    }

    #[test]
    fn explicit_format_overrides_detection() {
        let options = TagLoadOptions { format: Some(TagFormat::Conll), ..TagLoadOptions::default() };
        let examples = read("x.jsonl", b"a O\n", &options).unwrap();
        assert_eq!(words(&examples)[0].tags, ["O"]);
        // A forced word format does not need the first record to say so.
        let options = TagLoadOptions { format: Some(TagFormat::WordJsonl), ..TagLoadOptions::default() };
        let err = read("x.data", b"{\"text\": \"a\"}\n", &options).unwrap_err();
        assert!(matches!(err, TagError::MissingKey { key: "tokens", .. }));
        assert!(matches!(read("x.xlsx", b"", &TagLoadOptions::default()), Err(TagError::UnknownExtension { .. })));
        assert_eq!("CoNLL".parse::<TagFormat>().unwrap(), TagFormat::Conll);
        assert!("xlsx".parse::<TagFormat>().is_err());
        assert_eq!(TagFormat::from_path(Path::new("a/B.BIO")), Some(TagFormat::Conll));
    }

    // ---- Span JSONL -------------------------------------------------------------------

    #[test]
    fn span_jsonl_character_offsets_become_byte_offsets() {
        // "Patiënt" has a two-byte character and 🌡 is four bytes (two UTF-16 units).
        let jsonl = "{\"text\": \"Patiënt 🌡 koorts, Aspirin\", \"entities\": [\
                     {\"start\": 18, \"end\": 25, \"label\": \"DRUG\"}, {\"start\": 10, \"end\": 16, \"label\": \"SYMPTOM\"}]}\n\
                     {\"text\": \"no entities\"}\n";
        let examples = read("spans.jsonl", jsonl.as_bytes(), &TagLoadOptions::default()).unwrap();
        let s = spans(&examples);
        let text = &s[0].text;
        // File order is kept.
        assert_eq!(&text[s[0].entities[0].start_byte..s[0].entities[0].end_byte], "Aspirin");
        assert_eq!(&text[s[0].entities[1].start_byte..s[0].entities[1].end_byte], "koorts");
        assert_eq!(s[0].entities[1].label, "SYMPTOM");
        assert!(s[1].entities.is_empty());

        let words = s[0].to_words(TagScheme::Bioes).unwrap();
        assert_eq!(words.tokens, ["Patiënt", "🌡", "koorts", ",", "Aspirin"]);
        assert_eq!(words.tags, ["O", "O", "S-SYMPTOM", "O", "S-DRUG"]);
    }

    #[test]
    fn span_units_utf16_and_bytes() {
        // In UTF-16 "🌡" is two units, so "fever" starts at 3.
        let jsonl = "{\"text\": \"🌡 fever\", \"entities\": [{\"start\": 3, \"end\": 8, \"label\": \"S\"}]}\n";
        let options = TagLoadOptions { span_units: SpanUnits::Utf16, ..TagLoadOptions::default() };
        let s = read("u.jsonl", jsonl.as_bytes(), &options).unwrap();
        let s = spans(&s);
        assert_eq!(&s[0].text[s[0].entities[0].start_byte..s[0].entities[0].end_byte], "fever");

        // Offset 1 in UTF-16 is inside the surrogate pair; offset 1 in bytes is inside the character.
        let jsonl =
            b"{\"text\": \"\xf0\x9f\x8c\xa1 fever\", \"entities\": [{\"start\": 1, \"end\": 3, \"label\": \"S\"}]}\n";
        let err = error("u.jsonl", jsonl, &options, 1, "fever");
        assert!(matches!(err, TagError::SpanNotOnCharBoundary { entity: 0, offset: 1, .. }));
        let options = TagLoadOptions { span_units: SpanUnits::Bytes, ..TagLoadOptions::default() };
        let err = error("u.jsonl", jsonl, &options, 1, "fever");
        assert!(matches!(err, TagError::SpanNotOnCharBoundary { entity: 0, offset: 1, .. }));
    }

    #[test]
    fn doccano_triples() {
        let jsonl = "{\"id\": 1, \"text\": \"chest pain today\", \"label\": [[0, 10, \"SYMPTOM\"]]}\n";
        let examples = read("d.jsonl", jsonl.as_bytes(), &TagLoadOptions::default()).unwrap();
        let w = spans(&examples)[0].to_words(TagScheme::Iob2).unwrap();
        assert_eq!(w.tags, ["B-SYMPTOM", "I-SYMPTOM", "O"]);
        let err = error(
            "d.jsonl",
            b"{\"text\": \"ZEBRAFISH\", \"label\": [[0, 3]]}\n",
            &TagLoadOptions::default(),
            1,
            "ZEBRA",
        );
        assert!(matches!(err, TagError::WrongType { key: "label", index: 0, .. }));
    }

    #[test]
    fn span_errors_name_line_and_entity_never_text() {
        let options = TagLoadOptions::default();
        let line = |entities: &str| {
            format!("{{\"text\": \"ok\"}}\n{{\"text\": \"ZEBRAFISH tail\", \"entities\": [{entities}]}}\n")
        };
        let e = |s: &str| {
            let err = error("s.jsonl", line(s).as_bytes(), &options, 2, "ZEBRA");
            assert!(err.to_string().contains("entity") || err.to_string().contains("entities"), "{err}");
            err
        };
        let err = e(r#"{"start": 0, "end": 4, "label": "A"}, {"start": 10, "end": 99, "label": "A"}"#);
        assert!(matches!(err, TagError::SpanOutOfRange { entity: 1, start: 10, end: 99, len: 14, .. }), "{err:?}");
        let err = e(r#"{"start": 4, "end": 4, "label": "A"}"#);
        assert!(matches!(err, TagError::SpanOutOfRange { entity: 0, .. }));
        let err = e(r#"{"start": 5, "end": 9, "label": "A"}, {"start": 0, "end": 6, "label": "B"}"#);
        assert!(matches!(err, TagError::OverlappingSpans { first: 0, second: 1, .. }), "{err:?}");
        let err = e(r#"{"start": 0, "end": 4, "label": " "}"#);
        assert!(matches!(err, TagError::EmptyLabel { entity: 0, .. }));
        let err = e(r#"{"start": -1, "end": 4, "label": "A"}"#);
        assert!(matches!(err, TagError::WrongType { key: "entities", index: 0, .. }));

        let labelled = with_labels(&["O", "B-A", "I-A"]);
        let err =
            read("s.jsonl", line(r#"{"start": 0, "end": 4, "label": "ZEBRAFISH"}"#).as_bytes(), &labelled).unwrap_err();
        assert!(matches!(err, TagError::UnknownSpanLabel { line: 2, entity: 0, .. }));
        assert!(!err.to_string().contains("ZEBRAFISH"));
    }

    #[test]
    fn span_boundary_inside_a_word_is_an_error() {
        let jsonl = "{\"text\": \"ok\"}\n{\"text\": \"ZEBRAFISH tail\", \"entities\": [\
                     {\"start\": 10, \"end\": 14, \"label\": \"A\"}, {\"start\": 0, \"end\": 5, \"label\": \"A\"}]}\n\
                     {\"text\": \"a   b\", \"entities\": [{\"start\": 1, \"end\": 4, \"label\": \"A\"}]}\n";
        let path = Path::new("w.jsonl");
        let examples = read("w.jsonl", jsonl.as_bytes(), &TagLoadOptions::default()).unwrap();
        let err = to_word_examples(examples[..2].to_vec(), TagScheme::Iob2, path).unwrap_err();
        assert!(matches!(
            err,
            TagError::SpanToWords { line: 2, entity: 1, issue: SpanWordIssue::BoundaryInsideWord, .. }
        ));
        let message = err.to_string();
        assert!(message.contains("w.jsonl:2:") && !message.contains("ZEBRA"), "{message}");
        let err = to_word_examples(examples[2..].to_vec(), TagScheme::Iob2, path).unwrap_err();
        assert!(matches!(err, TagError::SpanToWords { line: 3, entity: 0, issue: SpanWordIssue::NoWord, .. }));
    }

    #[test]
    fn split_words_keeps_byte_offsets() {
        let text = "Dr. O'Neil: 5mg\u{a0}café\u{301}!";
        let words: Vec<&str> = split_words(text).into_iter().map(|(s, e)| &text[s..e]).collect();
        assert_eq!(words, ["Dr", ".", "O", "'", "Neil", ":", "5mg", "café\u{301}", "!"]);
    }

    // ---- Schemes ----------------------------------------------------------------------

    #[test]
    fn iob2_bioes_round_trips() {
        let iob2 = strings(&["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "I-LOC", "O", "B-PER"]);
        let bioes = iob2_to_bioes(&iob2).unwrap();
        assert_eq!(bioes, ["B-PER", "E-PER", "O", "S-LOC", "B-LOC", "I-LOC", "E-LOC", "O", "S-PER"]);
        assert_eq!(bioes_to_iob2(&bioes).unwrap(), iob2);
        assert!(TagScheme::Bioes.validate(&bioes, true).is_ok());
        assert!(TagScheme::Iob2.validate(&iob2, true).is_ok());
        assert!(iob2_to_bioes::<&str>(&[]).unwrap().is_empty());

        // Lenient input: an orphan I- starts an entity, a type change starts another.
        let lenient = strings(&["I-X", "I-X", "I-Y", "O", "E-X"]);
        assert_eq!(iob2_to_bioes(&lenient).unwrap(), ["B-X", "E-X", "S-Y", "O", "S-X"]);
        assert_eq!(bioes_to_iob2(&lenient).unwrap(), ["B-X", "I-X", "B-Y", "O", "B-X"]);
        let err = iob2_to_bioes(&strings(&["O", "B-"])).unwrap_err();
        assert_eq!(err, TagIssue { position: 1, kind: TagIssueKind::Malformed });
    }

    #[test]
    fn round_trips_over_random_well_formed_sequences() {
        // A tiny LCG: deterministic, no extra dependency.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        for _ in 0..500 {
            let len = next(12) as usize;
            let mut chunks = Vec::new();
            let mut i = 0;
            while i < len {
                if next(2) == 0 {
                    let end = (i + 1 + next(3) as usize).min(len);
                    chunks.push(Chunk { start: i, end, kind: ["A", "B"][next(2) as usize].into() });
                    i = end;
                } else {
                    i += 1;
                }
            }
            let iob2 = TagScheme::Iob2.encode(&chunks, len);
            let bioes = TagScheme::Bioes.encode(&chunks, len);
            assert_eq!(TagScheme::decode(&iob2).unwrap(), chunks, "{iob2:?}");
            assert_eq!(TagScheme::decode(&bioes).unwrap(), chunks, "{bioes:?}");
            assert_eq!(iob2_to_bioes(&iob2).unwrap(), bioes);
            assert_eq!(bioes_to_iob2(&bioes).unwrap(), iob2);
            assert!(TagScheme::Iob2.validate(&iob2, true).is_ok());
            assert!(TagScheme::Bioes.validate(&bioes, true).is_ok());
        }
    }

    #[test]
    fn validate_lenient_and_strict() {
        let check = |scheme: TagScheme, tags: &[&str], strict: bool| scheme.validate(tags, strict).err();
        let issue = |position, kind| Some(TagIssue { position, kind });
        use TagIssueKind::*;
        assert_eq!(check(TagScheme::Iob2, &["O", "I-X"], false), None);
        assert_eq!(check(TagScheme::Iob2, &["O", "I-X"], true), issue(1, Orphan));
        assert_eq!(check(TagScheme::Iob2, &["B-X", "I-Y"], true), issue(1, Orphan));
        assert_eq!(check(TagScheme::Iob2, &["B-X", "S-X"], false), issue(1, PrefixNotInScheme));
        assert_eq!(check(TagScheme::Iob2, &["B-X", "x"], false), issue(1, Malformed));
        assert_eq!(check(TagScheme::Iob2, &["b-X"], false), issue(0, Malformed));
        assert_eq!(check(TagScheme::Bioes, &["E-X"], false), None);
        assert_eq!(check(TagScheme::Bioes, &["E-X"], true), issue(0, Orphan));
        assert_eq!(check(TagScheme::Bioes, &["B-X", "O"], true), issue(0, Unterminated));
        assert_eq!(check(TagScheme::Bioes, &["S-X", "B-X", "I-X"], true), issue(2, Unterminated));
        assert_eq!(check(TagScheme::Bioes, &["B-X", "I-X", "E-X", "S-Y"], true), None);
    }
}
