// Token classification through the wasm build (Node): `tag` on the tiny NER fixtures gives
// transformers' pipeline entities for every aggregation strategy, and `deid` redacts those spans.
// Run: node --test tests/wasm/   (after scripts/build-wasm.sh and `cargo build`)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportBundle, root, runtime, workDir } from './helpers.mjs';

const { Bedside } = runtime;
const work = workDir('bedside-wasm-token-');

/** f32 forward vs PyTorch f32 (the Rust fixture tests' bound). */
const MAX_SCORE_DIFF = 1e-4;
const STRATEGIES = ['none', 'simple', 'first', 'average', 'max'];

const fixture = (name) => join(root, 'models/fixtures', name);
const expected = (name) => JSON.parse(readFileSync(join(fixture(name), 'expected.json'), 'utf8'));

function loadTokenModel(name) {
  return Bedside.load(readFileSync(exportBundle(work, fixture(name), 'f32', `${name}.gguf`)));
}

/** UTF-8 byte offset → JS string index. */
const charIndex = (text, byte) => Buffer.from(text).subarray(0, byte).toString().length;

/** What `redact` makes of entities (as wasm/src/pipeline/redact.rs): spans sorted, overlapping
 * or touching ones merged under the first one's label, each replaced by `[LABEL]`. */
function redactLikeRust(text, spans) {
  const bytes = Buffer.from(text);
  // Empty spans (a BPE token that is only a space has none) are not redacted.
  const sorted = spans.filter((s) => s.start < s.end).sort((a, b) => a.start - b.start || b.end - a.end);
  const merged = [];
  for (const s of sorted) {
    const last = merged.at(-1);
    if (last && s.start <= last.end) last.end = Math.max(last.end, s.end);
    else merged.push({ ...s });
  }
  let out = '';
  let at = 0;
  const counts = {};
  const redactions = merged.map((s) => {
    out += bytes.subarray(at, s.start).toString();
    const redacted_start = Buffer.byteLength(out);
    out += `[${s.label}]`;
    counts[s.label] = (counts[s.label] ?? 0) + 1;
    at = s.end;
    return { label: s.label, start: s.start, end: s.end, redacted_start, redacted_end: Buffer.byteLength(out) };
  });
  out += bytes.subarray(at).toString();
  return { text: out, redactions, counts };
}

function checkEntities(got, want, text, what) {
  assert.deepEqual(got.map((e) => [e.label, e.start, e.end]), want.map((e) => [e.label, e.start_byte, e.end_byte]), `${what}: entities`);
  got.forEach((e, k) => {
    assert.ok(Math.abs(e.score - want[k].score) <= MAX_SCORE_DIFF, `${what}: entity ${k} score ${e.score} vs ${want[k].score}`);
    // UTF-16 offsets for JS: transformers' character offsets are code points; equal here unless
    // the note has characters outside the BMP (the fixtures have none).
    assert.equal(e.start_char, charIndex(text, e.start), `${what}: entity ${k} start_char`);
    assert.equal(e.end_char, charIndex(text, e.end), `${what}: entity ${k} end_char`);
    assert.equal(text.slice(e.start_char, e.end_char), Buffer.from(text).subarray(e.start, e.end).toString());
  });
}

