// Reading notes and documents from local files (CSV, TSV, TXT, JSONL) and writing result CSVs.
//
// The tables follow the CLI's one table reader (trainer/src/data/table.rs) rule for rule, and
// are checked on its shared cases (tests/fixtures/tables.json, tests/wasm/tables.test.mjs):
//
// * Format by extension (case-insensitive): .csv, .tsv/.tab, .jsonl/.ndjson (and .txt, one
//   document per line, as `bedside search --corpus`).
// * Header (CSV/TSV): the first record; its cells trimmed (Rust's `trim`) and decoded lossily;
//   a column is found by exact, case-sensitive name. A missing required column ends the read
//   on line 1. JSONL has no header: a missing required key is an error of that line.
// * Lines: 1-based physical lines counted by `\n` (`\r\n` ends a line too; a lone `\r` ends a
//   record as in the csv crate but is no new line); the header is line 1; a row's line is where
//   it starts. Blank lines hold no row and still count.
// * A leading UTF-8 byte-order mark is dropped. The cells used (JSONL: every line) must be
//   UTF-8: the content is read as bytes (a string is taken as already decoded).
// * CSV/TSV quoting as the csv crate: a quote opens a quoted cell only at the start of a cell
//   (elsewhere it is a literal character); an unclosed quote makes the rest of the file that
//   cell. Every row must have as many fields as the header.
// * JSONL values as serde_json reads them: a text column takes a string; a scalar column also
//   a number (serde_json's text: `12`, `1.0`, `1e+16`) or a boolean (`true`); a list column
//   also an array of scalars; `null` reads as an empty cell.
// * Caps: 16 MiB per record or JSONL line, 8 MiB per cell, 10 000 000 rows.
//
// Errors are `TableError`s with the CLI's kind (`missing_column`, `wrong_field_count`,
// `invalid_utf8`, `invalid_json`, `not_an_object`, `wrong_type`, `record_too_long`,
// `cell_too_long`, `too_many_rows`, `unknown_extension`; documents add `empty_text`,
// `empty_id`, `duplicate_id`, `no_documents`), `line` and `column`. Messages name the file,
// the line and the column, never a cell's value or a header cell (in a file without a header
// row the first row is a note).

/** The CLI's bounds on one table (`data::table::Limits::default`). */
export const TABLE_LIMITS = Object.freeze({ maxRecordBytes: 16 << 20, maxCellBytes: 8 << 20, maxRows: 10_000_000 });

/** A table that cannot be read (or one row of it): `kind` as the CLI's, `line` (0: the whole file). */
export class TableError extends Error {
  constructor(file, line, kind, message, column = null) {
    super(line > 0 ? `${file}:${line}: ${message}` : `${file}: ${message}`);
    this.name = 'TableError';
    this.kind = kind;
    this.line = line;
    this.column = column;
  }
}

const QUOTE = 0x22;
const LF = 0x0a;
const CR = 0x0d;
const BOM = [0xef, 0xbb, 0xbf];

function toBytes(content) {
  if (typeof content === 'string') return new TextEncoder().encode(content);
  if (content instanceof Uint8Array) return content;
  if (content instanceof ArrayBuffer) return new Uint8Array(content);
  if (ArrayBuffer.isView(content)) return new Uint8Array(content.buffer, content.byteOffset, content.byteLength);
  throw new TypeError('table content must be a string, a Uint8Array or an ArrayBuffer');
}

function hasBom(bytes, at = 0) {
  return bytes[at] === BOM[0] && bytes[at + 1] === BOM[1] && bytes[at + 2] === BOM[2];
}

