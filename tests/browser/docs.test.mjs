// The page's and the widget's table reader (www/widget/docs.js) in plain Node: a CSV exported
// without its header row has a note as its first row, and the error must not repeat it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { entityLabels, entitySegments, parseDocuments, parseCsv, resultsCsv } from '../../www/widget/docs.js';

test('a header-less CSV is refused naming the column count, never the first row', () => {
  const note = 'Jane Q Patient DOB 01/02/1950 MRN 1234567 chest pain';
  assert.throws(
    () => parseDocuments('notes.csv', `1,${note},cardiac\n2,cough,respiratory\n`),
    (e) => {
      assert.match(e.message, /^notes\.csv:1: no column "text" in the header row, which has 3 column\(s\)/);
      for (const fragment of ['Jane', '1234567', '01/02/1950']) assert.ok(!e.message.includes(fragment), e.message);
      return true;
    },
  );
  // With its header the same rows read.
  const docs = parseDocuments('notes.csv', `id,text,label\n1,${note},cardiac\n`);
  assert.equal(docs.length, 1);
  assert.equal(docs[0].text, note);
});

test('results CSVs neutralise cells that a spreadsheet would run as formulas', () => {
  const result = (label, score) => ({ label, score, uncertain: false, labels: null, probabilities: { [label]: score }, chunks: [], ms: 1 });
  const csv = resultsCsv(['=HYPERLINK("http://x")'], [
    { id: '@SUM(A1)', result: result('=HYPERLINK("http://x")', 0.9) },
    { id: '+1', result: result('=HYPERLINK("http://x")', -0.5) },
  ]);
  const cells = parseCsv(csv).flatMap((row) => row.cells);
  for (const cell of cells) if (Number.isNaN(Number(cell))) assert.doesNotMatch(cell, /^[=+\-@]/, `a cell starts like a formula: ${cell}`);
  // The text is kept behind the quote mark, and numbers stay numbers.
  assert.ok(cells.includes("'@SUM(A1)"));
  assert.ok(cells.includes('\'=HYPERLINK("http://x")'));
  assert.ok(csv.includes(',-0.5,'));
});

test('entitySegments cuts a note at its entities, by UTF-16 or byte offsets', () => {
  const note = 'Zoë 😀 Müller, seen.';
  const bytes = (s) => Buffer.byteLength(s);
  const span = (text, label) => {
    const start = note.indexOf(text);
    return { label, start: bytes(note.slice(0, start)), end: bytes(note.slice(0, start + text.length)), start_char: start, end_char: start + text.length };
  };
  const zoe = span('Zoë', 'NAME');
  const muller = span('Müller', 'NAME');
  const empty = { ...muller, end: muller.start, end_char: muller.start_char };
  const want = [
    { text: 'Zoë', entity: zoe }, { text: ' 😀 ', entity: null }, { text: 'Müller', entity: muller }, { text: ', seen.', entity: null },
  ];
  assert.deepEqual(entitySegments(note, [zoe, empty, muller]), want);
  // Without UTF-16 offsets the byte offsets are converted (a non-BMP character before the span).
  const byBytes = [zoe, muller].map(({ label, start, end }) => ({ label, start, end }));
  assert.deepEqual(entitySegments(note, byBytes).map((s) => s.text), want.map((s) => s.text));
  assert.equal(entitySegments(note, []).map((s) => s.text).join(''), note);
  assert.deepEqual(entityLabels(['O', 'B-NAME', 'I-NAME', 'DATE', 'B-DATE']), ['NAME', 'DATE']);
});
