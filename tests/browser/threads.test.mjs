// Wasm threads: on a cross-origin isolated page (`bedside serve` sends COOP/COEP) the widget's
// worker runs the threaded build (www/pkg/threads/, rayon's pool on Web Workers) and its answers
// are the same bits as the single-threaded build's; on a page that is not isolated (a plain
// static server) it falls back to one thread and still answers.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  browserNames, classifierBundle, cli, minilmDir, openBrowser, root, serve, staticServer, watchPage, workDir,
} from './helpers.mjs';

const work = workDir('threads');
const SENTENCES = ['Chest pain radiating to the left arm.', 'HbA1c 9.4% on metformin; polyuria and thirst.', 'No acute distress.'];
// Several 64-token windows (the classifier's), so windows and batches run threaded too.
const LONG_NOTE = Array.from({ length: 12 }, (_, i) =>
  `Day ${i + 1}: productive cough and fever, crackles at the right base, started on amoxicillin.`).join(' ');
let bundles;

before(() => {
  const f32 = join(work, 'minilm-f32.gguf');
  cli('export', '--model', minilmDir(), '--quant', 'f32', '--out', f32);
  // q8_0 (int8 matmuls) with a classifier head, and f32 (the packed f32 matmul).
  bundles = { q8_0: classifierBundle(work), f32 };
});

/** Loads /model.gguf with each thread count in `counts` and runs the same texts through each
 *  (one page call per count, each model's worker ended after it). */
async function runWith(page, counts, classify) {
  const out = { isolated: await page.evaluate(() => self.crossOriginIsolated), runs: [] };
  for (const threads of counts) {
    out.runs.push(await page.evaluate(async ({ threads, sentences, longNote, classify }) => {
      const { load } = await import('/widget/core.js');
      const model = await load('/model.gguf', { backend: 'cpu', cache: false, threads });
      try {
        const started = performance.now();
        const vectors = (await model.embed(sentences)).map((v) => Array.from(v));
        const classified = classify ? [await model.classify(sentences[0]), await model.classify(longNote)] : null;
        return { asked: threads, threads: model.threads, wasmBuild: model.wasmBuild, vectors, classified, ms: performance.now() - started };
      } finally {
        model.dispose();
      }
    }, { threads, sentences: SENTENCES, longNote: LONG_NOTE, classify }));
  }
  return out;
}

