// What the browser tests share: the native CLI, the real MiniLM, bundles made from it,
// `bedside serve`, a plain static server, headless Chromium and Firefox (Debian's, never a
// download), and a small page adapter so the page, widget and privacy tests run in both.
import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const fixtures = join(root, 'tests/browser/fixtures');
export const bin = process.env.BEDSIDE_BIN ?? join(root, 'target/debug/bedside');
export const screenshots = join(root, 'target/browser-screenshots');
export const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const firefoxPath = process.env.FIREFOX ?? '/usr/bin/firefox-esr';

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
 * The browsers the page, widget and privacy tests run in (BEDSIDE_BROWSERS=firefox picks one),
 * and what each offers, as measured on these machines:
 *   chromium  Debian's Chromium (playwright-core over CDP): relaxed SIMD, WebGPU (SwiftShader)
 *   firefox   Debian's firefox-esr 153 (puppeteer-core over WebDriver BiDi): relaxed SIMD too
 *             (the worker's probe in www/widget/wasm-build.js passes), no navigator.gpu on
 *             Linux ("auto" runs on the CPU, "webgpu" is refused), and its BiDi cannot run a
 *             script in a worker
 * The tests assert these facts (`assertWasmBuild`, the backend), so a browser that changes fails
 * loudly instead of being compared with the wrong CLI numerics.
 */
export const BROWSERS = {
  chromium: { wasmBuild: 'relaxed-simd', webgpu: true, evaluatesInWorkers: true },
  // Firefox's WebDriver BiDi lists a page's workers but cannot run a script in one.
  firefox: { wasmBuild: 'relaxed-simd', webgpu: false, evaluatesInWorkers: false },
};
export const browserNames = (process.env.BEDSIDE_BROWSERS ?? Object.keys(BROWSERS).join(','))
  .split(',').map((b) => b.trim()).filter(Boolean);
for (const name of browserNames) if (!BROWSERS[name]) throw new Error(`BEDSIDE_BROWSERS: unknown browser ${name}`);

/**
 * The CLI flags that give the numbers of a wasm build (www/widget/wasm-build.js picks one per
 * browser): the relaxed-SIMD build's q8_0 activations have 7 bits, which
 * `--quantized-matmul relaxed` computes natively; the simd128 build's have 8, the CLI's default
 * integer path.
 */
export function matmulFor(wasmBuild) {
  if (wasmBuild === 'relaxed-simd') return ['--quantized-matmul', 'relaxed'];
  if (wasmBuild === 'simd128') return ['--quantized-matmul', 'integer'];
  throw new Error(`unknown wasm build ${wasmBuild}`);
}

/** The worker runs the build this browser is known to pick (the premise of `matmulFor`). */
export function assertWasmBuild(assert, browserName, wasmBuild) {
  assert.equal(wasmBuild, BROWSERS[browserName].wasmBuild, `${browserName}: the worker should run the ${BROWSERS[browserName].wasmBuild} build`);
}

/** The .wasm file the worker fetches for a build (as www/widget/wasm-build.js names it). */
export function wasmFile(wasmBuild) {
  return wasmBuild === 'relaxed-simd' ? '/pkg/bedside_runtime_relaxed_bg.wasm' : '/pkg/bedside_runtime_bg.wasm';
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

/** `bedside classify --json` on notes, one object per note; `options`: the CLI flags for a
 * browser's numerics (`matmulFor`) or another reference. */
export function nativeClassify(bundle, notes, options) {
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

/**
 * A browser by name ('chromium' or 'firefox') for the tests that run in both. `newPage()` gives
 * a page with the part of Playwright's Page API those tests use: Chromium's is Playwright's own
 * page (in a fresh context), Firefox's a `FirefoxPage` over puppeteer-core. What differs between
 * the two libraries goes through `recordRequests`, `recordConsole` and `downloadText`.
 */
export async function openBrowser(name) {
  if (name === 'chromium') {
    const browser = await launch();
    return {
      name,
      newPage: async ({ viewport } = {}) => (await browser.newContext({ acceptDownloads: true, viewport })).newPage(),
      close: () => browser.close(),
    };
  }
  if (name === 'firefox') {
    const browser = await puppeteer.launch({
      browser: 'firefox', executablePath: firefoxPath, headless: true, protocol: 'webDriverBiDi',
      extraPrefsFirefox: PREFS,
    });
    const downloads = workDir('firefox-downloads');
    let pages = 0;
    return {
      name,
      newPage: async ({ viewport } = {}) => {
        // One browser context per page, as Playwright's newContext: its own cache and storage.
        const dir = join(downloads, String(pages++));
        mkdirSync(dir);
        const context = await browser.createBrowserContext({ downloadBehavior: { policy: 'allow', downloadPath: dir } });
        const page = await context.newPage();
        if (viewport) await page.setViewport(viewport);
        return new FirefoxPage(page, dir);
      },
      close: () => browser.close(),
    };
  }
  throw new Error(`unknown browser ${name}`);
}

// Firefox opens its downloads panel after a download, which takes the focus from the page: no
// focus event fires there afterwards (the page test's keyboard check on the map).
const PREFS = { 'browser.download.alwaysOpenPanel': false };

/** A puppeteer page in Firefox with the Playwright-named methods the tests call. */
class FirefoxPage {
  constructor(page, downloads) {
    this.page = page;
    this.downloads = downloads;
  }

  goto(url) { return this.page.goto(url); }

  reload() { return this.page.reload(); }

  on(event, handler) { this.page.on(event, handler); }

  close() { return this.page.close(); }

  workers() { return this.page.workers(); }

  screenshot(options) { return this.page.screenshot(options); }

  evaluate(fn, arg) { return this.page.evaluate(fn, arg); }

  $eval(selector, fn, arg) { return this.page.$eval(selector, fn, arg); }

  // Playwright waits for a visible element by default.
  waitForSelector(selector, { timeout = 30_000 } = {}) { return this.page.waitForSelector(selector, { timeout, visible: true }); }

  // Playwright's argument order: (fn, arg, options).
  waitForFunction(fn, arg, { timeout = 30_000 } = {}) { return this.page.waitForFunction(fn, { timeout, polling: 50 }, arg); }

  click(selector) { return this.page.click(selector); }

  hover(selector) { return this.page.hover(selector); }

  // As Playwright: element.focus(), which SVG elements have too (puppeteer's focus refuses them).
  focus(selector) { return this.page.$eval(selector, (e) => e.focus()); }

  async selectOption(selector, value) { await this.page.select(selector, value); }

  /** As Playwright's fill: the whole value at once and an `input` event (puppeteer would type it key by key). */
  async fill(selector, value) {
    await this.page.$eval(selector, (e, v) => {
      e.focus();
      e.value = v;
      e.dispatchEvent(new Event('input', { bubbles: true }));
      e.dispatchEvent(new Event('change', { bubbles: true }));
    }, value);
  }

  async setInputFiles(selector, path) {
    const input = await this.page.$(selector);
    if (!input) throw new Error(`no element ${selector}`);
    await input.uploadFile(path);
    await input.dispose();
  }

  textContent(selector) { return this.page.$eval(selector, (e) => e.textContent); }

  inputValue(selector) { return this.page.$eval(selector, (e) => e.value); }

  isDisabled(selector) { return this.page.$eval(selector, (e) => e.disabled); }

  /** Playwright's rule: a non-empty box and not visibility:hidden (false when absent). */
  isVisible(selector) {
    return this.page.evaluate((s) => {
      const e = document.querySelector(s);
      if (!e || !e.checkVisibility({ visibilityProperty: true })) return false;
      const box = e.getBoundingClientRect();
      return box.width > 0 && box.height > 0;
    }, selector);
  }

  locator(selector) {
    return {
      count: () => this.page.$$eval(selector, (all) => all.length),
      allTextContents: () => this.page.$$eval(selector, (all) => all.map((e) => e.textContent)),
    };
  }
}

/**
 * Records every request the page and its workers make, from now on. Returns a function that
 * resolves to them all as {url, method, headers, body} (body: the request body as latin1, '' if
 * none; null if the browser would not give it).
 */
export function recordRequests(page) {
  const requests = [];
  if (page instanceof FirefoxPage) {
    // Over BiDi the worker's requests come with the page's (the test checks that they do).
    page.page.on('request', (r) => {
      const body = r.hasPostData() ? r.fetchPostData().then((b) => b ?? null, () => null) : '';
      requests.push({ url: r.url(), method: r.method(), headers: r.headers(), body });
    });
  } else {
    page.context().on('request', (r) => requests.push({
      url: r.url(), method: r.method(), headers: r.headers(), body: r.postDataBuffer()?.toString('latin1') ?? '',
    }));
  }
  return async () => Promise.all(requests.map(async (r) => ({ ...r, body: await r.body })));
}

/** Records the text of every console message of the page and of its workers, from now on (both
 * libraries report a dedicated worker's console with its page's). */
export function recordConsole(page) {
  const messages = [];
  page.on('console', (m) => messages.push(m.text()));
  return messages;
}

/** Clicks `selector`, which downloads a file, and resolves to the file's text. */
export async function downloadText(page, selector, { timeout = 30_000 } = {}) {
  if (!(page instanceof FirefoxPage)) {
    const [download] = await Promise.all([page.waitForEvent('download', { timeout }), page.click(selector)]);
    return readFileSync(await download.path(), 'utf8');
  }
  const before = new Set(readdirSync(page.downloads));
  await page.click(selector);
  const started = Date.now();
  let last = null;
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    const names = readdirSync(page.downloads).filter((n) => !before.has(n));
    // Firefox writes `name.part` and renames it when the download is complete; a file that is
    // there without its .part and has kept its size for one more poll is done.
    const done = names.filter((n) => !n.endsWith('.part') && !names.includes(`${n}.part`));
    if (done.length > 1) throw new Error(`one click, several downloads: ${done.join(', ')}`);
    const size = done.length === 1 ? statSync(join(page.downloads, done[0])).size : -1;
    if (size > 0 && last === `${done[0]}:${size}`) return readFileSync(join(page.downloads, done[0]), 'utf8');
    last = `${done[0]}:${size}`;
    if (Date.now() - started > timeout) throw new Error(`no download after ${timeout} ms (saw ${names.join(', ') || 'nothing'})`);
  }
}

/** Collects the page's console errors and uncaught exceptions, for failure messages. */
export function watchPage(page) {
  const problems = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  return problems;
}

/** Saves a full-page screenshot as target/browser-screenshots/<name>.png. */
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
