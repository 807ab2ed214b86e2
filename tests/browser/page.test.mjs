// The page (www/) end to end in headless Chromium and Firefox, served by `bedside serve --model`,
// on real MiniLM bundles (made once, shared by both): its results must equal the native CLI's on
// the same bundle, with the numerics of the wasm build that browser runs.
// Run: node --test tests/browser/   (after `cargo build` and scripts/build-wasm.sh)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BROWSERS, MAX_ABS_DIFF, assertSameClassification, assertWasmBuild, browserNames, classifierBundle, cli, downloadText,
  embeddingBundle, fixtures, matmulFor, nativeClassify, openBrowser, root, screenshot, serve, watchPage, workDir,
} from './helpers.mjs';
import { parseCsv, parseDocuments } from '../../www/widget/docs.js';

const work = workDir('page');
const notes = parseDocuments('notes.csv', readFileSync(join(fixtures, 'notes.csv'), 'utf8'));
let classifier, embedder;

const LOAD_TIMEOUT = 120_000;

// The WebGPU build of the runtime (issue P4): Bedside.create in www/pkg.
const hasWebgpuBuild = readFileSync(join(root, 'www/pkg/bedside_runtime.d.ts'), 'utf8').includes('static create(');
/** WebGPU vs the CLI's CPU path with dequantized weights (the numerics the shaders compute; the
 * default integer path also rounds activations): float sums in another order, as in webgpu.test.mjs. */
const GPU_TOLERANCE = 1e-3;
const REFERENCE = ['--backend', 'cpu', '--quantized-matmul', 'dequantized'];

// The bundles, once for every browser (training the probe takes seconds).
before(() => {
  classifier = classifierBundle(work);
  embedder = embeddingBundle(work);
});

