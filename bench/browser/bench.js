// Bedside (wasm, CPU) and transformers.js (onnxruntime-web wasm) in one page, driven by run_browser.mjs:
//   window.speed(cfg): loads both on the same model (Bedside bundle cfg.quant, transformers.js dtype
//     cfg.tjsDtype), then per case: warm-ups of each, then timed runs alternating Bedside and
//     transformers.js call by call, so that the machine's noise falls on both alike.
//   window.speedThreads(cfg): on a cross-origin isolated page, Bedside through the widget API (each
//     model in its own worker: cfg.threads threads, the threaded build, and 1 thread, the
//     single-threaded build) and transformers.js with numThreads = cfg.threads, timed call by call.
//   window.load(cfg): the load time of one side (cold in a fresh browser context, or cached on a reload).
// Every file comes from this page's own origin: /pkg (the Bedside browser build), /bundles (.gguf),
// /tjs and /ort (transformers.js and onnxruntime-web dists), /models (the ONNX folder), /data (texts).
import init, { Bedside } from '/pkg/bedside_runtime.js';
import { bestWasmBuild, wasmUrl } from '/widget/wasm-build.js';
import { pipeline, env } from '/tjs/transformers.min.js';
import { load as widgetLoad } from '/widget/core.js';

// Every Worker the page starts (onnxruntime-web's pthreads are named 'em-pthread'; the widget's own
// worker starts rayon's workers inside it, which the widget reports as model.threads).
const startedWorkers = [];
const PageWorker = self.Worker;
self.Worker = class extends PageWorker {
  constructor(url, options) {
    super(url, options);
    startedWorkers.push({ url: String(url).replace(location.origin, ''), name: options?.name ?? null });
  }
};

const MODEL = 'minilm';
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = '/models/';
env.backends.onnx.wasm.wasmPaths = {
  mjs: '/ort/ort-wasm-simd-threaded.asyncify.mjs',
  wasm: '/ort/ort-wasm-simd-threaded.asyncify.wasm',
};
env.backends.onnx.wasm.numThreads = 1;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const r3 = (x) => Math.round(x * 1000) / 1000;
const log = (msg) => console.log(`progress ${msg}`);