// Rust's `str::trim` (Unicode White_Space): unlike JS `trim`, it keeps U+FEFF and drops U+0085.
const RUST_SPACE = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const TRIM = new RegExp(`^[${RUST_SPACE}]+|[${RUST_SPACE}]+$`, 'g');
/** `s.trim()` as the CLI trims (headers, ids; what counts as an empty text). */
export function rustTrim(s) {
  return s.replace(TRIM, '');
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lossyUtf8 = new TextDecoder('utf-8', { ignoreBOM: true });

/** The length of the longest valid UTF-8 prefix (Rust's `Utf8Error::valid_up_to`). */
function validUpTo(bytes) {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    let n; let lo = 0x80; let hi = 0xbf;
    if (b < 0x80) { i++; continue; }
    if (b >= 0xc2 && b <= 0xdf) n = 1;
    else if (b >= 0xe0 && b <= 0xef) { n = 2; if (b === 0xe0) lo = 0xa0; if (b === 0xed) hi = 0x9f; }
    else if (b >= 0xf0 && b <= 0xf4) { n = 3; if (b === 0xf0) lo = 0x90; if (b === 0xf4) hi = 0x8f; }
    else return i;
    for (let k = 1; k <= n; k++) {
      const c = bytes[i + k];
      if (c === undefined || c < (k === 1 ? lo : 0x80) || c > (k === 1 ? hi : 0xbf)) return i;
    }
    i += n + 1;
  }
  return i;
}

/** The bytes as text, or null when they are not UTF-8. */
function decodeUtf8(bytes) {
  try { return fatalUtf8.decode(bytes); } catch { return null; }
}

function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) { n += 4; i++; }
    else n += 3;
  }
  return n;
}

// ---------- CSV/TSV records (the csv crate's reader: csv-core's state machine) ----------

const START_FIELD = 0;
const IN_FIELD = 1;
const IN_QUOTED = 2;
const QUOTE_IN_QUOTED = 3;

/**
 * The records of CSV/TSV bytes, as the csv crate splits them: `{fields: Uint8Array[], size,
 * line}`, `size` being the bytes of all fields (the record cap's measure) and `line` the
 * 1-based line of the record's first byte. Empty lines hold no record.
 */
function* csvRecords(bytes, delimiter) {
  const n = bytes.length;
  let i = hasBom(bytes) ? 3 : 0;
  let newlines = 0;
  for (;;) {
    while (i < n && (bytes[i] === LF || bytes[i] === CR)) {
      if (bytes[i] === LF) newlines++;
      i++;
    }
    if (i >= n) return;
    const line = newlines + 1;
    const fields = [];
    let size = 0;
    // The field's bytes as runs [start, end) of the input (quotes are not copied).
    let runs = [];
    let runStart = -1;
    let runEnd = -1;
    const copy = (at) => {
      if (at !== runEnd) {
        if (runStart >= 0) runs.push(runStart, runEnd);
        runStart = at;
      }
      runEnd = at + 1;
    };
    const endField = () => {
      if (runStart >= 0) runs.push(runStart, runEnd);
      let field;
      if (runs.length === 0) field = bytes.subarray(0, 0);
      else if (runs.length === 2) field = bytes.subarray(runs[0], runs[1]);
      else {
        let len = 0;
        for (let k = 0; k < runs.length; k += 2) len += runs[k + 1] - runs[k];
        field = new Uint8Array(len);
        let at = 0;
        for (let k = 0; k < runs.length; k += 2) { field.set(bytes.subarray(runs[k], runs[k + 1]), at); at += runs[k + 1] - runs[k]; }
      }
      fields.push(field);
      size += field.length;
      runs = [];
      runStart = -1;
      runEnd = -1;
    };
    let state = START_FIELD;
    for (;;) {
      if (i >= n) { endField(); break; }
      const c = bytes[i];
      if (state === IN_QUOTED) {
        if (c === QUOTE) state = QUOTE_IN_QUOTED;
        else { if (c === LF) newlines++; copy(i); }
        i++;
        continue;
      }
      if (state === QUOTE_IN_QUOTED && c === QUOTE) { copy(i); i++; state = IN_QUOTED; continue; }
      if (state === START_FIELD && c === QUOTE) { i++; state = IN_QUOTED; continue; }
      if (c === delimiter) { endField(); i++; state = START_FIELD; continue; }
      // The line end is left for the skip above (it counts the `\n`).
      if (c === LF || c === CR) { endField(); break; }
      copy(i);
      i++;
      state = IN_FIELD;
    }
    yield { fields, size, line };
  }
}