for (const name of browserNames) {
  const { wasmBuild, webgpu } = BROWSERS[name];
  /** The CLI flags for this browser's numerics. */
  const MATMUL = matmulFor(wasmBuild);
  /** Screenshot names: Chromium's as before, Firefox's with a suffix. */
  const shot = (base) => (name === 'chromium' ? base : `${base}-${name}`);
  let server, browser, page, problems;

  async function waitForModel(source) {
    await page.waitForSelector('body[data-model-ready="true"]', { timeout: LOAD_TIMEOUT });
    if (source) await page.waitForFunction((s) => document.body.dataset.modelSource === s, source, { timeout: LOAD_TIMEOUT });
  }

  async function classifyInPage(text) {
    await page.fill('#note', text);
    await page.evaluate(() => { delete document.getElementById('classify-result').dataset.json; });
    await page.click('#classify-run');
    await page.waitForFunction(() => document.getElementById('classify-result').dataset.json
      || !document.getElementById('classify-error').hidden, null, { timeout: LOAD_TIMEOUT });
    const error = await page.$eval('#classify-error', (e) => (e.hidden ? null : e.textContent));
    assert.equal(error, null, `classify error: ${error}`);
    return JSON.parse(await page.$eval('#classify-result', (e) => e.dataset.json));
  }

  describe(`the page in ${name}`, () => {
    before(async () => {
      server = await serve({ model: classifier });
      browser = await openBrowser(name);
      page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      problems = watchPage(page);
    });

    after(async () => {
      await browser?.close();
      server?.stop();
    });

    test('loads the served bundle and shows its checksum and backend', async () => {
      await page.goto(`${server.url}/`);
      await waitForModel('network');
      const stored = JSON.parse(cli('inspect', classifier)).checksum;
      assert.equal(await page.textContent('#info-checksum'), stored);
      assert.match(await page.textContent('#info-verified'), /verified/);
      // Without WebGPU (Firefox on Linux) "auto" runs on the CPU.
      assert.match(await page.textContent('#backend-badge'), webgpu ? /Backend: (WASM \(CPU\)|WebGPU)/ : /^Backend: WASM \(CPU\)$/);
      assert.equal(await page.textContent('#info-task'), 'classification');
      // The probe's head reads the mean of the token vectors, and the page says so.
      assert.equal(JSON.parse(cli('inspect', classifier)).head_features, 'mean');
      assert.equal(await page.textContent('#info-features'), 'the mean of the token vectors');
      assert.equal(await page.textContent('#isolation-badge'), 'Cross-origin isolated: yes');
      assertWasmBuild(assert, name, await page.evaluate(() => document.body.dataset.wasmBuild));
      assert.deepEqual(problems, []);
    });

    test('classifies notes exactly like `bedside classify --json`', async () => {
      const native = nativeClassify(classifier, notes.map((n) => n.text), MATMUL);
      for (const [i, note] of notes.entries()) {
        const got = await classifyInPage(note.text);
        assertSameClassification(assert, got, native[i], note.id);
        // The highlighted passage is the top window, converted from UTF-8 byte offsets.
        const top = native[i].chunks.reduce((a, b) => (b.score > a.score ? b : a));
        const want = Buffer.from(note.text, 'utf8').subarray(top.start, top.end).toString('utf8');
        assert.equal(await page.textContent('#result-passage mark'), want, `${note.id}: highlighted passage`);
        assert.equal(await page.isVisible('#result-uncertain'), native[i].uncertain, `${note.id}: uncertain badge`);
        assert.match(await page.textContent('#classify-status'), webgpu ? /ms on (WASM \(CPU\)|WebGPU)/ : /ms on WASM \(CPU\)/);
      }
      // A long note: several windows; show the screenshot with the highlighted passage.
      assert.ok(native.at(-1).chunks.length > 1, 'the long fixture note spans several windows');
      await screenshot(page, shot('page-classify'));
    });

    test('classifies a CSV of notes; the downloaded CSV matches the CLI', async () => {
      await page.setInputFiles('#notes-file', join(fixtures, 'notes.csv'));
      await page.waitForSelector('#batch-results:not([hidden])', { timeout: LOAD_TIMEOUT });
      assert.equal(await page.locator('#batch-table tbody tr').count(), notes.length);
      const rows = parseCsv(await downloadText(page, '#batch-download'));
      const header = rows[0].cells;
      const col = (name) => header.indexOf(name);
      const native = cli('classify', '--model', classifier, ...MATMUL, '--json', '--input', join(fixtures, 'notes.csv'))
        .trim().split('\n').map((l) => JSON.parse(l));
      assert.equal(rows.length - 1, native.length);
      native.forEach((want, i) => {
        const cells = rows[i + 1].cells;
        assert.equal(cells[col('id')], want.id);
        assert.equal(cells[col('label')], want.label);
        assert.equal(cells[col('uncertain')], String(want.uncertain));
        for (const [label, p] of Object.entries(want.probabilities)) {
          assert.ok(Math.abs(Number(cells[col(`p:${label}`)]) - p) <= MAX_ABS_DIFF, `${want.id} P(${label})`);
        }
      });
      await screenshot(page, shot('page-batch'));
    });

    test('a second visit loads the bundle from the cache; the cache can be cleared', async () => {
      await page.reload();
      const started = Date.now();
      await waitForModel('cache');
      const seconds = (Date.now() - started) / 1000;
      assert.match(await page.textContent('#info-source'), /cache/);
      assert.match(await page.textContent('#cache-status'), /model\.gguf/);
      assert.ok(seconds < 30, `cached load took ${seconds} s`);
      await page.click('#cache-clear');
      await page.waitForFunction(() => /Removed 1 cached bundle/.test(document.getElementById('cache-status').textContent));
      assert.equal(await page.evaluate(async () => (await caches.keys()).length), 0);
    });

    test('a damaged bundle is refused with a visible error, the old model keeps running', async () => {
      const bytes = readFileSync(classifier);
      bytes[bytes.length - 100] ^= 0xff; // inside the tensor data, covered by the checksum
      const damaged = join(work, 'damaged.gguf');
      writeFileSync(damaged, bytes);
      await page.setInputFiles('#model-file', damaged);
      await page.waitForSelector('#model-error:not([hidden])', { timeout: LOAD_TIMEOUT });
      assert.match(await page.textContent('#model-error'), /checksum_mismatch/);
      const notBundle = join(work, 'notes.gguf');
      writeFileSync(notBundle, 'id,text\n1,not a model\n');
      await page.setInputFiles('#model-file', notBundle);
      await page.waitForFunction(() => /bad_magic/.test(document.getElementById('model-error').textContent));
      await screenshot(page, shot('page-bad-bundle'));
      // Refused bundles are not cached.
      const cached = await page.evaluate(async () => (await (await caches.open('bedside-bundles-v1')).keys()).map((r) => r.url));
      assert.deepEqual(cached.filter((u) => /damaged|notes\.gguf/.test(u)), []);
      const got = await classifyInPage(notes[0].text);
      assert.equal(got.label, nativeClassify(classifier, [notes[0].text], MATMUL)[0].label);
    });

    test('search: index local documents, rank like `bedside search`, compare two texts, map', async () => {
      await page.setInputFiles('#model-file', embedder);
      await page.waitForFunction(() => document.getElementById('info-task').textContent === 'embedding', null, { timeout: LOAD_TIMEOUT });
      assert.equal(await page.isDisabled('#classify-run'), true, 'an embedding bundle cannot classify');

      const corpus = join(fixtures, 'docs.jsonl');
      await page.setInputFiles('#docs-file', corpus);
      await page.click('#index-build');
      await page.waitForFunction(() => /documents indexed/.test(document.getElementById('index-status').textContent), null, { timeout: LOAD_TIMEOUT });

      for (const query of ['T2DM with CKD stage 3', 'chest pain', 'lung infection treated with antibiotics']) {
        await page.fill('#query', query);
        await page.fill('#query-k', '5');
        await page.evaluate(() => { delete document.getElementById('search-results').dataset.json; });
        await page.click('#search-run');
        await page.waitForFunction(() => document.getElementById('search-results').dataset.json, null, { timeout: LOAD_TIMEOUT });
        const got = JSON.parse(await page.$eval('#search-results', (e) => e.dataset.json));
        const want = JSON.parse(cli('search', '--model', embedder, ...MATMUL, '--corpus', corpus, '--query', query, '-k', '5',
          '--json'));
        assert.deepEqual(got.map((h) => h.id), want.map((h) => h.id), `top-5 ids for ${query}`);
        got.forEach((h, i) => assert.ok(Math.abs(h.score - want[i].score) <= MAX_ABS_DIFF, `${query}: score of ${h.id}`));
        assert.equal(await page.locator('#search-results li').count(), 5);
      }

      const a = await page.inputValue('#compare-a');
      const b = await page.inputValue('#compare-b');
      await page.click('#compare-run');
      await page.waitForFunction(() => document.getElementById('compare-result').dataset.cosine);
      const cosine = Number(await page.$eval('#compare-result', (e) => e.dataset.cosine));
      const native = JSON.parse(cli('similarity', '--model', embedder, ...MATMUL, '--json', a, b)).cosine;
      assert.ok(Math.abs(cosine - native) <= MAX_ABS_DIFF, `cosine ${cosine} vs ${native}`);

      // The map: one dot per document, coloured by the file's labels, with a hover card.
      const docs = readFileSync(corpus, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      assert.equal(await page.locator('#map circle').count(), docs.length);
      const legend = await page.locator('#map-legend li').allTextContents();
      assert.deepEqual(legend, [...new Set(docs.map((d) => d.label))].sort());
      await page.hover('#map circle[data-id="d4"]');
      await page.waitForSelector('#map-tooltip:not([hidden])');
      assert.match(await page.textContent('#map-tooltip'), /d4 · cardiac.*myocardial infarction/);
      // Keyboard: a focused dot shows the same card.
      await page.focus('#map circle[data-id="d9"]');
      assert.match(await page.textContent('#map-tooltip'), /d9 · injury/);
      await screenshot(page, shot('page-search'));
      assert.deepEqual(problems.filter((p) => !/checksum_mismatch|bad_magic/.test(p)), []);
    });
  });

  // A fresh browser and page on `bedside serve` with the classifier, for the describe it is called in.
  function openPageOnServer() {
    before(async () => {
      browser = await openBrowser(name);
      page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      problems = watchPage(page);
      server = await serve({ model: classifier });
    });

    after(async () => {
      await browser?.close();
      server?.stop();
    });
  }

  // The WebGPU build of the runtime (issue P4) runs on SwiftShader in headless Chromium: the
  // page's backend switch, badge, classify and search go through the async API there. Firefox
  // (Linux ESR) has no WebGPU: there the switch must fall back to the CPU, say why, and still give
  // the CLI's numbers.
  if (webgpu) {
    describe(`the page on WebGPU in ${name}`, { skip: !hasWebgpuBuild && 'www/pkg has no WebGPU backend (Bedside.create)' }, () => {
      openPageOnServer();

      test('backend "webgpu": the badge says so, classify and search agree with the CLI', async () => {
        await page.goto(`${server.url}/`);
        await waitForModel('network');
        await page.selectOption('#backend-select', 'webgpu');
        await page.waitForFunction(() => document.body.dataset.backend === 'webgpu', null, { timeout: LOAD_TIMEOUT });
        assert.equal(await page.textContent('#backend-badge'), 'Backend: WebGPU');
        // Two short notes: SwiftShader takes seconds per window.
        const sample = notes.slice(0, 2);
        const native = nativeClassify(classifier, sample.map((n) => n.text), REFERENCE);
        for (const [i, note] of sample.entries()) {
          const got = await classifyInPage(note.text);
          assert.equal(got.label, native[i].label, `${note.id}: label`);
          for (const [label, p] of Object.entries(native[i].probabilities)) {
            assert.ok(Math.abs(got.probabilities[label] - p) <= GPU_TOLERANCE, `${note.id}: P(${label}) ${got.probabilities[label]} vs ${p}`);
          }
        }
        assert.match(await page.textContent('#classify-status'), /ms on WebGPU/);

        // Four pasted documents; ids are line numbers, as for a .txt corpus of the CLI.
        const lines = ['Type 2 diabetes mellitus with diabetic chronic kidney disease', 'Essential (primary) hypertension',
          'Community-acquired pneumonia', 'Fractured left radius after a fall'];
        const corpus = join(work, 'gpu-docs.txt');
        writeFileSync(corpus, `${lines.join('\n')}\n`);
        await page.fill('#docs-text', lines.join('\n'));
        await page.click('#index-build');
        await page.waitForFunction(() => /documents indexed/.test(document.getElementById('index-status').textContent), null, { timeout: LOAD_TIMEOUT });
        const query = 'T2DM with CKD stage 3';
        await page.fill('#query', query);
        await page.fill('#query-k', '4');
        await page.click('#search-run');
        await page.waitForFunction(() => document.getElementById('search-results').dataset.json, null, { timeout: LOAD_TIMEOUT });
        const got = JSON.parse(await page.$eval('#search-results', (e) => e.dataset.json));
        const want = JSON.parse(cli('search', '--model', classifier, ...REFERENCE, '--corpus', corpus, '--query', query, '-k', '4', '--json'));
        assert.equal(got[0].id, want[0].id);
        got.forEach((h) => {
          const w = want.find((x) => x.id === h.id);
          if (w) assert.ok(Math.abs(h.score - w.score) <= GPU_TOLERANCE, `score of ${h.id}`);
        });
        await screenshot(page, shot('page-webgpu'));
        assert.deepEqual(problems, []);
      });
    });
  } else {
    describe(`the page without WebGPU in ${name}`, () => {
      openPageOnServer();

      test('"auto" runs on the CPU; asking for WebGPU is refused visibly and the CPU model keeps running', async () => {
        await page.goto(`${server.url}/`);
        await waitForModel('network');
        assert.equal(await page.evaluate(() => typeof navigator.gpu), 'undefined', 'this browser has no WebGPU');
        assert.equal(await page.evaluate(() => document.body.dataset.backend), 'cpu');
        assert.equal(await page.textContent('#backend-badge'), 'Backend: WASM (CPU)');
        assert.match(await page.textContent('#backend-note'), /runs on the CPU/);
        // The runtime loads on "webgpu" only with an adapter: the page shows its error (code gpu).
        await page.selectOption('#backend-select', 'webgpu');
        await page.waitForSelector('#model-error:not([hidden])', { timeout: LOAD_TIMEOUT });
        assert.match(await page.textContent('#model-error'), /no WebGPU adapter.*\(gpu\)$/s);
        assert.match(await page.textContent('#model-status'), /previous model is still loaded/);
        assert.equal(await page.evaluate(() => document.body.dataset.backend), 'cpu');
        assert.equal(await page.textContent('#backend-badge'), 'Backend: WASM (CPU)');
        assertWasmBuild(assert, name, await page.evaluate(() => document.body.dataset.wasmBuild));
        const sample = notes.slice(0, 2);
        const native = nativeClassify(classifier, sample.map((n) => n.text), MATMUL);
        for (const [i, note] of sample.entries()) {
          assertSameClassification(assert, await classifyInPage(note.text), native[i], note.id);
        }
        assert.match(await page.textContent('#classify-status'), /ms on WASM \(CPU\)/);
        await screenshot(page, shot('page-no-webgpu'));
        // The refusal is shown in the page, not thrown at it.
        assert.deepEqual(problems, []);
      });
    });
  }
}
