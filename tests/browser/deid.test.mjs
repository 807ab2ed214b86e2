// The page's "De-identify a note" panel in headless Chromium and Firefox, served by `bedside
// serve --model` with the tiny token-classification fixture (models/fixtures/tiny-bert-ner, a
// random BertForTokenClassification, exported to an f32 bundle): the highlighted entities must be
// transformers' pipeline entities (aggregation "simple", recorded in expected.json), the
// downloaded redacted copy must be what `bedside deid` (the Rust runtime, natively) writes, and
// no note text may reach the console or the network. The widget (<bedside-deid>, model.tag and
// model.deid from www/widget in a plain page) gives transformers' entities for every aggregation
// strategy, for tiny-roberta-ner (byte-level BPE) too. In Chromium, WebGPU (SwiftShader) must tag
// as the wasm CPU path does, when the browser offers an adapter (BEDSIDE_REQUIRE_WEBGPU=1: it must).
// Run: node --test --test-concurrency=1 tests/browser/deid.test.mjs   (after `cargo build` and
// scripts/build-wasm.sh)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BROWSERS, browserNames, cli, downloadText, openBrowser, recordConsole, recordRequests, root, screenshot, serve, staticServer,
  watchPage, workDir,
} from './helpers.mjs';
import { parseCsv, toCsv } from '../../www/widget/docs.js';

const work = workDir('deid');
const FIXTURE = join(root, 'models/fixtures/tiny-bert-ner');
const expected = JSON.parse(readFileSync(join(FIXTURE, 'expected.json'), 'utf8'));
/** A RoBERTa token classifier (byte-level BPE, tokenized in the browser by wasm/src/pipeline/bpe.rs). */
const ROBERTA = join(root, 'models/fixtures/tiny-roberta-ner');
const expectedRoberta = JSON.parse(readFileSync(join(ROBERTA, 'expected.json'), 'utf8'));
const texts = expected.texts;
/** A note the pattern rules have something to do in (a date, a phone number, an e-mail, an MRN). */
const RULES_NOTE = 'Zoë Müller seen 3/4/2024 at City Hospital; call 555-123-4567 or jo@example.org. MRN 12345678.';
/** transformers' f32 scores vs the runtime's f32 forward (as the Rust and Node fixture tests). */
const MAX_SCORE_DIFF = 1e-4;
const STRATEGIES = ['none', 'simple', 'first', 'average', 'max'];
const LOAD_TIMEOUT = 120_000;

let bundle;
/** `bedside deid` of every fixture text (and RULES_NOTE), without and with --rules. */
const native = { plain: [], rules: [] };

function nativeDeid(notes, rules) {
  const input = join(work, `notes-${rules ? 'rules' : 'plain'}.csv`);
  const out = join(work, `redacted-${rules ? 'rules' : 'plain'}.csv`);
  writeFileSync(input, toCsv(['id', 'text'], notes.map((t, i) => [String(i), t])));
  cli('deid', '--model', bundle, '--backend', 'cpu', '--input', input, '--out', out, ...(rules ? ['--rules'] : []));
  const rows = parseCsv(readFileSync(out, 'utf8'));
  const col = rows[0].cells.indexOf('text');
  return rows.slice(1).map((r) => r.cells[col]);
}

/** A host page for the widget (www/widget and www/pkg as the package ships them, a plain static
 * server): a <bedside-deid> element, and the API's tag/deid on every strategy. */
const site = join(work, 'site');
const ELEMENT_NOTE = texts[0];

before(() => {
  bundle = join(work, 'tiny-bert-ner-f32.gguf');
  cli('export', '--model', FIXTURE, '--quant', 'f32', '--out', bundle);
  native.plain = nativeDeid([...texts, RULES_NOTE], false);
  native.rules = nativeDeid([...texts, RULES_NOTE], true);
  mkdirSync(site);
  cpSync(join(root, 'www/widget'), join(site, 'widget'), { recursive: true });
  cpSync(join(root, 'www/pkg'), join(site, 'pkg'), { recursive: true });
  cpSync(bundle, join(site, 'model.gguf'));
  cli('export', '--model', ROBERTA, '--quant', 'f32', '--out', join(site, 'roberta.gguf'));
  writeFileSync(join(site, 'index.html'), `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>bedside-deid</title>
<link rel="stylesheet" href="/widget/bedside.css"></head>
<body><bedside-deid id="deid" src="/model.gguf" rules text="${ELEMENT_NOTE.replaceAll('"', '&quot;')}"></bedside-deid>
<script type="module">
import { load } from '/widget/index.js';
window.results = { events: [] };
for (const name of ['bedside-load', 'bedside-deid', 'bedside-error']) {
  document.addEventListener(name, (e) => window.results.events.push({ name, detail: JSON.parse(JSON.stringify(e.detail)) }));
}
async function useApi() {
  const notes = ${JSON.stringify(texts)};
  const model = await load('/model.gguf', { backend: 'cpu' });
  const api = { task: model.task, tag: {}, deid: [] };
  for (const aggregation of ${JSON.stringify(STRATEGIES)}) {
    api.tag[aggregation] = [];
    for (const n of notes) api.tag[aggregation].push(await model.tag(n, { aggregation }));
  }
  for (const n of notes) api.deid.push(await model.deid(n));
  try { await model.tag(notes[0], { aggregation: 'loudest' }); } catch (e) { api.badAggregation = { name: e.name, code: e.code }; }
  const roberta = await load('/roberta.gguf', { backend: 'cpu' });
  api.roberta = {};
  for (const aggregation of ${JSON.stringify(STRATEGIES)}) {
    api.roberta[aggregation] = [];
    for (const n of ${JSON.stringify(expectedRoberta.texts)}) api.roberta[aggregation].push(await roberta.tag(n, { aggregation }));
  }
  window.results.api = api;
}
useApi().catch((e) => { window.results.api = { error: String(e) }; });
</script></body></html>
`);
});

