// The page's table reader (www/widget/docs.js) on the CLI's shared table cases
// (tests/fixtures/tables.json, run by trainer/src/data/table.rs's `shared_table_cases`): every
// case must give the same rows, the same row errors and the same error (kind, line, column).
// Plain Node, no wasm build needed.
// Run: node --test tests/wasm/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TableError, jsonFloatText, parseCsv, parseDocuments, tableRows } from '../../www/widget/docs.js';

const root = join(fileURLToPath(import.meta.url), '../../..');
const fixture = JSON.parse(readFileSync(join(root, 'tests/fixtures/tables.json'), 'utf8'));
const FILE = 'case.table';

/** `\xNN` escapes as raw bytes, as the Rust test's `unescape` (on the content's UTF-8 bytes). */
function unescape(content) {
  const bytes = new TextEncoder().encode(content);
  const out = [];
  for (let i = 0; i < bytes.length;) {
    if (bytes[i] === 0x5c && bytes[i + 1] === 0x78 && i + 4 <= bytes.length) {
      out.push(parseInt(String.fromCharCode(bytes[i + 2], bytes[i + 3]), 16));
      i += 4;
    } else out.push(bytes[i++]);
  }
  return new Uint8Array(out);
}

const bytesOf = (c) => (c.escaped ? unescape(c.content) : new TextEncoder().encode(c.content));

function limitsOf(c) {
  const l = c.limits ?? {};
  return { maxRecordBytes: l.max_record_bytes, maxCellBytes: l.max_cell_bytes, maxRows: l.max_rows };
}

const errorJson = (e) => ({ kind: e.kind, line: e.line, column: e.column ?? null });

function assertMessage(name, e) {
  assert.ok(e instanceof TableError, `${name}: ${e}`);
  // Messages name the file and line first; never a cell value (the cases' values are
  // checked by the sentinel tests; here, the prefix).
  assert.ok(e.message.startsWith(e.line > 0 ? `${FILE}:${e.line}: ` : `${FILE}: `), `${name}: ${e.message}`);
}

function runCase(c, content = bytesOf(c)) {
  const limits = Object.fromEntries(Object.entries(limitsOf(c)).filter(([, v]) => v !== undefined));
  const rows = [];
  const rowErrors = [];
  let error = null;
  try {
    for (const { row, error: rowError } of tableRows(content, c.format, c.columns, { file: FILE, limits, allCells: !!c.all_cells })) {
      if (rowError) {
        assertMessage(c.name, rowError);
        rowErrors.push(errorJson(rowError));
      } else rows.push({ line: row.line, cells: row.cells });
    }
  } catch (e) {
    assertMessage(c.name, e);
    error = errorJson(e);
  }
  return { rows, rowErrors, error };
}

test('the shared table cases: every one, the same rows and errors as the CLI', () => {
  assert.ok(fixture.cases.length >= 30);
  for (const c of fixture.cases) {
    const got = runCase(c);
    if (c.error) {
      assert.deepEqual(got.error, c.error, `${c.name}: error`);
    } else {
      assert.equal(got.error, null, `${c.name}: unexpected error ${JSON.stringify(got.error)}`);
      assert.deepEqual(got.rows, c.rows, `${c.name}: rows`);
      assert.deepEqual(got.rowErrors, c.row_errors ?? [], `${c.name}: row errors`);
    }
  }
});

test('the shared cases read the same from a string (already decoded) as from bytes', () => {
  // The widget's <bedside-search documents=...> hands the parser text; only the non-UTF-8
  // cases cannot apply to a string (the browser has replaced their bytes already).
  for (const c of fixture.cases.filter((c) => !c.escaped)) {
    assert.deepEqual(runCase(c, c.content), runCase(c), c.name);
  }
});

// parseDocuments is the page's use of the reader: columns text, id (optional scalar), label
// (optional list). A case applies when its columns are that set's (by those names, no
// aliases), with the default caps and without all_cells; the others are run above only, as the
// page's document reader cannot be given other columns or caps:
const DOCUMENT_NAMES = new Set(['text', 'id', 'label']);
const applies = (c) => !c.limits && !c.all_cells && c.columns.every((col) => DOCUMENT_NAMES.has(col.name) && !col.aliases)
  && c.columns.some((col) => col.name === 'text' && col.required !== false);

test('parseDocuments on the shared cases it applies to: the table error first, then the document rules', () => {
  const applicable = fixture.cases.filter(applies);
  assert.ok(applicable.length >= 15, `${applicable.length} cases apply`);
  for (const c of applicable) {
    const name = `notes.${c.format}`;
    let docs = null;
    let error = null;
    try { docs = parseDocuments(name, bytesOf(c)); } catch (e) {
      assert.ok(e instanceof TableError, `${c.name}: ${e}`);
      assert.ok(e.message.startsWith(`${name}:`), e.message);
      error = { kind: e.kind, line: e.line };
    }
    if (c.error) {
      assert.deepEqual(error, { kind: c.error.kind, line: c.error.line }, c.name);
      continue;
    }
    // The expected outcome, in line order: a row error, or a row the document rules refuse.
    const at = (col) => c.columns.findIndex((x) => x.name === col);
    const events = [
      ...(c.row_errors ?? []).map((e) => ({ line: e.line, error: { kind: e.kind, line: e.line } })),
      ...c.rows.map((r) => {
        const text = r.cells[at('text')];
        const id = at('id') >= 0 ? r.cells[at('id')] : null;
        if (text.trim() === '') return { line: r.line, error: { kind: 'empty_text', line: r.line } };
        if (id !== null && id.trim() === '') return { line: r.line, error: { kind: 'empty_id', line: r.line } };
        return { line: r.line, doc: { id: id === null ? String(r.line) : id.trim(), text, line: r.line } };
      }),
    ].sort((a, b) => a.line - b.line);
    const firstError = events.find((e) => e.error)?.error;
    if (firstError) assert.deepEqual(error, firstError, c.name);
    else if (events.length === 0) assert.deepEqual(error, { kind: 'no_documents', line: 0 }, c.name);
    else {
      assert.equal(error, null, `${c.name}: ${JSON.stringify(error)}`);
      assert.deepEqual(docs.map(({ id, text, line }) => ({ id, text, line })), events.map((e) => e.doc), c.name);
    }
  }
});

