// Semantic search in the wasm build (Node) against `bedside search --json` on the same bundle
// and corpus: the same top-k ids, the same scores.
// Run: node --test tests/wasm/   (after scripts/build-wasm.sh and `cargo build`)
// Env: BEDSIDE_BIN (native CLI, default target/debug/bedside), BEDSIDE_MINILM_DIR (else
// looked up through Python; the MiniLM case fails under CI when it is missing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, exportBundle as exportTo, minilmDir, root, runtime, workDir } from './helpers.mjs';

const { Bedside, BedsideIndex } = runtime;
const work = workDir('bedside-wasm-search-');

/** Same-bundle agreement of f32 cosines between the two builds. */
const MAX_SCORE_DIFF_F32 = 1e-5;
/** int8 scores: a 1e-7 change in an embedding can move one code by one step. */
const MAX_SCORE_DIFF_INT8 = 1e-3;
const K = 5;

const exportBundle = (model, quant, name) => exportTo(work, model, quant, name);

// The parity sentences plus short clinical notes: a corpus with near and far neighbours.
const sentences = JSON.parse(readFileSync(join(root, 'tests/fixtures/minilm_reference.json'), 'utf8')).sentences;
const notes = [
  'Type 2 diabetes mellitus with diabetic chronic kidney disease',
  'Chronic kidney disease, stage 3 (moderate)',
  'Essential (primary) hypertension',
  'Acute myocardial infarction of inferior wall',
  'Patient denies chest pain or shortness of breath.',
  'Community-acquired pneumonia, started on ceftriaxone and azithromycin.',
  'Metformin 500 mg twice daily; HbA1c 7.9%.',
  'Follow up in the heart failure clinic in two weeks.',
  'Fractured left radius after a fall on an outstretched hand.',
  'Major depressive disorder, single episode, moderate.',
];
const docs = [...new Set([...sentences, ...notes])].map((text, i) => ({ id: `doc-${i}`, text }));
const corpus = join(work, 'corpus.jsonl');
writeFileSync(corpus, docs.map((d) => JSON.stringify(d)).join('\n') + '\n');
const queries = ['T2DM with CKD stage 3', 'chest pain', 'lung infection treated with antibiotics'];

function buildIndex(model, int8) {
  const index = BedsideIndex.forModel(model, int8);
  const events = [];
  index.addTexts(model, docs.map((d) => d.id), docs.map((d) => d.text), (e) => events.push(e));
  assert.equal(index.length, docs.length);
  assert.equal(events.at(-1).status, 'progress');
  assert.equal(events.at(-1).loaded, docs.length);
  assert.equal(events.at(-1).total, docs.length);
  return index;
}

function checkAgainstCli(bundlePath, int8) {
  const model = Bedside.load(readFileSync(bundlePath));
  const index = buildIndex(model, int8);
  const maxDiff = int8 ? MAX_SCORE_DIFF_INT8 : MAX_SCORE_DIFF_F32;
  let worst = 0;
  for (const query of queries) {
    const args = ['search', '--model', bundlePath, '--corpus', corpus, '--query', query, '-k', String(K), '--json'];
    const native = JSON.parse(cli(...args, ...(int8 ? ['--int8'] : [])));
    const wasm = index.search(model, query, K);
    assert.deepEqual(wasm.map((h) => h.id), native.map((h) => h.id), `top-${K} ids for ${JSON.stringify(query)}`);
    wasm.forEach((h, i) => { worst = Math.max(worst, Math.abs(h.score - native[i].score)); });
    // Saved bytes load back into the same answers.
    const reloaded = BedsideIndex.load(index.save());
    assert.deepEqual(reloaded.search(model, query, K), wasm);
  }
  assert.ok(worst <= maxDiff, `max |wasm - native| score = ${worst}`);
  return worst;
}

test('tiny bundle: wasm top-k equals `bedside search --json` (f32 and int8)', () => {
  const path = exportBundle(join(root, 'models/fixtures/tiny-safetensors'), 'q8_0', 'tiny-search.gguf');
  for (const int8 of [false, true]) checkAgainstCli(path, int8);
});

test('MiniLM q8_0 bundle: wasm top-k equals `bedside search --json` (f32 and int8)', (t) => {
  const dir = minilmDir();
  if (!dir) { t.skip('MiniLM not installed'); return; }
  const path = exportBundle(dir, 'q8_0', 'minilm-search.gguf');
  for (const int8 of [false, true]) {
    const worst = checkAgainstCli(path, int8);
    console.log(`MiniLM q8_0 search (${int8 ? 'int8' : 'f32'} index): max |wasm - native| score = ${worst.toExponential(2)}`);
  }
  // The base model puts the CKD descriptions first for the ICD-style query.
  const model = Bedside.load(readFileSync(path));
  const top = buildIndex(model, false).search(model, 'T2DM with CKD stage 3', 2).map((h) => h.id);
  const ckd = docs.filter((d) => /kidney/.test(d.text)).map((d) => d.id);
  assert.ok(ckd.includes(top[0]), `top hit ${top[0]} is a kidney description`);
});

test('index API: vectors, remove, project and typed errors', () => {
  const index = new BedsideIndex(3, false);
  index.add('a', new Float32Array([1, 0, 0]));
  index.add('b', [0, 2, 0]);
  index.add('c', [1, 1, 0]);
  assert.deepEqual(index.searchVector([1, 0.1, 0], 2).map((h) => h.id), ['a', 'c']);
  assert.equal(index.remove('a'), true);
  assert.equal(index.remove('a'), false);
  assert.deepEqual(index.ids(), ['c', 'b']);
  const points = index.project();
  assert.equal(points.length, 2);
  assert.ok(points.every((p) => Number.isFinite(p.x) && Number.isFinite(p.y)));
  const code = (f) => { try { f(); } catch (e) { assert.equal(e.name, 'BedsideError'); return e.code; } return null; };
  assert.equal(code(() => index.add('b', [1, 0, 0])), 'duplicate_id');
  assert.equal(code(() => index.add('d', [1, 0])), 'dimension_mismatch');
  assert.equal(code(() => index.add('d', [0, 0, 0])), 'invalid_vector');
  assert.equal(code(() => new BedsideIndex(3, true).project()), 'empty_corpus');
  assert.equal(code(() => new BedsideIndex(0)), 'invalid_argument');
  assert.equal(code(() => BedsideIndex.load(new Uint8Array([1, 2, 3]))), 'bad_index');
  const bytes = index.save();
  bytes[bytes.length - 1] ^= 1;
  assert.equal(code(() => BedsideIndex.load(bytes)), 'bad_index');
  // A throwing progress callback stops the add and nothing is added.
  const model = Bedside.load(readFileSync(exportBundle(join(root, 'models/fixtures/tiny-safetensors'), 'f32', 'tiny-f32.gguf')));
  const texts = new BedsideIndex(model.manifest().config.hidden_size, true);
  assert.throws(() => texts.addTexts(model, ['x'], ['some text'], () => { throw new Error('stop'); }), /stop/);
  assert.equal(texts.length, 0);
  assert.equal(code(() => texts.addTexts(model, ['x', 'y'], ['a text', '  '])), 'empty_text');
  assert.deepEqual(texts.search(model, 'query', 3), [], 'an empty index finds nothing');
});