for (const name of browserNames) {
  describe(`wasm threads in ${name}`, () => {
    let browser;
    before(async () => { browser = await openBrowser(name); });
    after(async () => { await browser?.close(); });

    // Firefox's 'auto' is one thread (www/widget/wasm-build.js: a threaded load hung there in 4 of
    // about 60 tries), so the threaded build's bits are checked in Chromium.
    if (name === 'firefox') {
      test("'auto' runs one thread on an isolated page, as wasm-build.js says for Firefox", { timeout: 300_000 }, async () => {
        const server = await serve({ model: bundles.q8_0, rootDir: join(root, 'www') });
        try {
          const page = await browser.newPage();
          const problems = watchPage(page);
          await page.goto(`${server.url}/`);
          const got = await runWith(page, ['auto'], true);
          await page.close();
          assert.deepEqual(problems, []);
          assert.equal(got.isolated, true);
          assert.equal(got.runs[0].threads, 1);
          assert.equal(got.runs[0].classified.length, 2);
        } finally {
          server.stop();
        }
      });
    }

    for (const quant of name === 'firefox' ? [] : ['q8_0', 'f32']) {
      test(`the threaded build gives the single-threaded build's bits (${quant})`, { timeout: 300_000 }, async (t) => {
        const server = await serve({ model: bundles[quant], rootDir: join(root, 'www') });
        try {
          const page = await browser.newPage();
          const problems = watchPage(page);
          await page.goto(`${server.url}/`);
          const got = await runWith(page, [1, 2, 3], quant === 'q8_0');
          await page.close();
          assert.deepEqual(problems, []);
          assert.equal(got.isolated, true, 'bedside serve makes the page cross-origin isolated');
          const [one, ...threaded] = got.runs;
          t.diagnostic(`${got.runs.map((r) => `${r.threads} thread(s) ${r.ms.toFixed(0)} ms`).join(', ')} (the texts of this test, not a benchmark)`);
          assert.equal(one.threads, 1);
          for (const run of threaded) {
            assert.equal(run.threads, run.asked, `asked for ${run.asked} threads`);
            assert.equal(run.wasmBuild, one.wasmBuild, 'the same SIMD flavour, threaded');
            // Bit for bit: embeddings (and, with a head, probabilities and window scores).
            assert.deepEqual(run.vectors, one.vectors, `${run.threads} threads: embeddings`);
            assert.deepEqual(run.classified?.map(({ ms, ...rest }) => rest), one.classified?.map(({ ms, ...rest }) => rest),
              `${run.threads} threads: classifications`);
          }
          if (quant === 'q8_0') assert.ok(one.classified[1].chunks.length > 1, 'the long note has several windows');
        } finally {
          server.stop();
        }
      });
    }

    test('an isolated site without the threaded build runs one thread', { timeout: 300_000 }, async () => {
      // As a host that deployed only pkg/*.wasm (or built with BEDSIDE_WASM_THREADS=0) serves it.
      const { cpSync, rmSync } = await import('node:fs');
      const site = join(work, `no-threads-${name}`);
      cpSync(join(root, 'www'), site, { recursive: true });
      rmSync(join(site, 'pkg/threads'), { recursive: true, force: true });
      const server = await serve({ model: bundles.q8_0, rootDir: site });
      try {
        const page = await browser.newPage();
        await page.goto(`${server.url}/`);
        const got = await runWith(page, [2], false);
        await page.close();
        assert.equal(got.isolated, true);
        assert.equal(got.runs[0].threads, 1, 'asked for 2: one thread without the threaded build');
        assert.equal(got.runs[0].vectors.length, SENTENCES.length);
      } finally {
        server.stop();
      }
    });

    test('a page that is not cross-origin isolated runs one thread, with the same answers', { timeout: 300_000 }, async () => {
      // A plain static server (no COOP/COEP): no SharedArrayBuffer, so no threaded build.
      const { cpSync, mkdirSync } = await import('node:fs');
      const site = join(work, `plain-${name}`);
      mkdirSync(site, { recursive: true });
      for (const dir of ['widget', 'pkg']) cpSync(join(root, 'www', dir), join(site, dir), { recursive: true });
      cpSync(bundles.q8_0, join(site, 'model.gguf'));
      const { writeFileSync } = await import('node:fs');
      writeFileSync(join(site, 'index.html'), '<!doctype html><meta charset="utf-8"><title>plain</title><link rel="icon" href="data:,"><p>plain</p>');
      const server = await staticServer(site);
      const isolated = await serve({ model: bundles.q8_0, rootDir: join(root, 'www') });
      try {
        const page = await browser.newPage();
        const problems = watchPage(page);
        await page.goto(`${server.url}/`);
        const plain = await runWith(page, [4, 'auto'], true);
        await page.close();
        assert.deepEqual(problems, []);
        assert.equal(plain.isolated, false);
        for (const run of plain.runs) assert.equal(run.threads, 1, `asked for ${run.asked}: one thread without isolation`);
        assert.ok(!server.requests.some((r) => r.url.includes('/pkg/threads/')), 'the threaded build is never fetched');

        const page2 = await browser.newPage();
        await page2.goto(`${isolated.url}/`);
        // Firefox: 'auto', one thread (see above); Chromium: two.
        const threaded = await runWith(page2, [name === 'firefox' ? 'auto' : 2], true);
        await page2.close();
        assert.equal(threaded.runs[0].threads, name === 'firefox' ? 1 : 2);
        assert.deepEqual(plain.runs[0].vectors, threaded.runs[0].vectors);
        assert.deepEqual(plain.runs[0].classified.map(({ ms, ...r }) => r), threaded.runs[0].classified.map(({ ms, ...r }) => r));
      } finally {
        await server.stop();
        isolated.stop();
      }
    });
  });
}