/** Splits CSV text (or bytes) into rows of cells as the CLI's reader does: `{cells, line}`. */
export function parseCsv(content) {
  const rows = [];
  for (const { fields, line } of csvRecords(toBytes(content), 0x2c)) rows.push({ cells: fields.map((f) => lossyUtf8.decode(f)), line });
  return rows;
}

// ---------- JSONL values (serde_json's grammar and number text) ----------

class JsonNumber {
  constructor(text) { this.text = text; }
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

class JsonSyntax extends Error {
  constructor(at) { super('json'); this.at = at; }
}

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN_ABS = 1n << 63n;

/** An f64 as serde_json prints it (zmij: shortest digits, fixed for exponents -5..=15). */
export function jsonFloatText(v) {
  if (v === 0) return Object.is(v, -0) ? '-0.0' : '0.0';
  const sign = v < 0 ? '-' : '';
  const [mantissa, exp] = Math.abs(v).toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const e = Number(exp);
  const len = digits.length;
  let body;
  if (e >= -5 && e <= 15) {
    if (len - 1 <= e) body = `${digits}${'0'.repeat(e - (len - 1))}.0`;
    else if (e >= 0) body = `${digits.slice(0, e + 1)}.${digits.slice(e + 1)}`;
    else body = `0.${'0'.repeat(-e - 1)}${digits}`;
  } else {
    body = `${digits[0]}${len > 1 ? `.${digits.slice(1)}` : ''}e${e >= 0 ? '+' : '-'}${Math.abs(e)}`;
  }
  return sign + body;
}

function numberText(literal, at) {
  if (!/[.eE]/.test(literal)) {
    const negative = literal[0] === '-';
    const magnitude = BigInt(negative ? literal.slice(1) : literal);
    if (!negative && magnitude <= U64_MAX) return literal;
    if (negative && magnitude !== 0n && magnitude <= I64_MIN_ABS) return literal;
  }
  const v = Number(literal);
  if (!Number.isFinite(v)) throw new JsonSyntax(at);
  return jsonFloatText(v);
}

/**
 * One JSON value as serde_json reads it into a `Value`: objects as Maps (the last of repeated
 * keys wins), numbers as JsonNumber (their serde_json text), nesting up to 127 levels, paired
 * surrogate escapes only. Throws JsonSyntax with the string index of the error.
 */
function parseJson(text) {
  let i = 0;
  let depth = 128;
  const ws = () => { while (i < text.length && (text[i] === ' ' || text[i] === '\n' || text[i] === '\t' || text[i] === '\r')) i++; };
  const fail = (at = i) => { throw new JsonSyntax(at); };
  const hex4 = () => {
    const h = text.slice(i, i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) fail();
    i += 4;
    return parseInt(h, 16);
  };
  const string = () => {
    i++; // the opening quote
    let out = '';
    let from = i;
    for (;;) {
      if (i >= text.length) fail();
      const c = text.charCodeAt(i);
      if (c === 0x22) { out += text.slice(from, i); i++; return out; }
      if (c < 0x20) fail();
      if (c !== 0x5c) { i++; continue; }
      out += text.slice(from, i);
      i++;
      const e = text[i++];
      if (e === '"') out += '"';
      else if (e === '\\') out += '\\';
      else if (e === '/') out += '/';
      else if (e === 'b') out += '\b';
      else if (e === 'f') out += '\f';
      else if (e === 'n') out += '\n';
      else if (e === 'r') out += '\r';
      else if (e === 't') out += '\t';
      else if (e === 'u') {
        const n = hex4();
        if (n >= 0xdc00 && n <= 0xdfff) fail();
        if (n >= 0xd800 && n <= 0xdbff) {
          if (text[i] !== '\\' || text[i + 1] !== 'u') fail();
          i += 2;
          const n2 = hex4();
          if (n2 < 0xdc00 || n2 > 0xdfff) fail();
          out += String.fromCharCode(n, n2);
        } else out += String.fromCharCode(n);
      } else fail(i - 1);
      from = i;
    }
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '"') return string();
    if (c === '{' || c === '[') {
      if (--depth === 0) fail();
      i++;
      ws();
      const close = c === '{' ? '}' : ']';
      const out = c === '{' ? new Map() : [];
      if (text[i] === close) { i++; depth++; return out; }
      for (;;) {
        if (c === '{') {
          ws();
          if (text[i] !== '"') fail();
          const key = string();
          ws();
          if (text[i] !== ':') fail();
          i++;
          out.set(key, value());
        } else out.push(value());
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === close) { i++; depth++; return out; }
        fail();
      }
    }
    for (const [word, v] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, i)) { i += word.length; return v; }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) fail();
    const at = i;
    i += m[0].length;
    // serde_json: one leading zero only, a digit after `.` and after the exponent's sign.
    if (/^[0-9.eE]/.test(text[i] ?? '')) fail();
    return new JsonNumber(numberText(m[0], at));
  };
  const v = value();
  ws();
  if (i < text.length) fail();
  return v;
}