let wasmReady = null;
let wasmBuild = null;
// wasm build: the one the widget would pick in this browser, unless the bench asks for another
async function loadBedside(quant, useCache, build) {
  const t0 = performance.now();
  wasmBuild ??= build ?? bestWasmBuild();
  wasmReady ??= init({ module_or_path: wasmUrl(wasmBuild) });
  await wasmReady;
  const t1 = performance.now();
  // as an app would: the bundle from Cache Storage when it is there, else from the network (then kept)
  const url = `/bundles/minilm-${quant}.gguf`;
  let response = useCache ? await (await caches.open('bedside-bench')).match(url) : undefined;
  const fromCache = !!response;
  if (!response) {
    response = await fetch(url);
    if (useCache) await (await caches.open('bedside-bench')).put(url, response.clone());
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  const t2 = performance.now();
  const model = Bedside.load(bytes);
  const t3 = performance.now();
  return { model, fromCache, bundle_bytes: bytes.length, wasm_build: wasmBuild,
    load_ms: r3(t3 - t0), wasm_init_ms: r3(t1 - t0), fetch_ms: r3(t2 - t1), parse_ms: r3(t3 - t2) };
}

async function loadTjs(dtype, useCache, numThreads = 1) {
  env.useBrowserCache = useCache;
  env.backends.onnx.wasm.numThreads = numThreads; // read once, when onnxruntime-web starts
  const t0 = performance.now();
  const extractor = await pipeline('feature-extraction', MODEL, { device: 'wasm', dtype });
  return { extractor, load_ms: r3(performance.now() - t0) };
}

window.load = async ({ side, quant, dtype }) => {
  if (side === 'bedside') {
    const { model, ...info } = await loadBedside(quant, true);
    model.free();
    return info;
  }
  const { extractor, ...info } = await loadTjs(dtype, true);
  await extractor.dispose?.();
  return info;
};

window.speed = async (cfg) => {
  const texts = await (await fetch('/data/texts.json')).json();
  const bs = await loadBedside(cfg.quant, false, cfg.wasmBuild);
  const tj = await loadTjs(cfg.tjsDtype, false);
  const out = { cfg, crossOriginIsolated: self.crossOriginIsolated, userAgent: navigator.userAgent,
    tjs_numThreads: env.backends.onnx.wasm.numThreads, transformers_version: env.version,
    ort_versions: env.backends.onnx.versions ?? null,
    bedside_wasm_build: bs.wasm_build, bedside_load_ms: bs.load_ms, tjs_load_ms: tj.load_ms, cases: {} };
  const bedside = (xs) => bs.model.embed(xs);
  const tjs = async (xs) => (await tj.extractor(xs, { pooling: 'mean', normalize: true })).tolist();
  const selected = benchCases(texts, cfg);
  // V8 runs wasm first in its baseline tier (Liftoff) and swaps hot functions to optimised
  // code (TurboFan) in the background. Both sides get the same warm-up, at least warmupMs
  // (default 6 s) of alternating calls over every case, so that no case is timed mid-tier-up.
  const warmStart = performance.now();
  do {
    for (const [, input] of selected) {
      bedside(input);
      await tjs(input);
    }
  } while (performance.now() - warmStart < (cfg.warmupMs ?? 6000));
  out.warmup_ms = r3(performance.now() - warmStart);
  for (const [name, input] of selected) {
    const n = input.length;
    const bedsideTokens = input.map((t) => bs.model.tokenIds(t).length);
    const tjsTokens = tj.extractor.tokenizer(input, { padding: true }).input_ids.dims;
    for (let i = 0; i < (cfg.warmup ?? 2); i++) {
      bedside(input);
      await tjs(input);
    }
    const reps = cfg.reps[name];
    const bRuns = [], tRuns = [];
    for (let i = 0; i < reps; i++) {
      let t0 = performance.now();
      const bv = bedside(input);
      bRuns.push(performance.now() - t0);
      t0 = performance.now();
      const tv = await tjs(input);
      tRuns.push(performance.now() - t0);
      if (bv.length !== n || bv[0].length !== 384 || tv.length !== n || tv[0].length !== 384) throw new Error('bad output shape');
    }
    // where Bedside's time goes: the tokenizer alone (tokenIds = tokenize + truncate, per text)
    const tk = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      for (const t of input) bs.model.tokenIds(t);
      tk.push(performance.now() - t0);
    }
    const tjTk = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      tj.extractor.tokenizer(input, { padding: true, truncation: true });
      tjTk.push(performance.now() - t0);
    }
    out.cases[name] = {
      batch: n, bedside_tokens: bedsideTokens, tjs_input_dims: tjsTokens,
      bedside_ms: r3(median(bRuns)), tjs_ms: r3(median(tRuns)),
      bedside_runs_ms: bRuns.map(r3), tjs_runs_ms: tRuns.map(r3),
      bedside_tokenize_ms: r3(median(tk)), tjs_tokenize_ms: r3(median(tjTk)),
      bedside_embeddings: bedside(input).map((v) => Array.from(v)),
      tjs_embeddings: await tjs(input),
    };
    log(`${cfg.quant}/${cfg.tjsDtype} ${name}: bedside ${r3(median(bRuns))} ms, transformers.js ${r3(median(tRuns))} ms`);
  }
  bs.model.free();
  await tj.extractor.dispose?.();
  return out;
};
// The cases in bench order, those cfg.cases names.
function benchCases(texts, cfg) {
  const cases = [
    ['a_b1_22tok', [texts.short_22]],
    ['b_b1_128tok', [texts.t128]],
    ['c_b8_128tok', texts.batch8_128],
    ['d_b1_512tok', [texts.t512]],
  ];
  return cases.filter(([name]) => !cfg.cases || cfg.cases.includes(name));
}

