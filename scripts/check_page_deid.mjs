// The PHI model of scripts/train_ner.sh in the web page: `bedside serve --model` with its q8_0
// bundle, the first N synthetic test notes pasted into the De-identify panel in headless
// Chromium, and each downloaded redacted copy compared with what `bedside deid` writes for the
// same note with the numerics of the browser's wasm build (Chromium runs the relaxed-SIMD
// build: `--quantized-matmul relaxed`). Prints counts only, never note text.
// Run after scripts/train_ner.sh, `cargo build` and scripts/build-wasm.sh:
//   node scripts/check_page_deid.mjs [N]
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, downloadText, openBrowser, root, serve } from '../tests/browser/helpers.mjs';
import { parseCsv, toCsv } from '../www/widget/docs.js';

const n = Number(process.argv[2] ?? 20);
const runs = join(root, 'target/runs/ner/phi');
const table = (file) => {
  const rows = parseCsv(readFileSync(file, 'utf8'));
  const [id, text] = ['id', 'text'].map((c) => rows[0].cells.indexOf(c));
  return rows.slice(1).map((r) => ({ id: r.cells[id], text: r.cells[text] }));
};
const notes = table(join(runs, 'test_notes.csv')).slice(0, n);
const work = mkdtempSync(join(tmpdir(), 'bedside-page-deid-'));
writeFileSync(join(work, 'notes.csv'), toCsv(['id', 'text'], notes.map((r) => [r.id, r.text])));
cli('deid', '--model', join(runs, 'model.gguf'), '--backend', 'cpu', '--quantized-matmul', 'relaxed',
  '--input', join(work, 'notes.csv'), '--out', join(work, 'redacted.csv'));
const cliRedacted = new Map(table(join(work, 'redacted.csv')).map((r) => [r.id, r.text]));

const server = await serve({ model: join(runs, 'model.gguf') });
const browser = await openBrowser('chromium');
let same = 0;
let spans = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  await page.goto(`${server.url}/`);
  await page.waitForSelector('body[data-model-ready="true"]', { timeout: 300_000 });
  for (const note of notes) {
    await page.fill('#deid-note', note.text);
    await page.evaluate(() => { delete document.getElementById('deid-result').dataset.json; });
    await page.click('#deid-run');
    await page.waitForFunction(() => document.getElementById('deid-result').dataset.json
      || !document.getElementById('deid-error').hidden, null, { timeout: 300_000 });
    const result = JSON.parse(await page.$eval('#deid-result', (e) => e.dataset.json));
    spans += result.redactions?.length ?? 0;
    const copy = await downloadText(page, '#deid-download');
    if (copy === cliRedacted.get(note.id)) same += 1;
    else console.log(`note ${note.id}: the page's redacted copy differs from bedside deid's`);
  }
} finally {
  await browser.close();
  server.stop();
}
console.log(`page vs bedside deid: ${same} of ${notes.length} redacted notes identical; ${spans} spans redacted in the page`);
process.exitCode = same === notes.length ? 0 : 1;