function typeName(v) {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return 'a boolean';
  if (v instanceof JsonNumber) return 'a number';
  if (typeof v === 'string') return 'a string';
  if (Array.isArray(v)) return 'an array';
  return 'an object';
}

function scalarText(v) {
  if (typeof v === 'string') return v;
  if (v instanceof JsonNumber) return v.text;
  if (typeof v === 'boolean') return String(v);
  return null;
}

// ---------- the table reader ----------

function normalizeColumns(columns) {
  return columns.map((c) => ({
    names: [c.name, ...(c.aliases ?? [])],
    required: c.required !== false,
    kind: c.kind ?? 'text',
  }));
}

/** The format of a file name's extension: csv, tsv, jsonl, txt, or null. */
export function formatOf(name) {
  const base = String(name).split(/[/\\]/).pop();
  const dot = base.lastIndexOf('.');
  if (dot <= 0) return null;
  const ext = base.slice(dot + 1).toLowerCase();
  if (ext === 'csv') return 'csv';
  if (ext === 'tsv' || ext === 'tab') return 'tsv';
  if (ext === 'jsonl' || ext === 'ndjson') return 'jsonl';
  if (ext === 'txt') return 'txt';
  return null;
}

/**
 * Reads a table as the CLI's `TableReader` does, row by row: yields `{row}` (`{line, cells,
 * fields?}`, cells in the order of `columns`: a string, an array of strings for a JSONL list,
 * or null for an optional column the file lacks) or `{error}` (a TableError for one row;
 * reading goes on); throws a TableError for what ends the read.
 *
 * @param content a string, Uint8Array or ArrayBuffer (bytes are checked for UTF-8)
 * @param format 'csv' | 'tsv' | 'jsonl'
 * @param columns [{name, aliases?, required? (default true), kind?: 'text'|'scalar'|'list'}]
 * @param options {file (the name in messages), limits: {maxRecordBytes, maxCellBytes, maxRows}, allCells}
 */
export function* tableRows(content, format, columns, options = {}) {
  const file = options.file ?? 'table';
  const limits = { ...TABLE_LIMITS, ...(options.limits ?? {}) };
  const spec = normalizeColumns(columns);
  const bytes = toBytes(content);
  let count = 0;
  const countRow = (line) => {
    if (count >= limits.maxRows) throw new TableError(file, line, 'too_many_rows', `more than ${limits.maxRows} rows`);
    count++;
  };
  if (format === 'csv' || format === 'tsv') {
    yield* csvRows(bytes, format === 'csv' ? 0x2c : 0x09, spec, limits, !!options.allCells, file, countRow);
  } else if (format === 'jsonl') {
    yield* jsonlRows(bytes, spec, limits, file, countRow);
  } else {
    throw new TableError(file, 0, 'unknown_extension', 'cannot tell the format: use .csv, .tsv/.tab or .jsonl/.ndjson');
  }
}

function checkRecord({ fields, size }, line, limits, file) {
  if (size > limits.maxRecordBytes) throw new TableError(file, line, 'record_too_long', `record is longer than ${limits.maxRecordBytes} bytes`);
  const i = fields.findIndex((f) => f.length > limits.maxCellBytes);
  if (i >= 0) throw new TableError(file, line, 'cell_too_long', `column "#${i + 1}" is longer than ${limits.maxCellBytes} bytes`, `#${i + 1}`);
}

