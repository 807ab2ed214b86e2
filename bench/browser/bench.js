// Bedside (wasm, CPU) and transformers.js (onnxruntime-web wasm) in one page, driven by run_browser.mjs:
//   window.speed(cfg): loads both on the same model (Bedside bundle cfg.quant, transformers.js dtype
//     cfg.tjsDtype), then per case: warm-ups of each, then timed runs alternating Bedside and
//     transformers.js call by call, so that the machine's noise falls on both alike.
//   window.load(cfg): the load time of one side (cold in a fresh browser context, or cached on a reload).
// Every file comes from this page's own origin: /pkg (the Bedside browser build), /bundles (.gguf),
// /tjs and /ort (transformers.js and onnxruntime-web dists), /models (the ONNX folder), /data (texts).
import init, { Bedside } from '/pkg/bedside_runtime.js';
import { bestWasmBuild, wasmUrl } from '/widget/wasm-build.js';
import { pipeline, env } from '/tjs/transformers.min.js';

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

async function loadTjs(dtype, useCache) {
  env.useBrowserCache = useCache;
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
  const cases = [
    ['a_b1_22tok', [texts.short_22]],
    ['b_b1_128tok', [texts.t128]],
    ['c_b8_128tok', texts.batch8_128],
    ['d_b1_512tok', [texts.t512]],
  ];
  const selected = cases.filter(([name]) => !cfg.cases || cfg.cases.includes(name));
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
window.benchReady = true;
document.getElementById('log').textContent = 'ready';
