// The same bundle through the wasm build (Node) and the native CLI gives the same numbers.
// Run: node --test tests/wasm/   (after scripts/build-wasm.sh and `cargo build`)
// Env: BEDSIDE_BIN (native CLI, default target/debug/bedside), BEDSIDE_MINILM_DIR (else
// looked up through Python; the MiniLM cases fail under CI when it is missing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cli, exportBundle as exportTo, minilmDir, root, runtime, workDir } from './helpers.mjs';

const { Bedside } = runtime;
const work = workDir('bedside-wasm-');

/** Same-bundle agreement between the two builds of the runtime. */
const MAX_ABS_DIFF = 1e-5;

const exportBundle = (model, quant, name) => exportTo(work, model, quant, name);

function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length, 'vector lengths differ');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const sentences = JSON.parse(readFileSync(join(root, 'tests/fixtures/minilm_reference.json'), 'utf8')).sentences;

function checkEmbeddings(bundlePath) {
  const model = Bedside.load(readFileSync(bundlePath));
  const wasm = model.embed(sentences);
  const native = JSON.parse(cli('embed', '--model', bundlePath, '--json', ...sentences));
  assert.equal(wasm.length, native.length);
  let worst = 0;
  wasm.forEach((v, i) => { worst = Math.max(worst, maxAbsDiff(Array.from(v), native[i])); });
  assert.ok(worst <= MAX_ABS_DIFF, `max |wasm - native| = ${worst}`);
  return worst;
}

test('tiny classifier: classify and embed agree with the native CLI', () => {
  const path = exportBundle(join(root, 'models/fixtures/tiny-classifier'), 'q8_0', 'tiny.gguf');
  const model = Bedside.load(readFileSync(path));
  assert.equal(model.manifest().task, 'classification');
  // A note longer than the 64-token window: several chunks, aggregated.
  const notes = ['patient denies chest pain.',
    Array(40).fill('male patient with chest pain and shortness of breath, bp 150/90.').join(' ')];
  const native = cli('classify', '--model', path, '--json', ...notes).trim().split('\n').map(JSON.parse);
  notes.forEach((note, i) => {
    const got = model.classify(note);
    assert.equal(got.label, native[i].label);
    assert.equal(got.chunks.length, native[i].chunks.length);
    for (const [label, p] of Object.entries(native[i].probabilities)) {
      assert.ok(Math.abs(got.probabilities[label] - p) <= MAX_ABS_DIFF, `${label}: ${got.probabilities[label]} vs ${p}`);
    }
    got.chunks.forEach((c, k) => {
      assert.equal(c.start, native[i].chunks[k].start);
      assert.ok(Math.abs(c.score - native[i].chunks[k].score) <= MAX_ABS_DIFF);
    });
  });
  assert.ok(native[1].chunks.length > 1, 'long note was windowed');
  checkEmbeddings(path);
});

test('MiniLM f32 and q8_0 bundles: embeddings agree with the native CLI', (t) => {
  const dir = minilmDir();
  if (!dir) { t.skip('MiniLM not installed'); return; }
  for (const quant of ['f32', 'q8_0']) {
    const worst = checkEmbeddings(exportBundle(dir, quant, `minilm-${quant}.gguf`));
    console.log(`MiniLM ${quant}: max |wasm - native| over ${sentences.length} sentences = ${worst.toExponential(2)}`);
  }
});

test('bad bytes raise a BedsideError with a code, not a crash', () => {
  assert.throws(() => Bedside.load(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])),
    (e) => e.name === 'BedsideError' && e.code === 'bad_magic');
  assert.throws(() => Bedside.load(new Uint8Array([0x47, 0x47, 0x55, 0x46, 3, 0])),
    (e) => e.name === 'BedsideError' && e.code === 'truncated_bundle');
  const path = exportBundle(join(root, 'models/fixtures/tiny-classifier'), 'f32', 'tiny32.gguf');
  const model = Bedside.load(readFileSync(path));
  assert.throws(() => model.classify('   '), (e) => e.code === 'empty_text');
});

test('wasm size is reported', () => {
  const web = join(root, 'www/pkg/bedside_runtime_bg.wasm');
  assert.ok(existsSync(web), 'www/pkg built by scripts/build-wasm.sh');
  const bytes = statSync(web).size;
  console.log(`web wasm: ${(bytes / 1e6).toFixed(2)} MB`);
  assert.ok(bytes > 100_000, 'suspiciously small wasm');
});

// A probe head on the mean of the token states (not the pooler) reads the same features in
// the wasm build as natively, windows of a long note included.
test('probe head on mean features: wasm = native CLI', () => {
  const run = join(work, 'probe-mean');
  cli('train', 'probe', '--base', join(root, 'models/fixtures/tiny-safetensors'),
    '--train', join(root, 'tests/browser/fixtures/train.csv'), '--val-ratio', '0.2', '--test-ratio', '0',
    '--max-seq-len', '32', '--features', 'mean', '--out', run);
  for (const quant of ['f32', 'q8_0']) {
    const path = exportBundle(run, quant, `probe-mean-${quant}.gguf`);
    const model = Bedside.load(readFileSync(path));
    assert.equal(model.manifest().head_features, 'mean');
    const notes = ['patient denies chest pain.',
      Array(12).fill('cough and fever with shortness of breath, chest pain at night.').join(' ')];
    const native = cli('classify', '--backend', 'cpu', '--model', path, '--json', ...notes)
      .trim().split('\n').map(JSON.parse);
    assert.ok(native[1].chunks.length > 1, 'long note was windowed');
    notes.forEach((note, i) => {
      const got = model.classify(note);
      assert.equal(got.label, native[i].label);
      for (const [label, p] of Object.entries(native[i].probabilities)) {
        assert.ok(Math.abs(got.probabilities[label] - p) <= MAX_ABS_DIFF, `${quant} ${label}: ${got.probabilities[label]} vs ${p}`);
      }
    });
  }
});