function* csvRows(bytes, delimiter, spec, limits, allCells, file, countRow) {
  const records = csvRecords(bytes, delimiter);
  const first = records.next();
  const headerRecord = first.done ? { fields: [], size: 0, line: 1 } : first.value;
  checkRecord(headerRecord, 1, limits, file);
  const header = headerRecord.fields.map((f) => rustTrim(lossyUtf8.decode(f)));
  const positions = [];
  for (const column of spec) {
    let found = null;
    for (const name of column.names) {
      const i = header.indexOf(name);
      if (i >= 0) { found = { name, i }; break; }
    }
    if (!found && column.required) {
      // The header's cells are not echoed: in a file without a header row they are a note.
      throw new TableError(file, 1, 'missing_column',
        `no column "${column.names[0]}" in the header row, which has ${header.length} column(s); is the first row a header?`, column.names[0]);
    }
    positions.push(found);
  }
  const width = header.length;
  const utf8 = (field, line, name) => {
    const text = decodeUtf8(field);
    if (text !== null) return text;
    throw new TableError(file, line, 'invalid_utf8',
      `column "${name}" is not valid UTF-8 (bad byte at offset ${validUpTo(field)} of ${field.length})`, name);
  };
  for (const record of records) {
    const { fields, line } = record;
    countRow(line);
    checkRecord(record, line, limits, file);
    if (fields.length !== width) {
      yield { error: new TableError(file, line, 'wrong_field_count', `row has ${fields.length} fields, the header has ${width}`) };
      continue;
    }
    try {
      const cells = positions.map((p) => (p ? utf8(fields[p.i], line, p.name) : null));
      const row = { line, cells };
      if (allCells) {
        row.fields = fields.map((f, i) => utf8(f, line, positions.find((p) => p && p.i === i)?.name ?? `#${i + 1}`));
      }
      yield { row };
    } catch (e) {
      if (!(e instanceof TableError)) throw e;
      yield { error: e };
    }
  }
}

function isAsciiSpace(b) {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0c || b === 0x0d;
}

function* jsonlRows(bytes, spec, limits, file, countRow) {
  let start = 0;
  let line = 0;
  while (start < bytes.length) {
    let end = bytes.indexOf(LF, start);
    const next = end < 0 ? bytes.length : end + 1;
    if (end < 0) end = bytes.length;
    line++;
    let lineBytes = bytes.subarray(start, end);
    start = next;
    if (lineBytes.length > 0 && lineBytes[lineBytes.length - 1] === CR) lineBytes = lineBytes.subarray(0, lineBytes.length - 1);
    if (lineBytes.length > limits.maxRecordBytes) throw new TableError(file, line, 'record_too_long', `record is longer than ${limits.maxRecordBytes} bytes`);
    if (line === 1 && hasBom(lineBytes)) lineBytes = lineBytes.subarray(3);
    // Blank lines (a trailing newline, spacing) hold no row.
    if (lineBytes.every(isAsciiSpace)) continue;
    const result = jsonlRow(lineBytes, line, spec, limits, file);
    countRow(line);
    yield result;
  }
}

