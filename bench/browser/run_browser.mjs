// Serves the bench page and everything it loads from 127.0.0.1, cross-origin isolated (COOP same-origin
// + COEP require-corp on every response, so that both runtimes can run threads), then drives Debian's
// headless Chromium (/usr/bin/chromium, with playwright-core) and Firefox ESR (/usr/bin/firefox-esr, with
// puppeteer-core over WebDriver BiDi); never a downloaded browser:
//   speed: ONE launch per browser; per pass, per configuration (Bedside f32 vs transformers.js fp32,
//          Bedside q8_0 vs transformers.js q8, on 1 thread; and the same pairs on 2 threads: the
//          "-2t" keys) a fresh context and page that loads both and times them call by call on the
//          same texts (window.speed and window.speedThreads in bench.js).
//   load:  per side and dtype, a fresh profile: cold load, then the page reloaded (second load: wasm and
//          model from the browser's caches, as an app would have them).
// usage: node run_browser.mjs OUT_JSON   (env: BENCH_TMP, PASSES, CASES=a_b1_22tok,…, PAIRS_ONLY=f32,q8_0,…,
//        BROWSERS=chromium,firefox (default both), SKIP_LOAD=1, PKG_DIR; CPU_INFO_ONLY=1: print the CPU
//        line and its JSON, and exit)
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

// The CPU and the x86 SIMD flags its wasm engine can use (summarize.py prints the same beside its tables).
const SIMD_FLAGS = ['avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx_vnni'];
function cpuInfo() {
  let text = '';
  try { text = fs.readFileSync('/proc/cpuinfo', 'utf8'); } catch { /* not Linux */ }
  const field = (name) => text.split('\n').find((l) => l.split(':')[0].trim() === name)?.split(':').slice(1).join(':').trim();
  const have = new Set((field('flags') || '').split(/\s+/));
  return { model: field('model name') || os.cpus()[0]?.model || null, simd_flags: SIMD_FLAGS.filter((f) => have.has(f)) };
}
const cpu = cpuInfo();
const cpuLine = `CPU: ${cpu.model}; SIMD flags: ${cpu.simd_flags.join(' ') || 'none of ' + SIMD_FLAGS.join(', ')}`;
if (process.env.CPU_INFO_ONLY === '1') {
  console.log(cpuLine);
  console.log(JSON.stringify({ cpu }));
  process.exit(0);
}
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const TMP = process.env.BENCH_TMP || '/tmp/bedside-bench';
const NM = path.join(TMP, 'node', 'node_modules');
const requireBench = createRequire(path.join(TMP, 'node', 'package.json'));
const { chromium } = requireBench('playwright-core');
const BROWSERS = (process.env.BROWSERS || 'chromium,firefox').split(',');
const FIREFOX = '/usr/bin/firefox-esr';
const OUT_DIR = path.join(ROOT, 'target', 'bench', 'browser');
const ROOTS = {
  '/bench/': HERE,
  '/data/': OUT_DIR,
  '/bundles/': OUT_DIR,
  // PKG_DIR: another Bedside browser build to serve instead (e.g. one built with BEDSIDE_WASM_SIMD=0)
  '/pkg/': path.resolve(process.env.PKG_DIR || path.join(ROOT, 'www', 'pkg')),
  '/widget/': path.join(ROOT, 'www', 'widget'),
  '/models/': path.join(TMP, 'models'),
  '/tjs/': path.join(NM, '@huggingface', 'transformers', 'dist'),
  '/ort/': path.join(NM, 'onnxruntime-web', 'dist'),
};
// static assets may be cached (as on any site); the bench page and its data never are
const CACHEABLE = ['/bundles/', '/pkg/', '/models/', '/tjs/', '/ort/'];
const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json',
  '.wasm': 'application/wasm' };
const ARGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