test('document rules: empty and duplicate ids, labels, .txt, unknown extensions, never a value in a message', () => {
  const secret = 'Jane Q Patient MRN 1234567';
  const kindOf = (fn) => { try { fn(); } catch (e) { assert.ok(!e.message.includes('Jane') && !e.message.includes('1234567'), e.message); return [e.kind, e.line]; } return null; };
  assert.deepEqual(kindOf(() => parseDocuments('d.csv', `id,text\n${secret},a\n${secret},b\n`)), ['duplicate_id', 3]);
  assert.deepEqual(kindOf(() => parseDocuments('d.jsonl', `{"text": "a", "id": null}\n`)), ['empty_id', 1]);
  assert.deepEqual(kindOf(() => parseDocuments('d.jsonl', `{"text": "${secret}", "id": {"k": 1}}\n`)), ['wrong_type', 1]);
  assert.deepEqual(kindOf(() => parseDocuments('d.csv', `text\n"${secret}`)), null); // an unclosed quote: the rest is the cell
  assert.deepEqual(kindOf(() => parseDocuments('d.csv', `id,text\n1,${secret}\n2\n`)), ['wrong_field_count', 3]);
  assert.deepEqual(kindOf(() => parseDocuments('d.csv', `ID,Text\n1,${secret}\n`)), ['missing_column', 1]);
  assert.deepEqual(kindOf(() => parseDocuments('d.xlsx', secret)), ['unknown_extension', 0]);
  assert.deepEqual(kindOf(() => parseDocuments('d.txt', '\n \n')), ['no_documents', 0]);
  assert.deepEqual(kindOf(() => parseDocuments('d.txt', new Uint8Array([0x61, 0x0a, 0x62, 0xff, 0x0a]))), ['invalid_utf8', 2]);
  // JSONL ids as serde_json prints them; booleans are scalars; labels may be lists.
  const docs = parseDocuments('d.jsonl', [
    '{"text": "a", "id": 12, "label": ["x", "y"]}', '{"text": "b", "id": 1.0}', '{"text": "c", "id": true}',
    '{"text": "d", "id": 1e16}', '{"text": "e", "id": -0}', '{"text": "f", "id": 0.00001, "label": " z "}', '{"text": "g"}',
  ].join('\r\n'));
  assert.deepEqual(docs.map((d) => d.id), ['12', '1.0', 'true', '1e+16', '-0.0', '0.00001', '7']);
  assert.deepEqual(docs.map((d) => d.label), ['x|y', undefined, undefined, undefined, undefined, 'z', undefined]);
  // TSV, and a .txt corpus numbered by its lines (a lone CR is no line end).
  assert.deepEqual(parseDocuments('d.TAB', 'id\ttext\nn1\tpain, left\n').map((d) => [d.id, d.text]), [['n1', 'pain, left']]);
  assert.deepEqual(parseDocuments('d.txt', '\ufeffa\r\n\nb\rc\n').map((d) => [d.id, d.text]), [['1', 'a'], ['3', 'b\rc']]);
  // CSV: a quote inside an unquoted cell is a character; a lone CR ends a record, not a line.
  assert.deepEqual(parseCsv('a,b"c\r1,"x""y"z\n2,3'), [{ cells: ['a', 'b"c'], line: 1 }, { cells: ['1', 'x"yz'], line: 1 }, { cells: ['2', '3'], line: 2 }]);
});

test('JSON numbers print as serde_json prints them', () => {
  const cases = [[1, '1.0'], [0.1, '0.1'], [43210, '43210.0'], [1e15, '1000000000000000.0'], [1e16, '1e+16'],
    [5.444310685350916e+14, '544431068535091.6'], [2.9802322387695312e-8, '2.9802322387695312e-8'], [1e-5, '0.00001'],
    [1e-6, '1e-6'], [-4.932096661796888e-226, '-4.932096661796888e-226'], [9.03725590277404e+160, '9.03725590277404e+160'],
    [Number.MIN_VALUE, '5e-324'], [-0, '-0.0']];
  for (const [v, want] of cases) assert.equal(jsonFloatText(v), want, String(v));
  const ids = (line) => parseDocuments('n.jsonl', `{"text": "t", "id": ${line}}`)[0].id;
  assert.equal(ids('18446744073709551615'), '18446744073709551615');
  assert.equal(ids('18446744073709551616'), '1.8446744073709552e+19');
  assert.equal(ids('-9223372036854775808'), '-9223372036854775808');
  assert.equal(ids('-9223372036854775809'), '-9.223372036854776e+18');
  assert.equal(ids('1E2'), '100.0');
  // serde_json refuses what JSON.parse would take or change: out-of-range numbers, lone
  // surrogates, nesting past 127 levels.
  for (const bad of ['1e400', '"\\ud800"', '"\\udc00x"', `${'['.repeat(128)}${']'.repeat(128)}`, '01', '1.', '-']) {
    assert.throws(() => parseDocuments('n.jsonl', `{"text": "t", "id": ${bad}}`), (e) => e.kind === 'invalid_json', bad);
  }
  assert.equal(parseDocuments('n.jsonl', `{"text": "t", "id": "a", "x": ${'['.repeat(126)}${']'.repeat(126)}}`)[0].id, 'a');
});
