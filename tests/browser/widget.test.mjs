// The npm widget as a user gets it: `npm pack` www/, install the tarball with Vite into a
// fresh project, build it, serve dist/ from a plain static server (no special headers), and
// check in Chromium and in Firefox that <bedside-classifier>, <bedside-search> and the API give
// the native CLI's numbers (of the wasm build each browser runs). Then the same package from a
// plain <script type="module">, no bundler. The project is built once for both browsers.
// Needs the npm registry (vite). Run: node --test tests/browser/
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BROWSERS, MAX_ABS_DIFF, assertSameClassification, assertWasmBuild, browserNames, classifierBundle, cli, matmulFor, nativeClassify,
  openBrowser, root, screenshot, staticServer, watchPage, workDir,
} from './helpers.mjs';

const VITE = 'vite@8.3.8';
const TYPESCRIPT = 'typescript@5.9.3';

// Type-checks against the package's index.d.ts (strict), as a TypeScript user would.
const TS_CHECK = `import { load, classify, embed, search, type BedsideModel, type Classification } from 'bedside-widget';
export async function main(): Promise<void> {
  const model: BedsideModel = await load('/model.gguf', { backend: 'auto', onProgress: (e) => console.log(e.phase, e.loaded) });
  const r: Classification = await classify('note');
  const v: Float32Array[] = await embed(['a']);
  const hits = await search('q', { k: 3, documents: [{ id: 1, text: 't' }] });
  console.log(model.backend, r.probabilities[r.label], r.chunks[0]?.start, v[0].length, hits[0].score, model.manifest.labels);
  const element = document.querySelector('bedside-classifier');
  element?.addEventListener('bedside-result', () => {});
  await element?.classify('note');
  // Token-classification bundles: entities and de-identification, and <bedside-deid>.
  const entities = await model.tag('note', { aggregation: 'first' });
  const redacted = await model.deid('note', { rules: { kinds: ['date'], names: ['Jane Roe'] } });
  console.log(entities[0]?.start_char, redacted.redactions[0]?.redacted_end, redacted.counts['NAME'], model.task === 'token-classification');
  const deid = document.querySelector('bedside-deid');
  deid?.addEventListener('bedside-deid', () => {});
  console.log((await deid?.deid('note'))?.redacted.text);
}
`;
const work = workDir('widget');
const app = join(work, 'app');
const NOTE = 'Productive cough and fever; chest X-ray shows right lower lobe consolidation.';
const API_NOTE = 'HbA1c 9.4% on metformin; polyuria and thirst.';
const DOCS = { a: 'Acute myocardial infarction of inferior wall', b: 'Community-acquired pneumonia treated with antibiotics',
  c: 'Type 2 diabetes mellitus with hyperglycaemia' };
const QUERY = 'lung infection';
let bundle;