const requests = [];
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const prefix = Object.keys(ROOTS).find((p) => url.pathname.startsWith(p));
  const file = prefix && path.join(ROOTS[prefix], decodeURIComponent(url.pathname.slice(prefix.length)));
  // cross-origin isolated: SharedArrayBuffer (threads) for both runtimes; every file is same-origin
  const headers = { 'Cache-Control': CACHEABLE.includes(prefix) ? 'max-age=3600' : 'no-store',
    'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
  if (!file || !file.startsWith(ROOTS[prefix]) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    requests.push(`404 ${url.pathname}`);
    res.writeHead(404, headers);
    res.end();
    return;
  }
  const size = fs.statSync(file).size;
  requests.push(`200 ${url.pathname} ${size}`);
  res.writeHead(200, { ...headers, 'Content-Type': MIME[path.extname(file)] || 'application/octet-stream',
    'Content-Length': size });
  fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const origin = `http://127.0.0.1:${server.address().port}`;

async function preparePage(ctx, tag, consoleLines) {
  await ctx.route('**/*', (route) => {
    const u = route.request().url();
    return u.startsWith(origin) || u.startsWith('blob:') || u.startsWith('data:') ? route.continue() : route.abort();
  });
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.on('console', (m) => {
    if (m.text().startsWith('progress')) console.log(`  [${tag}] ${m.text().slice(9)}`);
    else if (consoleLines.length < 30) consoleLines.push(`${m.type()}: ${m.text().slice(0, 300)}`);
  });
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message.slice(0, 300)}`));
  return page;
}

async function openBench(page) {
  await page.goto(`${origin}/bench/bench.html`);
  await page.waitForFunction(() => window.benchReady === true, null, { timeout: 120000 });
}

// Bedside runs the wasm build the page would pick (www/widget/wasm-build.js probes relaxed SIMD: the
// relaxed-SIMD build in Chromium, and in Firefox ESR 153 too); in Chromium q8_0 is also timed on the
// simd128 build, which browsers without relaxed SIMD (Safari, older Firefox) run. The 1-thread pairs call Bedside's API directly (window.speed); the "-2t" ones run
// Bedside through the widget, in its worker, on 1 and 2 threads in the same page, against
// transformers.js with numThreads = 2 (window.speedThreads). PAIRS_ONLY: a subset of keys.
const wanted = (p) => !process.env.PAIRS_ONLY || process.env.PAIRS_ONLY.split(',').includes(p.key);
const PAIRS = [{ key: 'f32', quant: 'f32', tjsDtype: 'fp32' }, { key: 'q8_0', quant: 'q8_0', tjsDtype: 'q8' },
  { key: 'q8_0-simd128', quant: 'q8_0', tjsDtype: 'q8', wasmBuild: 'simd128' },
  { key: 'f32-2t', quant: 'f32', tjsDtype: 'fp32', threads: 2 }, { key: 'q8_0-2t', quant: 'q8_0', tjsDtype: 'q8', threads: 2 }]
  .filter(wanted);
// Firefox: the pairs on the build its page picks (the simd128 pair is Chromium's only)
const FIREFOX_PAIRS = PAIRS.filter((p) => !p.wasmBuild);
const REPS = { a_b1_22tok: 15, b_b1_128tok: 11, c_b8_128tok: 7, d_b1_512tok: 7 };
const PASSES = Number(process.env.PASSES || 3);
const result = { chromium_args: ARGS, cpu, cross_origin_isolated_server: true, passes: [], loads: [] };
console.log(cpuLine);
const outFile = process.argv[2];

// One configuration on an open page: window.speed (1 thread) or window.speedThreads. A page that does
// not answer within PAGE_TIMEOUT_S (default 900) is recorded as an error (a threaded load can hang in
// Firefox, as the widget's notes say) and the run goes on.
const PAGE_TIMEOUT_MS = 1000 * Number(process.env.PAGE_TIMEOUT_S || 900);
const withTimeout = (promise, what) => Promise.race([promise, new Promise((_, fail) =>
  setTimeout(() => fail(new Error(`${what}: no answer in ${PAGE_TIMEOUT_MS / 1000} s`)), PAGE_TIMEOUT_MS).unref())]);
async function timePair(page, pair) {
  const cfg = { ...pair, warmup: 2, reps: REPS, cases: process.env.CASES ? process.env.CASES.split(',') : undefined };
  return withTimeout(pair.threads ? page.evaluate((c) => window.speedThreads(c), cfg)
    : page.evaluate((c) => window.speed(c), cfg), pair.key);
}

// speed, Chromium: one browser for every pass
if (BROWSERS.includes('chromium')) {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ARGS });
  result.chromium_version = browser.version();
  for (let pass = 1; pass <= PASSES; pass++) {
    const runs = {};
    for (const pair of PAIRS) {
      const ctx = await browser.newContext();
      const consoleLines = [];
      const page = await preparePage(ctx, `chromium pass ${pass}`, consoleLines);
      try {
        await openBench(page);
        runs[pair.key] = await timePair(page, pair);
      } catch (e) {
        runs[pair.key] = { error: String(e).slice(0, 2000) };
        console.log(`  [chromium pass ${pass}] ${pair.key}: ${String(e).slice(0, 500)}`);
      }
      runs[pair.key].console = consoleLines;
      await ctx.close();
    }
    result.passes.push(runs);
    fs.writeFileSync(outFile, JSON.stringify(result));
  }
  await browser.close();
}

// speed, Firefox ESR over WebDriver BiDi (puppeteer-core, no browser download): the same pages
if (BROWSERS.includes('firefox')) {
  result.firefox = { passes: [] };
  if (!fs.existsSync(FIREFOX)) {
    result.firefox.error = `${FIREFOX} is missing (apt-get install -y firefox-esr)`;
    console.log(`  [firefox] ${result.firefox.error}`);
  } else {
    const puppeteer = requireBench('puppeteer-core');
    const browser = await puppeteer.launch({ browser: 'firefox', executablePath: FIREFOX, headless: true,
      protocol: 'webDriverBiDi', protocolTimeout: 0 });
    result.firefox.version = await browser.version();
    for (let pass = 1; pass <= PASSES; pass++) {
      const runs = {};
      for (const pair of FIREFOX_PAIRS) {
        const ctx = await browser.createBrowserContext();
        const page = await ctx.newPage();
        const consoleLines = [];
        const tag = `firefox pass ${pass}`;
        page.on('console', (m) => {
          if (m.text().startsWith('progress')) console.log(`  [${tag}] ${m.text().slice(9)}`);
          else if (consoleLines.length < 30) consoleLines.push(`${m.type()}: ${m.text().slice(0, 300)}`);
        });
        page.on('pageerror', (e) => consoleLines.push(`pageerror: ${String(e.message ?? e).slice(0, 300)}`));
        try {
          await page.goto(`${origin}/bench/bench.html`);
          await page.waitForFunction(() => window.benchReady === true, { timeout: 120000 });
          runs[pair.key] = await timePair(page, pair);
        } catch (e) {
          runs[pair.key] = { error: String(e).slice(0, 2000) };
          console.log(`  [${tag}] ${pair.key}: ${String(e).slice(0, 500)}`);
        }
        runs[pair.key].console = consoleLines;
        await withTimeout(ctx.close(), 'closing the context').catch((e) => console.log(`  [${tag}] ${e.message}`));
      }
      result.firefox.passes.push(runs);
      fs.writeFileSync(outFile, JSON.stringify(result));
    }
    await browser.close();
  }
}

// load: a fresh profile per side and dtype; cold, then reloaded
if (process.env.SKIP_LOAD !== '1' && BROWSERS.includes('chromium')) {
  console.log(cpuLine);
  for (const cfg of [{ side: 'bedside', quant: 'f32' }, { side: 'bedside', quant: 'q8_0' },
    { side: 'transformers.js', dtype: 'fp32' }, { side: 'transformers.js', dtype: 'q8' }]) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bedside-bench-chromium-'));
    const ctx = await chromium.launchPersistentContext(dir, { executablePath: '/usr/bin/chromium', headless: true, args: ARGS });
    const consoleLines = [];
    const page = await preparePage(ctx, 'load', consoleLines);
    const r = { ...cfg };
    try {
      requests.length = 0;
      await openBench(page);
      r.cold = await page.evaluate((c) => window.load(c), cfg);
      r.cold_requests = [...requests];
      requests.length = 0;
      await openBench(page); // a second visit: same profile, caches warm
      r.cached = await page.evaluate((c) => window.load(c), cfg);
      r.cached_requests = [...requests];
    } catch (e) {
      r.error = String(e).slice(0, 2000);
    }
    r.console = consoleLines;
    await ctx.close();
    fs.rmSync(dir, { recursive: true, force: true });
    console.log(`  [load] ${cfg.side} ${cfg.quant ?? cfg.dtype}: cold ${r.cold?.load_ms} ms, cached ${r.cached?.load_ms} ms${r.error ? ' ' + r.error.slice(0, 300) : ''}`);
    result.loads.push(r);
    fs.writeFileSync(outFile, JSON.stringify(result));
  }
}
server.close();