/** The entities transformers found (simple strategy) that have a non-empty span: what is highlighted. */
function wantHighlights(i) {
  return expected.entities.simple[i].filter((e) => e.start_byte < e.end_byte);
}

for (const name of browserNames) {
  const { webgpu } = BROWSERS[name];
  const shot = (base) => (name === 'chromium' ? base : `${base}-${name}`);
  let server, browser, page, problems, consoleMessages, requests;

  async function deidInPage(text, { rules = false } = {}) {
    await page.fill('#deid-note', text);
    await page.evaluate((on) => {
      document.getElementById('deid-rules').checked = on;
      delete document.getElementById('deid-result').dataset.json;
    }, rules);
    await page.click('#deid-run');
    await page.waitForFunction(() => document.getElementById('deid-result').dataset.json
      || !document.getElementById('deid-error').hidden, null, { timeout: LOAD_TIMEOUT });
    const error = await page.$eval('#deid-error', (e) => (e.hidden ? null : e.textContent));
    assert.equal(error, null, `deid error: ${error}`);
    const result = JSON.parse(await page.$eval('#deid-result', (e) => e.dataset.json));
    const marks = await page.evaluate(() => [...document.querySelectorAll('#deid-highlighted mark')].map((m) => ({
      label: m.dataset.label, start: Number(m.dataset.start), end: Number(m.dataset.end), text: m.firstChild.textContent,
      title: m.title, spoken: m.querySelector('.sr-only')?.textContent ?? null,
    })));
    const highlighted = await page.evaluate(() => {
      // The note as shown, without the screen-reader labels.
      const copy = document.getElementById('deid-highlighted').cloneNode(true);
      copy.querySelectorAll('.sr-only').forEach((s) => s.remove());
      return copy.textContent;
    });
    return { result, marks, highlighted };
  }

  describe(`de-identification in the page in ${name}`, () => {
    before(async () => {
      server = await serve({ model: bundle });
      browser = await openBrowser(name);
      page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      problems = watchPage(page);
      consoleMessages = recordConsole(page);
      requests = recordRequests(page);
    });

    after(async () => {
      await browser?.close();
      server?.stop();
    });

    test('a token-classification bundle shows the De-identify panel, not Classify', async () => {
      await page.goto(`${server.url}/`);
      await page.waitForSelector('body[data-model-ready="true"]', { timeout: LOAD_TIMEOUT });
      assert.equal(await page.textContent('#info-task'), 'token-classification');
      assert.ok(await page.isVisible('#deid'), 'the panel is shown');
      assert.ok(await page.isVisible('#deid-nav'), 'and linked from the navigation');
      assert.equal(await page.isDisabled('#deid-run'), false);
      assert.equal(await page.isDisabled('#classify-run'), true, 'a token model cannot classify notes');
      assert.match(await page.textContent('#classify-status'), /token-classification bundle/);
    });

    test('highlights transformers\' entities and downloads what `bedside deid` writes', { timeout: 300_000 }, async () => {
      for (const [i, text] of texts.entries()) {
        const { result, marks, highlighted } = await deidInPage(text);
        const want = wantHighlights(i);
        assert.deepEqual(marks.map((m) => [m.label, m.start, m.end]), want.map((e) => [e.label, e.start_byte, e.end_byte]),
          `text ${i}: highlighted entities`);
        marks.forEach((m, k) => {
          // Each mark holds the entity's characters (UTF-16 offsets from the runtime), says its label to
          // screen readers, and shows label and score on hover.
          assert.equal(m.text, Buffer.from(text).subarray(want[k].start_byte, want[k].end_byte).toString(), `text ${i} entity ${k}: text`);
          assert.equal(m.text, text.slice(want[k].start, want[k].end), `text ${i} entity ${k}: transformers' char span`);
          assert.equal(m.spoken, ` (${m.label})`);
          assert.match(m.title, new RegExp(`^${m.label} \\(\\d+\\.\\d%\\)$`));
        });
        assert.equal(highlighted, text, `text ${i}: the highlighted note is the note`);
        const scored = result.entities.filter((e) => e.start < e.end);
        scored.forEach((e, k) => assert.ok(Math.abs(e.score - want[k].score) <= MAX_SCORE_DIFF, `text ${i} entity ${k}: score ${e.score} vs ${want[k].score}`));

        const copy = await downloadText(page, '#deid-download');
        assert.equal(copy, native.plain[i], `text ${i}: the downloaded copy is bedside deid's`);
        assert.equal(await page.textContent('#deid-redacted'), native.plain[i]);
        // Counts per label: the table equals the result's counts.
        const table = await page.evaluate(() => [...document.querySelectorAll('#deid-counts tbody tr')]
          .map((tr) => [...tr.cells].map((c) => c.textContent.trim())));
        const counts = Object.entries(result.counts).map(([label, n]) => [label, String(n)]);
        assert.deepEqual(table, counts.length ? counts : [['Nothing found to redact.']], `text ${i}: counts`);
      }
      await screenshot(page, shot('page-deid'));
    });

    test('"also apply pattern rules" redacts as `bedside deid --rules`', { timeout: 120_000 }, async () => {
      const i = texts.length; // RULES_NOTE
      const plain = await deidInPage(RULES_NOTE);
      assert.equal(await downloadText(page, '#deid-download'), native.plain[i]);
      const ruled = await deidInPage(RULES_NOTE, { rules: true });
      const copy = await downloadText(page, '#deid-download');
      assert.equal(copy, native.rules[i], 'the downloaded copy is bedside deid --rules\'s');
      for (const secret of ['3/4/2024', '555-123-4567', 'jo@example.org', '12345678']) assert.ok(!copy.includes(secret), secret);
      // The highlights stay the model's entities; the rules add redactions only.
      assert.deepEqual(ruled.marks, plain.marks);
      // (Merged with the rules' spans where they touch: each model span stays inside one.)
      for (const r of plain.result.redactions) {
        assert.ok(ruled.result.redactions.some((s) => s.start <= r.start && r.end <= s.end), `model span ${r.start}..${r.end} kept`);
      }
      await screenshot(page, shot('page-deid-rules'));
    });

    test('no note text in the console or in any request', async () => {
      const all = await requests();
      const notes = [...texts, RULES_NOTE];
      // Fragments of the notes that no file of the page contains.
      const fragments = ['Zoë Müller', 'John  Brown', 'Anna Kowalski', 'jo@example.org', '555-123-4567', 'Kings College'];
      for (const r of all) {
        const url = decodeURIComponent(r.url);
        for (const f of fragments) {
          assert.ok(!url.includes(f), `a request URL holds note text: ${r.url}`);
          assert.ok(!(r.body ?? '').includes(f), `a request body holds note text: ${r.url}`);
        }
        // data: and blob: URLs never leave the browser (Firefox reports its own data: font; the download is a blob:).
        if (/^(data|blob):/.test(r.url)) continue;
        assert.ok(r.url.startsWith(server.url), `a request left the origin: ${r.url.slice(0, 80)}`);
      }
      for (const m of consoleMessages) for (const n of notes) assert.ok(!m.includes(n) && !fragments.some((f) => m.includes(f)), `note text in the console: ${m}`);
      assert.deepEqual(problems, []);
    });

    test('<bedside-deid> and the widget API (tag on every strategy, deid) in a plain page', { timeout: 300_000 }, async () => {
      const host = await staticServer(site);
      const widgetPage = await browser.newPage();
      const widgetProblems = watchPage(widgetPage);
      try {
        await widgetPage.goto(`${host.url}/`);
        await widgetPage.waitForFunction(() => window.results?.api && window.results.events.some((e) => e.name === 'bedside-deid'),
          null, { timeout: LOAD_TIMEOUT });
        const results = await widgetPage.evaluate(() => window.results);
        assert.equal(results.api.error, undefined, results.api.error);
        assert.deepEqual(results.events.filter((e) => e.name === 'bedside-error'), []);
        // The element: the note's entities highlighted, the redacted copy with the rules on (its `rules` attribute).
        const event = results.events.find((e) => e.name === 'bedside-deid').detail;
        assert.equal(event.text, ELEMENT_NOTE);
        assert.equal(event.redacted.text, native.rules[0]);
        const marks = await widgetPage.evaluate(() => [...document.querySelectorAll('bedside-deid mark')].map((m) => ({
          label: m.dataset.label, text: m.firstChild.textContent, spoken: m.querySelector('.bedside-sr')?.textContent })));
        const want = wantHighlights(0);
        assert.deepEqual(marks.map((m) => [m.label, m.text]), want.map((e) => [e.label, ELEMENT_NOTE.slice(e.start, e.end)]));
        for (const m of marks) assert.equal(m.spoken, ` (${m.label})`);
        assert.equal(await widgetPage.$eval('bedside-deid .bedside-redacted', (e) => e.textContent), native.rules[0]);
        assert.ok(await widgetPage.$eval('bedside-deid input[type="checkbox"]', (e) => e.checked), 'the rules attribute ticks the box');
        // The API: transformers' entities for every strategy (BERT and RoBERTa); deid as `bedside deid`.
        assert.equal(results.api.task, 'token-classification');
        for (const [what, tagged, want] of [['BERT', results.api.tag, expected], ['RoBERTa', results.api.roberta, expectedRoberta]]) {
          for (const strategy of STRATEGIES) {
            tagged[strategy].forEach((got, i) => {
              const wantEntities = want.entities[strategy][i];
              const note = want.texts[i];
              assert.deepEqual(got.map((e) => [e.label, e.start, e.end]), wantEntities.map((e) => [e.label, e.start_byte, e.end_byte]), `${what} ${strategy} text ${i}`);
              got.forEach((e, k) => {
                assert.ok(Math.abs(e.score - wantEntities[k].score) <= MAX_SCORE_DIFF, `${what} ${strategy} text ${i} entity ${k}: score`);
                assert.equal(note.slice(e.start_char, e.end_char), note.slice(wantEntities[k].start, wantEntities[k].end));
              });
            });
          }
        }
        results.api.deid.forEach((r, i) => assert.equal(r.text, native.plain[i], `deid text ${i}`));
        assert.deepEqual(results.api.badAggregation, { name: 'BedsideError', code: 'invalid_argument' });
        await screenshot(widgetPage, shot('widget-deid'));
        assert.deepEqual(widgetProblems, []);
      } finally {
        await widgetPage.close();
        await host.stop();
      }
    });

    if (webgpu) {
      test('WebGPU (SwiftShader) tags as the wasm CPU path does', { timeout: 300_000 }, async (t) => {
        const hasAdapter = await page.evaluate(async () => !!(navigator.gpu && await navigator.gpu.requestAdapter()));
        if (!hasAdapter) {
          if (process.env.BEDSIDE_REQUIRE_WEBGPU) assert.fail('no WebGPU adapter in Chromium (BEDSIDE_REQUIRE_WEBGPU is set)');
          t.skip('no WebGPU adapter in this Chromium');
          return;
        }
        const got = await page.evaluate(async (notes) => {
          const wasm = await import('/pkg/bedside_runtime.js');
          await wasm.default({ module_or_path: '/pkg/bedside_runtime_bg.wasm' });
          const bytes = new Uint8Array(await (await fetch('/model.gguf')).arrayBuffer());
          const cpu = wasm.Bedside.load(bytes);
          const gpu = await wasm.Bedside.create(bytes, 'webgpu');
          const out = { backend: gpu.backend, note: gpu.backendNote, cpu: [], gpu: [], cpuDeid: [], gpuDeid: [] };
          for (const n of notes) {
            out.cpu.push(cpu.tag(n, 'simple'));
            out.gpu.push(await gpu.tagAsync(n, 'simple'));
            out.cpuDeid.push(cpu.deid(n, true).text);
            out.gpuDeid.push((await gpu.deidAsync(n, true)).text);
          }
          return out;
        }, [...texts, RULES_NOTE]);
        assert.equal(got.backend, 'webgpu', `not on WebGPU: ${got.note}`);
        got.cpu.forEach((want, i) => {
          assert.deepEqual(got.gpu[i].map((e) => [e.label, e.start, e.end]), want.map((e) => [e.label, e.start, e.end]), `text ${i}: entities`);
          want.forEach((e, k) => assert.ok(Math.abs(got.gpu[i][k].score - e.score) <= 1e-3, `text ${i} entity ${k}: score`));
          assert.equal(got.gpuDeid[i], got.cpuDeid[i], `text ${i}: redacted`);
        });
        // And the CPU path is transformers' (the fixture's entities).
        texts.forEach((_, i) => assert.deepEqual(got.cpu[i].map((e) => [e.label, e.start, e.end]),
          expected.entities.simple[i].map((e) => [e.label, e.start_byte, e.end_byte])));
      });
    }
  });
}