function npm(args, cwd) {
  return execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// The same markup in both pages: a classifier with a note, a search over three documents.
const ELEMENTS = `
<bedside-classifier id="classifier" src="MODEL" text="${NOTE}"></bedside-classifier>
<bedside-search id="search" src="MODEL" k="3" query="${QUERY}">
${Object.entries(DOCS).map(([id, text]) => `  <p data-id="${id}">${text}</p>`).join('\n')}
</bedside-search>`;

// Records the elements' events and the API's answers on window.results.
const SCRIPT = (from) => `
import { load, embed, classify } from '${from}';
window.results = { events: [] };
for (const name of ['bedside-load', 'bedside-result', 'bedside-ready', 'bedside-results', 'bedside-error']) {
  document.addEventListener(name, (e) => window.results.events.push({ name, detail: JSON.parse(JSON.stringify(e.detail)) }));
}
async function useApi() {
  const model = await load(MODEL_URL, { backend: 'auto' });
  const [vector] = await embed(['chest pain']);
  window.results.api = { backend: model.backend, wasmBuild: model.wasmBuild, checksum: model.checksum, embedding: Array.from(vector),
    classification: await classify(${JSON.stringify(API_NOTE)}) };
}
useApi().catch((e) => { window.results.api = { error: String(e) }; });
`;

async function check(browser, url, name) {
  const { wasmBuild, webgpu } = BROWSERS[browser.name];
  const matmul = matmulFor(wasmBuild);
  const page = await browser.newPage();
  const problems = watchPage(page);
  await page.goto(url);
  await page.waitForFunction(() => {
    const r = window.results;
    return r?.api && r.events.some((e) => e.name === 'bedside-result') && r.events.some((e) => e.name === 'bedside-results');
  }, null, { timeout: 120_000 });
  const results = await page.evaluate(() => window.results);
  await screenshot(page, name);
  await page.close();

  assert.equal(results.api.error, undefined, results.api.error);
  assert.deepEqual(results.events.filter((e) => e.name === 'bedside-error'), []);
  const [fromElement, fromApi] = nativeClassify(bundle, [NOTE, API_NOTE], matmul);
  assertSameClassification(assert, results.events.find((e) => e.name === 'bedside-result').detail.result, fromElement, 'element');
  assertSameClassification(assert, results.api.classification, fromApi, 'api');
  assertWasmBuild(assert, browser.name, results.api.wasmBuild);
  const [native] = JSON.parse(cli('embed', '--model', bundle, ...matmul, '--json', 'chest pain'));
  const worst = Math.max(...native.map((x, i) => Math.abs(x - results.api.embedding[i])));
  assert.ok(worst <= MAX_ABS_DIFF, `embedding differs by ${worst}`);
  assert.equal(results.api.checksum, JSON.parse(cli('inspect', bundle)).checksum);
  // "auto": WebGPU where the browser has it, else the CPU (Firefox on Linux has none).
  assert.ok((webgpu ? ['cpu', 'webgpu'] : ['cpu']).includes(results.api.backend), `backend ${results.api.backend}`);

  const hits = results.events.find((e) => e.name === 'bedside-results').detail.hits;
  const corpus = join(work, 'docs.jsonl');
  writeFileSync(corpus, Object.entries(DOCS).map(([id, text]) => JSON.stringify({ id, text })).join('\n'));
  const want = JSON.parse(cli('search', '--model', bundle, ...matmul, '--corpus', corpus, '--query', QUERY, '-k', '3', '--json'));
  assert.deepEqual(hits.map((h) => h.id), want.map((h) => h.id));
  hits.forEach((h, i) => assert.ok(Math.abs(h.score - want[i].score) <= MAX_ABS_DIFF));
  assert.deepEqual(problems, []);
}

describe('the npm widget', () => {
  before(async () => {
    bundle = classifierBundle(work);
    mkdirSync(join(app, 'public'), { recursive: true });
    // The package as published: npm pack of www/ (the wasm build in www/pkg must exist).
    const tarball = join(work, npm(['pack', '--pack-destination', work], join(root, 'www')).trim().split('\n').pop());
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'bedside-vite-check', private: true, type: 'module' }, null, 2));
    npm(['install', VITE, TYPESCRIPT, tarball], app);
    copyFileSync(bundle, join(app, 'public/model.gguf'));
    writeFileSync(join(app, 'index.html'), `<!doctype html>\n<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Vite + bedside-widget</title></head>
<body>${ELEMENTS.replaceAll('MODEL', '/model.gguf')}
<script type="module" src="/main.js"></script></body></html>\n`);
    writeFileSync(join(app, 'main.js'), `import 'bedside-widget/style.css';\nconst MODEL_URL = '/model.gguf';\n${SCRIPT('bedside-widget')}`);
    writeFileSync(join(app, 'plain.html'), `<!doctype html>\n<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>plain bedside-widget</title>
<link rel="stylesheet" href="./node_modules/bedside-widget/widget/bedside.css"></head>
<body>${ELEMENTS.replaceAll('MODEL', './public/model.gguf')}
<script type="module">const MODEL_URL = './public/model.gguf';\n${SCRIPT('./node_modules/bedside-widget/widget/index.js')}</script></body></html>\n`);
    execFileSync(join(app, 'node_modules/.bin/vite'), ['build', '--logLevel', 'warn'], { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] });
  });

  test('its TypeScript types check (tsc --strict)', () => {
    writeFileSync(join(app, 'check.ts'), TS_CHECK);
    execFileSync(join(app, 'node_modules/.bin/tsc'), ['--noEmit', '--strict', '--module', 'esnext', '--moduleResolution', 'bundler',
      '--target', 'es2022', '--lib', 'es2022,dom', 'check.ts'], { cwd: app, encoding: 'utf8' });
  });

  for (const name of browserNames) {
    describe(`in ${name}`, () => {
      let browser;
      /** Screenshot names: Chromium's as before, Firefox's with a suffix. */
      const shot = (base) => (name === 'chromium' ? base : `${base}-${name}`);
      before(async () => { browser = await openBrowser(name); });
      after(async () => { await browser?.close(); });

      test('works in a fresh Vite project (npm pack → npm install → vite build)', async () => {
        const site = await staticServer(join(app, 'dist'));
        try {
          await check(browser, `${site.url}/`, shot('widget-vite'));
          assert.ok(site.requests.some((r) => r.url.endsWith('.wasm')), 'the wasm came from the built assets');
        } finally {
          await site.stop();
        }
      });

      test('works from a plain <script type="module"> without a bundler', async () => {
        const site = await staticServer(app);
        try {
          await check(browser, `${site.url}/plain.html`, shot('widget-plain'));
        } finally {
          await site.stop();
        }
      });
    });
  }
});
