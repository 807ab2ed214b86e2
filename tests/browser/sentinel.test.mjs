// No note text in any message the page shows or logs (issue P7): a sentinel patient line goes
// through every loader of the page on its error paths — a classified note, a header-less notes
// CSV, a CSV with an empty note, a note picked as a bundle, a header-less document file, an
// empty document — and must appear in no console message (of any level), uncaught error, or
// status/error box. The tables' own reader is tested in plain Node in docs.test.mjs.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, launch, root, serve, workDir } from './helpers.mjs';

const SENTINEL = 'Jane Q Patient DOB 01/02/1950 MRN 1234567';
const FRAGMENTS = ['Jane', '1234567', '01/02/1950'];
const BOXES = ['global-error', 'model-status', 'model-error', 'classify-status', 'classify-error', 'batch-status',
  'batch-error', 'index-status', 'search-error'];
const TIMEOUT = 60_000;

const work = workDir('sentinel');
let server, browser, page;
const messages = [];

/** The text of every status and error box, and the page title. */
async function shownText() {
  return page.evaluate((ids) => [document.title, ...ids.map((id) => document.getElementById(id)?.textContent ?? '')]
    .join('\n'), BOXES);
}

function assertNoSentinel(text, where) {
  for (const fragment of FRAGMENTS) assert.ok(!text.includes(fragment), `${where} holds part of the note: ${text}`);
}

/** Picks `contents` as `name` in the file input `input`, then waits until box `box` shows an error. */
async function pickAndWaitForError(input, name, contents, box) {
  const path = join(work, name);
  writeFileSync(path, contents);
  await page.evaluate((id) => { document.getElementById(id).textContent = ''; }, box);
  await page.setInputFiles(`#${input}`, path);
  await page.waitForFunction((id) => document.getElementById(id).textContent.trim() !== '', box, { timeout: TIMEOUT });
  return page.$eval(`#${box}`, (e) => e.textContent);
}

describe('the page never repeats a note in a message', () => {
  before(async () => {
    const bundle = join(work, 'tiny-classifier-q8_0.gguf');
    cli('export', '--model', join(root, 'models/fixtures/tiny-classifier'), '--quant', 'q8_0', '--out', bundle);
    server = await serve({ model: bundle });
    browser = await launch();
    page = await (await browser.newContext()).newPage();
    page.on('console', (m) => messages.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => messages.push(`pageerror: ${e.message}\n${e.stack ?? ''}`));
    page.on('worker', (w) => w.on('console', (m) => messages.push(`worker console.${m.type()}: ${m.text()}`)));
  });

  after(async () => {
    await browser?.close();
    server?.stop();
  });

  test('every error path of the page, then the console', async () => {
    await page.goto(`${server.url}/`);
    await page.waitForSelector('body[data-model-ready="true"]', { timeout: TIMEOUT });

    // Every field a note or query is typed into keeps it from the browser's (cloud) spellcheck
    // and autofill.
    const unguarded = await page.evaluate(() => [...document.querySelectorAll('textarea, input[type=text], input[type=search]')]
      .filter((e) => e.spellcheck !== false || e.getAttribute('autocomplete') !== 'off').map((e) => e.id));
    assert.deepEqual(unguarded, []);

    // A note classified normally.
    await page.fill('#note', `${SENTINEL} presented with chest pain radiating to the left arm.`);
    await page.click('#classify-run');
    await page.waitForFunction(() => document.getElementById('classify-result').dataset.json, null, { timeout: TIMEOUT });

    // Notes CSVs: without a header row (the first note would be the "header"), and with an empty note.
    const headerless = await pickAndWaitForError('notes-file', 'headerless.csv',
      `1,${SENTINEL} chest pain,cardiology\n2,cough,respiratory\n`, 'batch-error');
    assert.match(headerless, /column/);
    const empty = await pickAndWaitForError('notes-file', 'empty-note.csv', `id,text\n${SENTINEL},   \n`, 'batch-error');
    assert.match(empty, /:2:/);

    // Documents for search, the same two ways.
    for (const [name, contents] of [['docs.csv', `1,${SENTINEL} chest pain\n`], ['docs.jsonl', `{"id": "${SENTINEL}", "text": " "}\n`]]) {
      const path = join(work, name);
      writeFileSync(path, contents);
      await page.evaluate(() => { document.getElementById('search-error').textContent = ''; });
      await page.setInputFiles('#docs-file', path);
      await page.click('#index-build');
      await page.waitForFunction(() => document.getElementById('search-error').textContent.trim() !== '', null, { timeout: TIMEOUT });
    }

    // A note picked as the model: refused by its first bytes, which are not echoed.
    const notBundle = await pickAndWaitForError('model-file', 'note.gguf', `${SENTINEL} presented with chest pain\n`, 'model-error');
    assert.match(notBundle, /bad_magic/);

    assertNoSentinel(await shownText(), 'a status or error box');
    for (const message of messages) assertNoSentinel(message, 'the console');
  });
});