function jsonlRow(bytes, line, spec, limits, file) {
  const text = decodeUtf8(bytes);
  if (text === null) {
    return { error: new TableError(file, line, 'invalid_utf8', `line is not valid UTF-8 (bad byte at offset ${validUpTo(bytes)} of ${bytes.length})`) };
  }
  let value;
  try {
    value = parseJson(text);
  } catch (e) {
    if (!(e instanceof JsonSyntax)) throw e;
    // Only the position is reported (1-based, in bytes), never the text.
    return { error: new TableError(file, line, 'invalid_json', `not valid JSON (error at column ${utf8Length(text.slice(0, e.at)) + 1})`) };
  }
  if (!(value instanceof Map)) return { error: new TableError(file, line, 'not_an_object', 'line is JSON but not an object') };
  const cells = [];
  for (const column of spec) {
    const name = column.names.find((n) => value.has(n));
    if (name === undefined) {
      if (column.required) return { error: new TableError(file, line, 'missing_column', `object has no key "${column.names[0]}"`, column.names[0]) };
      cells.push(null);
      continue;
    }
    const v = value.get(name);
    const wrong = (expected) => ({ error: new TableError(file, line, 'wrong_type', `column "${name}" is ${typeName(v)}, expected ${expected}`, name) });
    let cell;
    if (v === null) cell = '';
    else if (typeof v === 'string') cell = v;
    else if (column.kind === 'text') return wrong('a string');
    else if (typeof v === 'boolean' || v instanceof JsonNumber) cell = scalarText(v);
    else if (column.kind === 'list' && Array.isArray(v)) {
      cell = v.map(scalarText);
      if (cell.includes(null)) return wrong('a string or an array of strings');
    } else if (column.kind === 'scalar') return wrong('a string or a number');
    else return wrong('a string or an array of strings');
    const size = Array.isArray(cell) ? cell.reduce((n, s) => n + utf8Length(s), 0) : utf8Length(cell);
    if (size > limits.maxCellBytes) throw new TableError(file, line, 'cell_too_long', `column "${name}" is longer than ${limits.maxCellBytes} bytes`, name);
    cells.push(cell);
  }
  return { row: { line, cells } };
}

/** Every row of a table, the first bad row being the error (the CLI's `read_all`). */
export function readTable(content, format, columns, options = {}) {
  const rows = [];
  for (const { row, error } of tableRows(content, format, columns, options)) {
    if (error) throw error;
    rows.push(row);
  }
  return rows;
}

// ---------- documents ----------

/** The columns the page reads: a text, an optional id and an optional label. */
const DOCUMENT_COLUMNS = [
  { name: 'text', kind: 'text' },
  { name: 'id', kind: 'scalar', required: false },
  { name: 'label', kind: 'list', required: false },
];

/**
 * Documents from a file's content (bytes: a Uint8Array or ArrayBuffer, so that non-UTF-8 is
 * an error naming its line; or a string, taken as decoded), by its name's extension, as
 * `bedside search --corpus` / `classify --input` read them: a `text` column or key (an empty
 * text is an error), an optional `id` (trimmed; empty is an error; without the column the
 * line number), an optional `label`; ids distinct. .txt: one document per non-blank line.
 * @returns {{id: string, text: string, label?: string, line: number}[]}
 */
export function parseDocuments(name, content) {
  const format = formatOf(name);
  if (format === null) {
    throw new TableError(name, 0, 'unknown_extension', 'unknown format: use .csv, .tsv/.tab, .jsonl/.ndjson or .txt');
  }
  const docs = format === 'txt' ? fromTxt(name, toBytes(content)) : fromTable(name, content, format);
  if (docs.length === 0) throw new TableError(name, 0, 'no_documents', 'no documents');
  const seen = new Map();
  for (const d of docs) {
    // The id itself is not repeated: it is a cell value.
    if (seen.has(d.id)) throw new TableError(name, d.line, 'duplicate_id', `duplicate id (first on line ${seen.get(d.id)})`, 'id');
    seen.set(d.id, d.line);
  }
  return docs;
}

function fromTable(name, content, format) {
  return readTable(content, format, DOCUMENT_COLUMNS, { file: name }).map(({ line, cells: [text, id, label] }) => {
    if (rustTrim(text) === '') throw new TableError(name, line, 'empty_text', 'empty text', 'text');
    let docId = String(line);
    if (id !== null) {
      docId = rustTrim(id);
      if (docId === '') throw new TableError(name, line, 'empty_id', 'empty id', 'id');
    }
    const doc = { id: docId, text, line };
    const labelText = label === null ? '' : rustTrim(Array.isArray(label) ? label.join('|') : label);
    if (labelText !== '') doc.label = labelText;
    return doc;
  });
}