async function checkTagAndDeid(name) {
  const model = loadTokenModel(name);
  const want = expected(name);
  assert.equal(model.task, 'token-classification');
  assert.equal(model.manifest().task, 'token-classification');
  for (const [i, text] of want.texts.entries()) {
    for (const strategy of STRATEGIES) {
      checkEntities(model.tag(text, strategy), want.entities[strategy][i], text, `${name} text ${i} ${strategy}`);
    }
    // The bundle's default aggregation is transformers' default: simple.
    checkEntities(model.tag(text), want.entities.simple[i], text, `${name} text ${i} default`);

    const spans = want.entities.simple[i].map((e) => ({ label: e.label, start: e.start_byte, end: e.end_byte }));
    const redacted = model.deid(text);
    const wantRedacted = redactLikeRust(text, spans);
    assert.equal(redacted.text, wantRedacted.text, `${name} text ${i}: redacted text`);
    assert.deepEqual(redacted.counts, wantRedacted.counts, `${name} text ${i}: counts`);
    assert.deepEqual(redacted.redactions.map(({ label, start, end, redacted_start, redacted_end }) => ({ label, start, end, redacted_start, redacted_end })),
      wantRedacted.redactions, `${name} text ${i}: redactions`);
    for (const r of redacted.redactions) {
      assert.equal(r.start_char, charIndex(text, r.start));
      assert.equal(r.end_char, charIndex(text, r.end));
      assert.equal(redacted.text.slice(r.redacted_start_char, r.redacted_end_char), `[${r.label}]`);
    }
    // The async calls (the worker's) give the same.
    assert.deepEqual(await model.tagAsync(text, 'first'), model.tag(text, 'first'));
    assert.deepEqual(await model.deidAsync(text, undefined), redacted);
  }
}

test('tiny-bert-ner: tag equals transformers for every strategy; deid redacts those spans', async () => {
  await checkTagAndDeid('tiny-bert-ner');
});

test('tiny-roberta-ner (byte-level BPE): tag equals transformers for every strategy; deid redacts those spans', async () => {
  await checkTagAndDeid('tiny-roberta-ner');
});

test('deid with pattern rules adds their spans; bad arguments are BedsideErrors with codes', () => {
  const model = loadTokenModel('tiny-bert-ner');
  const text = 'Seen 3/4/2024, call 555-123-4567 or mail jo@example.org. MRN 12345678.';
  const plain = model.deid(text);
  for (const rules of [true, { kinds: ['date', 'phone', 'email', 'mrn'] }]) {
    const ruled = model.deid(text, rules);
    for (const secret of ['3/4/2024', '555-123-4567', 'jo@example.org', '12345678']) {
      assert.ok(!ruled.text.includes(secret), `${secret} stays with rules ${JSON.stringify(rules)}`);
    }
    // Every span the model alone redacts stays redacted.
    for (const r of plain.redactions) assert.ok(ruled.redactions.some((s) => s.start <= r.start && r.end <= s.end), 'model span kept');
    assert.ok(ruled.redactions.length >= 1);
  }
  // Only the kinds asked for: the phone number is left to the model.
  const phone = [text.indexOf('555'), text.indexOf('555') + '555-123-4567'.length];
  const byModel = plain.redactions.some((r) => r.start < phone[1] && phone[0] < r.end);
  if (!byModel) assert.ok(model.deid(text, { kinds: ['date'] }).text.includes('555-123-4567'));
  // Names from a list.
  assert.ok(!model.deid('Jane Roe was seen.', { kinds: [], names: ['Jane Roe'] }).text.includes('Jane Roe'));
  assert.deepEqual(model.deid('Nothing here', false), model.deid('Nothing here'));
  assert.deepEqual(model.deid('   ', true), { text: '   ', redactions: [], counts: {} });

  const code = (fn) => { try { fn(); } catch (e) { assert.equal(e.name, 'BedsideError'); return e.code; } return null; };
  assert.equal(code(() => model.tag('chest pain', 'loudest')), 'invalid_argument');
  assert.equal(code(() => model.deid('chest pain', { kinds: ['blood_type'] })), 'invalid_argument');
  assert.equal(code(() => model.deid('chest pain', { rulez: true })), 'invalid_argument');
  // A wrong kind is not echoed: it may be a name typed in the wrong place.
  assert.throws(() => model.deid('chest pain', { kinds: ['Jane Roe'] }), (e) => e.code === 'invalid_argument' && !e.message.includes('Jane'));

  const classifier = Bedside.load(readFileSync(exportBundle(work, fixture('tiny-classifier'), 'q8_0', 'tiny-classifier.gguf')));
  assert.equal(classifier.task, 'classification');
  assert.equal(code(() => classifier.tag('chest pain')), 'wrong_task');
  assert.equal(code(() => classifier.deid('chest pain')), 'wrong_task');
});