// Threads: Bedside through the widget (`load(url, {backend: 'cpu', threads})`, each model in its own
// worker) on 1 and on cfg.threads threads, and transformers.js on cfg.threads, all in one isolated page.
window.speedThreads = async (cfg) => {
  if (self.crossOriginIsolated !== true) throw new Error('the page is not cross-origin isolated: no threads');
  const texts = await (await fetch('/data/texts.json')).json();
  const url = `/bundles/minilm-${cfg.quant}.gguf`;
  let t0 = performance.now();
  const one = await widgetLoad(url, { backend: 'cpu', threads: 1, cache: false });
  const oneLoad = performance.now() - t0;
  t0 = performance.now();
  const many = await widgetLoad(url, { backend: 'cpu', threads: cfg.threads, cache: false });
  const manyLoad = performance.now() - t0;
  const workersBefore = startedWorkers.length;
  const tj = await loadTjs(cfg.tjsDtype, false, cfg.threads);
  const ortWorkers = startedWorkers.slice(workersBefore).filter((w) => w.name === 'em-pthread').length;
  const out = { cfg, crossOriginIsolated: self.crossOriginIsolated, userAgent: navigator.userAgent,
    transformers_version: env.version, ort_versions: env.backends.onnx.versions ?? null,
    // onnxruntime-web sets numThreads back to 1 where it cannot run threads; its pthread pool has numThreads - 1 workers
    tjs_numThreads: env.backends.onnx.wasm.numThreads, tjs_pthread_workers: ortWorkers, workers: [...startedWorkers],
    bedside_threads: many.threads, bedside_1t_threads: one.threads, bedside_wasm_build: many.wasmBuild,
    bedside_1t_wasm_build: one.wasmBuild, bedside_load_ms: r3(manyLoad), bedside_1t_load_ms: r3(oneLoad),
    tjs_load_ms: tj.load_ms, cases: {} };
  if (many.threads !== cfg.threads || one.threads !== 1) throw new Error(`Bedside threads: ${many.threads} and ${one.threads}`);
  if (out.tjs_numThreads !== cfg.threads || ortWorkers !== cfg.threads - 1) {
    throw new Error(`transformers.js threads: numThreads ${out.tjs_numThreads}, ${ortWorkers} pthread workers`);
  }
  const sides = [
    ['b1', (xs) => one.embed(xs)],
    ['bn', (xs) => many.embed(xs)],
    ['tj', async (xs) => (await tj.extractor(xs, { pooling: 'mean', normalize: true })).tolist()],
  ];
  const selected = benchCases(texts, cfg);
  const warmStart = performance.now();
  do {
    for (const [, input] of selected) for (const [, f] of sides) await f(input);
  } while (performance.now() - warmStart < (cfg.warmupMs ?? 6000));
  out.warmup_ms = r3(performance.now() - warmStart);
  for (const [name, input] of selected) {
    const n = input.length;
    for (let i = 0; i < (cfg.warmup ?? 2); i++) for (const [, f] of sides) await f(input);
    const runs = { b1: [], bn: [], tj: [] };
    // call by call; the order turns each round so that no side always follows the same one
    for (let i = 0; i < cfg.reps[name]; i++) {
      for (let k = 0; k < sides.length; k++) {
        const [key, f] = sides[(i + k) % sides.length];
        const t = performance.now();
        const v = await f(input);
        runs[key].push(performance.now() - t);
        if (v.length !== n || v[0].length !== 384) throw new Error('bad output shape');
      }
    }
    out.cases[name] = {
      batch: n, tjs_input_dims: tj.extractor.tokenizer(input, { padding: true }).input_ids.dims,
      bedside_ms: r3(median(runs.bn)), bedside_1t_ms: r3(median(runs.b1)), tjs_ms: r3(median(runs.tj)),
      bedside_runs_ms: runs.bn.map(r3), bedside_1t_runs_ms: runs.b1.map(r3), tjs_runs_ms: runs.tj.map(r3),
      bedside_embeddings: (await many.embed(input)).map((v) => Array.from(v)),
      bedside_1t_embeddings: (await one.embed(input)).map((v) => Array.from(v)),
      tjs_embeddings: await sides[2][1](input),
    };
    log(`${cfg.quant}/${cfg.tjsDtype} ${cfg.threads} threads ${name}: bedside ${r3(median(runs.bn))} ms `
      + `(1 thread ${r3(median(runs.b1))}), transformers.js ${r3(median(runs.tj))} ms`);
  }
  one.dispose();
  many.dispose();
  await tj.extractor.dispose?.();
  return out;
};
window.benchReady = true;
document.getElementById('log').textContent = 'ready';