/** Lines of a .txt corpus as the CLI reads them: `\n` or `\r\n`, a leading BOM dropped. */
function fromTxt(name, bytes) {
  let body = hasBom(bytes) ? bytes.subarray(3) : bytes;
  if (body.length > 0 && body[body.length - 1] === LF) body = body.subarray(0, body.length - 1);
  const docs = [];
  if (body.length === 0) return docs;
  let start = 0;
  for (let line = 1; ; line++) {
    let end = body.indexOf(LF, start);
    const last = end < 0;
    if (last) end = body.length;
    let raw = body.subarray(start, end);
    if (raw.length > 0 && raw[raw.length - 1] === CR) raw = raw.subarray(0, raw.length - 1);
    const text = decodeUtf8(raw);
    if (text === null) throw new TableError(name, line, 'invalid_utf8', `line is not valid UTF-8 (bad byte at offset ${validUpTo(raw)} of ${raw.length})`);
    if (rustTrim(text) !== '') docs.push({ id: String(line), text, line });
    if (last) break;
    start = end + 1;
  }
  return docs;
}

// A text cell that starts like a formula (`= + - @`, or a tab/CR that some spreadsheets skip
// before one) is prefixed with `'`, as OWASP advises against CSV injection: labels come from
// the bundle and ids from the user's file, and a spreadsheet must show them, not run them.
// Numbers stay numbers (a negative score is not a formula).
function csvCell(value) {
  let s = value === undefined || value === null ? '' : String(value);
  if (typeof value !== 'number' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** CSV text from a header and rows of values. */
export function toCsv(header, rows) {
  return [header, ...rows].map((r) => r.map(csvCell).join(',')).join('\r\n') + '\r\n';
}

/**
 * The CSV of batch classification results: id, label, score, uncertain, labels (multi-label,
 * `|`-separated), one `p:<label>` column per label, the window that drove the prediction
 * (UTF-8 byte offsets, as the CLI prints them), windows and milliseconds.
 */
export function resultsCsv(labels, results) {
  const header = ['id', 'label', 'score', 'uncertain', 'labels', ...labels.map((l) => `p:${l}`),
    'top_window_start', 'top_window_end', 'windows', 'ms'];
  const rows = results.map(({ id, result: r }) => {
    const top = topChunk(r);
    return [id, r.label, r.score, r.uncertain, (r.labels ?? []).join('|'), ...labels.map((l) => r.probabilities[l]),
      top?.start ?? '', top?.end ?? '', r.chunks.length, r.ms?.toFixed(1) ?? ''];
  });
  return toCsv(header, rows);
}

/** The window with the highest score: the passage that drove the prediction. */
export function topChunk(result) {
  let best = null;
  for (const c of result.chunks ?? []) if (best === null || c.score > best.score) best = c;
  return best;
}

/** UTF-16 index (what JS strings use) of a UTF-8 byte offset into `text`. */
export function byteToCharIndex(text, byteOffset) {
  const bytes = new TextEncoder().encode(text);
  return new TextDecoder().decode(bytes.subarray(0, byteOffset)).length;
}

/**
 * A note cut at its entities, for highlighting: `[{text, entity}]` in order, `entity` null
 * between entities. Entities need `start_char`/`end_char` (JS string indices, as `tag` gives
 * them) or byte offsets `start`/`end`; overlapping ones are clipped to what is left.
 */
export function entitySegments(text, entities) {
  const out = [];
  let at = 0;
  for (const e of entities) {
    const start = Math.max(at, Number.isInteger(e.start_char) ? e.start_char : byteToCharIndex(text, e.start));
    const end = Math.min(text.length, Number.isInteger(e.end_char) ? e.end_char : byteToCharIndex(text, e.end));
    if (end <= start) continue;
    if (start > at) out.push({ text: text.slice(at, start), entity: null });
    out.push({ text: text.slice(start, end), entity: e });
    at = end;
  }
  if (at < text.length) out.push({ text: text.slice(at), entity: null });
  return out;
}

/** The labels of entities or counts without a `B-`/`I-` prefix, in first-seen order. */
export function entityLabels(labels) {
  return [...new Set(labels.map((l) => l.replace(/^[BIES]-/, '')))].filter((l) => l !== 'O');
}
