// What the browser tests share: the native CLI, the real MiniLM, bundles made from it,
// `bedside serve`, a plain static server, and headless Chromium (Debian's, never a download).
import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const fixtures = join(root, 'tests/browser/fixtures');
export const bin = process.env.BEDSIDE_BIN ?? join(root, 'target/debug/bedside');
export const screenshots = join(root, 'target/browser-screenshots');
export const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Same-bundle agreement of the wasm and native builds (as in tests/wasm/). */
export const MAX_ABS_DIFF = 1e-5;

export function cli(...args) {
  return execFileSync(bin, args, { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A fresh temporary directory, removed when the test process exits (bundles and a Vite app are big). */
export function workDir(name) {
  const dir = mkdtempSync(join(tmpdir(), `bedside-browser-${name}-`));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function minilmDir() {
  if (process.env.BEDSIDE_MINILM_DIR) return process.env.BEDSIDE_MINILM_DIR;
  return execFileSync('bash', [join(root, 'models/minilm.sh')], { encoding: 'utf8' }).trim();
}

/** The real MiniLM as a q8_0 embedding bundle. */
export function embeddingBundle(work) {
  const out = join(work, 'minilm-q8_0.gguf');
  cli('export', '--model', minilmDir(), '--quant', 'q8_0', '--out', out);
  return out;
}

/**
 * A classifier from the real MiniLM: a frozen-encoder probe (logistic regression) on the
 * mean of the token states (so the page and widget must compute a masked mean, not the
 * pooler) of the committed fixture notes (4 labels, 40 notes; a few seconds), 64-token windows
 * so long notes have several, and "uncertain" below 0.6.
 */
export function classifierBundle(work) {
  const run = join(work, 'probe');
  cli('train', 'probe', '--base', minilmDir(), '--train', join(fixtures, 'train.csv'), '--out', run,
    '--max-seq-len', '64', '--val-ratio', '0.2', '--test-ratio', '0', '--min-confidence', '0.6', '--probe-c', '100',
    '--features', 'mean');
  const out = join(work, 'notes-classifier-q8_0.gguf');
  cli('export', '--model', run, '--quant', 'q8_0', '--out', out);
  return out;
}

/**
 * The CLI flags that give the numbers of the wasm build the widget runs in this Chromium: it has
 * relaxed SIMD, so the worker loads the relaxed-SIMD build (www/widget/wasm-build.js), whose
 * q8_0 activations have 7 bits; `--quantized-matmul relaxed` computes the same natively.
 * `assertRelaxedBuild` checks the premise.
 */
export const BROWSER_MATMUL = ['--quantized-matmul', 'relaxed'];

export function assertRelaxedBuild(assert, wasmBuild) {
  assert.equal(wasmBuild, 'relaxed-simd', 'Chromium has relaxed SIMD: the worker should run that build');
}

export function cosine(a, b) {
  let dot = 0; let na = 0; let nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return dot / Math.sqrt(na * nb);
}

export function maxAbsDiff(a, b) {
  if (a.length !== b.length) throw new Error(`vector lengths differ: ${a.length} vs ${b.length}`);
  return a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
}

/** `bedside classify --json` on notes, one object per note (with the browser's CPU numerics). */
export function nativeClassify(bundle, notes, options = BROWSER_MATMUL) {
  return cli('classify', '--model', bundle, ...options, '--json', ...notes).trim().split('\n').map((l) => JSON.parse(l));
}

/** Starts `bedside serve` on a free port; resolves to {url, stop}. */
export function serve({ model, rootDir = join(root, 'www') } = {}) {
  const args = ['serve', '--port', '0', '--root', rootDir];
  if (model) args.push('--model', model);
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolvePromise, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`bedside serve did not start: ${out}${err}`)), 20000);
    child.stderr.on('data', (d) => { err += d; });
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/on (http:\/\/127\.0\.0\.1:\d+)\//);
      if (m) {
        clearTimeout(timer);
        resolvePromise({ url: m[1], stop: () => child.kill() });
      }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`bedside serve exited ${code}: ${err}`)); });
  });
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.wasm': 'application/wasm', '.json': 'application/json', '.svg': 'image/svg+xml' };

/**
 * A plain static server without any special headers (no CSP, no COOP/COEP): how the widget
 * is served by someone else's site. Records every request it gets.
 */
export function staticServer(dir) {
  const requests = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method, url: req.url });
    const path = resolve(dir, `.${decodeURIComponent(new URL(req.url, 'http://x').pathname)}`);
    let file = path;
    try {
      if (statSync(file).isDirectory()) file = join(file, 'index.html');
      if (!file.startsWith(resolve(dir) + sep)) throw new Error('outside');
      const body = readFileSync(file);
      res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Content-Length': body.length });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end('not found');
    }
  });
  return new Promise((resolvePromise) => {
    server.listen(0, '127.0.0.1', () => resolvePromise({
      url: `http://127.0.0.1:${server.address().port}`,
      requests,
      stop: () => new Promise((r) => server.close(r)),
    }));
  });
}

/** Headless Debian Chromium with the flags of shared/BROWSER.md. */
export function launch() {
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu'],
  });
}

/** Collects the page's console errors and uncaught exceptions, for failure messages. */
export function watchPage(page) {
  const problems = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  return problems;
}

export async function screenshot(page, name) {
  mkdirSync(screenshots, { recursive: true });
  const path = join(screenshots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Classification results agree: label, flags, probabilities and windows. */
export function assertSameClassification(assert, got, want, what) {
  assert.equal(got.label, want.label, `${what}: label`);
  assert.equal(got.uncertain, want.uncertain, `${what}: uncertain`);
  assert.deepEqual(got.labels, want.labels, `${what}: labels`);
  assert.ok(Math.abs(got.score - want.score) <= MAX_ABS_DIFF, `${what}: score ${got.score} vs ${want.score}`);
  for (const [label, p] of Object.entries(want.probabilities)) {
    assert.ok(Math.abs(got.probabilities[label] - p) <= MAX_ABS_DIFF, `${what}: P(${label}) ${got.probabilities[label]} vs ${p}`);
  }
  assert.equal(got.chunks.length, want.chunks.length, `${what}: windows`);
  want.chunks.forEach((c, k) => {
    assert.equal(got.chunks[k].start, c.start, `${what}: window ${k} start`);
    assert.equal(got.chunks[k].end, c.end, `${what}: window ${k} end`);
    assert.ok(Math.abs(got.chunks[k].score - c.score) <= MAX_ABS_DIFF, `${what}: window ${k} score`);
  });
}
