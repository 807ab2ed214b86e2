// Reading notes and documents from local files (CSV, TXT, JSONL) and writing result CSVs.
// The rules follow the CLI (`bedside classify --input`, `bedside search --corpus`): a
// `text` column or field, an optional `id` (else the line number), .txt = one per line.
// Errors name the file and line, never the text.

/** Splits CSV text into rows of cells (RFC 4180: quotes, doubled quotes, newlines in quotes). */
export function parseCsv(text) {
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; }
      else if (c === '"') quoted = false;
      else { if (c === '\n') line++; cell += c; }
    } else if (c === '"') {
      quoted = true;
    } else if (c === ',') {
      row.push(cell); cell = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(cell); cell = '';
      rows.push({ cells: row, line: rowLine });
      row = [];
      line++;
      rowLine = line;
    } else {
      cell += c;
    }
  }
  if (quoted) throw new Error(`line ${rowLine}: a quoted field is not closed`);
  if (cell !== '' || row.length > 0) { row.push(cell); rows.push({ cells: row, line: rowLine }); }
  // Blank lines are not records.
  return rows.filter((r) => !(r.cells.length === 1 && r.cells[0] === ''));
}

function stripBom(text) {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/**
 * Documents from a file's text, by its name's extension.
 * @returns {{id: string, text: string, label?: string, line: number}[]}
 */
export function parseDocuments(name, content) {
  const text = stripBom(content);
  const ext = name.toLowerCase().split('.').pop();
  let docs;
  if (ext === 'csv') docs = fromCsv(name, text);
  else if (ext === 'jsonl' || ext === 'ndjson') docs = fromJsonl(name, text);
  else if (ext === 'txt' || ext === 'text') docs = fromTxt(text);
  else throw new Error(`${name}: unknown format: use .csv, .txt or .jsonl`);
  if (docs.length === 0) throw new Error(`${name}: no documents`);
  const seen = new Map();
  for (const d of docs) {
    if (seen.has(d.id)) throw new Error(`${name}:${d.line}: duplicate id ${JSON.stringify(d.id)} (first on line ${seen.get(d.id)})`);
    seen.set(d.id, d.line);
  }
  return docs;
}

function fromTxt(text) {
  return text.split('\n').map((raw, i) => ({ raw: raw.replace(/\r$/, ''), line: i + 1 }))
    .filter(({ raw }) => raw.trim() !== '')
    .map(({ raw, line }) => ({ id: String(line), text: raw, line }));
}

function fromCsv(name, text) {
  let rows;
  try { rows = parseCsv(text); } catch (e) { throw new Error(`${name}: ${e.message}`); }
  if (rows.length === 0) return [];
  const header = rows[0].cells.map((h) => h.trim());
  const col = (n) => header.findIndex((h) => h.toLowerCase() === n);
  const textCol = col('text');
  // The header's cells are not echoed: in a file without a header row they are a note.
  if (textCol < 0) {
    throw new Error(`${name}:1: no column "text" in the header row, which has ${header.length} column(s); is the first row a header?`);
  }
  const idCol = col('id');
  const labelCol = col('label');
  return rows.slice(1).map(({ cells, line }) => {
    const t = cells[textCol] ?? '';
    if (t.trim() === '') throw new Error(`${name}:${line}: empty text`);
    const id = idCol >= 0 ? (cells[idCol] ?? '').trim() : String(line);
    if (id === '') throw new Error(`${name}:${line}: empty id`);
    const doc = { id, text: t, line };
    if (labelCol >= 0 && (cells[labelCol] ?? '').trim() !== '') doc.label = cells[labelCol].trim();
    return doc;
  });
}

function fromJsonl(name, text) {
  const docs = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    let value;
    try { value = JSON.parse(raw); } catch { throw new Error(`${name}:${line}: not valid JSON`); }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${name}:${line}: not a JSON object`);
    if (typeof value.text !== 'string') throw new Error(`${name}:${line}: missing "text"`);
    if (value.text.trim() === '') throw new Error(`${name}:${line}: empty text`);
    let id = String(line);
    if (typeof value.id === 'string' && value.id !== '') id = value.id;
    else if (typeof value.id === 'number') id = String(value.id);
    else if (value.id !== undefined && value.id !== null) throw new Error(`${name}:${line}: "id" must be a string or a number`);
    const doc = { id, text: value.text, line };
    if (typeof value.label === 'string' && value.label !== '') doc.label = value.label;
    docs.push(doc);
  });
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
