// The Web Worker that owns the model: every computation runs here, so the page never freezes.
// Messages in: {id, op, args}; out: {id, ok: true, result} | {id, ok: false, error} |
// {id, progress}. Operations run one at a time, in order; `cancel` stops a running batch
// between two notes.
//
// Runtime API: when the wasm build has `Bedside.create(bytes, backend)` (the WebGPU build)
// it is used with `embedAsync`/`classifyAsync`/`tagAsync`/`deidAsync`; otherwise the
// synchronous CPU API `Bedside.load`/`embed`/`classify`/`tag`/`deid`.
import { bestWasmBuild, threadsFor, wasmUrl } from './wasm-build.js';

// The runtime's glue module, fixed by the first load: the threaded build (rayon's pool on
// `threads` workers) or the single-threaded one. `Bedside`/`BedsideIndex` are its classes.
let ready = null;
let Bedside = null;
let BedsideIndex = null;
const wasmBuild = bestWasmBuild();
let threads = 1;
let model = null;
let backend = 'cpu';
let index = null;
let cancelled = false;
let queue = Promise.resolve();

const hasAsyncApi = () => typeof Bedside.create === 'function';

async function classifyOne(text) {
  const started = performance.now();
  const result = typeof model.classifyAsync === 'function' ? await model.classifyAsync(text) : model.classify(text);
  result.ms = performance.now() - started;
  return result;
}

// Entities of a note: `[{label, start, end, score, start_char, end_char}]` (byte and UTF-16 offsets).
async function tagOne(text, aggregation) {
  return typeof model.tagAsync === 'function' ? await model.tagAsync(text, aggregation ?? undefined)
    : model.tag(text, aggregation ?? undefined);
}

// `rules`: falsy (the model alone), true (every pattern rule) or {kinds, names}.
async function deidOne(text, rules) {
  return typeof model.deidAsync === 'function' ? await model.deidAsync(text, rules ?? undefined) : model.deid(text, rules ?? undefined);
}

async function embedTexts(texts) {
  return typeof model.embedAsync === 'function' ? await model.embedAsync(texts) : model.embed(texts);
}

// Instantiates the runtime. Threads need a cross-origin isolated page (SharedArrayBuffer); the
// threaded and single-threaded builds compute the same bits, so the choice changes only speed.
async function startRuntime(threadsWanted) {
  threads = threadsFor(threadsWanted);
  if (threads > 1) {
    try {
      const glue = await import('../pkg/threads/bedside_runtime.js');
      await glue.default({ module_or_path: wasmUrl(wasmBuild, { threaded: true }) });
      await glue.initThreadPool(threads);
      threads = glue.threadCount(); // rayon's own count: the pool really started
      ({ Bedside, BedsideIndex } = glue);
      return;
    } catch {
      // No threaded build deployed (BEDSIDE_WASM_THREADS=0), or workers refused: one thread.
      threads = 1;
    }
  }
  const glue = await import('../pkg/bedside_runtime.js');
  await glue.default({ module_or_path: wasmUrl(wasmBuild) });
  ({ Bedside, BedsideIndex } = glue);
}

function requireModel() {
  if (!model) throw Object.assign(new Error('no model loaded'), { name: 'BedsideError', code: 'no_model' });
}

// Lets a queued `cancel` message run between two notes of a batch.
const yieldToMessages = () => new Promise((resolve) => setTimeout(resolve, 0));

function checkCancelled() {
  if (cancelled) throw Object.assign(new Error('cancelled'), { name: 'BedsideError', code: 'cancelled' });
}

const BATCH = 8;

const ops = {
  async load({ bytes, backend: wanted = 'auto', integrity = null, threads: threadsWanted = 'auto' }) {
    ready ??= startRuntime(threadsWanted);
    await ready;
    index?.free();
    index = null;
    model?.free();
    model = null;
    const started = performance.now();
    const data = new Uint8Array(bytes);
    if (hasAsyncApi()) {
      const choice = wanted === 'wasm' ? 'cpu' : wanted;
      model = await Bedside.create(data, choice, undefined, integrity ?? undefined);
      backend = model.backend ?? 'cpu';
    } else {
      // This build has only the CPU (wasm) backend, whatever was asked for.
      model = Bedside.load(data, integrity ?? undefined);
      backend = 'cpu';
    }
    // Why WebGPU was not used although asked for (WebGPU build only).
    const backendNote = typeof model.backendNote === 'string' ? model.backendNote
      : !hasAsyncApi() && wanted === 'webgpu' ? 'This version of the page has no GPU support, so the model runs on the CPU.' : null;
    const backendDetail = typeof model.backendDetail === 'string' ? model.backendDetail : null;
    return {
      manifest: model.manifest(), provenance: model.provenance(), backend, backendNote, backendDetail, wasmBuild, threads,
      ms: performance.now() - started,
    };
  },

  async classify({ text }) {
    requireModel();
    return classifyOne(text);
  },

  async classifyMany({ texts }, progress) {
    requireModel();
    const results = [];
    for (let i = 0; i < texts.length; i++) {
      checkCancelled();
      results.push(await classifyOne(texts[i]));
      progress({ phase: 'classify', loaded: i + 1, total: texts.length });
      await yieldToMessages();
    }
    return results;
  },

  async tag({ text, aggregation = null }) {
    requireModel();
    const started = performance.now();
    const entities = await tagOne(text, aggregation);
    return { entities, ms: performance.now() - started };
  },

  async deid({ text, rules = null }) {
    requireModel();
    const started = performance.now();
    const result = await deidOne(text, rules);
    result.ms = performance.now() - started;
    return result;
  },

  async embed({ texts }) {
    requireModel();
    const started = performance.now();
    const vectors = await embedTexts(texts);
    return { vectors, ms: performance.now() - started };
  },

  async similarity({ a, b }) {
    requireModel();
    const started = performance.now();
    const [u, v] = await embedTexts([a, b]);
    return { cosine: cosine(u, v), ms: performance.now() - started };
  },

  // Builds a new index from documents; with `classify`, also predicts each one's label.
  async index({ ids, texts, int8 = false, classify = false }, progress) {
    requireModel();
    const started = performance.now();
    const fresh = BedsideIndex.forModel(model, int8);
    const predicted = [];
    const total = texts.length;
    try {
      for (let i = 0; i < total; i += BATCH) {
        checkCancelled();
        const batchIds = ids.slice(i, i + BATCH);
        const batchTexts = texts.slice(i, i + BATCH);
        if (typeof model.embedAsync === 'function') {
          const vectors = await model.embedAsync(batchTexts);
          vectors.forEach((v, k) => fresh.add(batchIds[k], v));
        } else {
          fresh.addTexts(model, batchIds, batchTexts);
        }
        if (classify) for (const t of batchTexts) predicted.push((await classifyOne(t)).label);
        progress({ phase: 'index', loaded: Math.min(i + BATCH, total), total });
        await yieldToMessages();
      }
    } catch (e) {
      fresh.free();
      throw e;
    }
    index?.free();
    index = fresh;
    return { length: index.length, dim: index.dim, int8: index.int8, memoryBytes: index.memoryBytes,
      predicted: classify ? predicted : null, ms: performance.now() - started };
  },

  async search({ query, k = 10 }) {
    requireModel();
    if (!index) throw Object.assign(new Error('build an index first'), { name: 'BedsideError', code: 'no_index' });
    const started = performance.now();
    let hits;
    if (typeof model.embedAsync === 'function') {
      const [v] = await model.embedAsync([query]);
      hits = index.searchVector(v, k);
    } else {
      hits = index.search(model, query, k);
    }
    return { hits, ms: performance.now() - started };
  },

  async project() {
    if (!index) throw Object.assign(new Error('build an index first'), { name: 'BedsideError', code: 'no_index' });
    return index.project();
  },
};

function cosine(u, v) {
  let dot = 0, nu = 0, nv = 0;
  for (let i = 0; i < u.length; i++) { dot += u[i] * v[i]; nu += u[i] * u[i]; nv += v[i] * v[i]; }
  return dot / (Math.sqrt(nu * nv) || 1);
}

// Error objects do not keep `code` through postMessage: send the fields.
function serializeError(e) {
  if (e instanceof Error) return { name: e.name, message: e.message, code: e.code ?? null };
  return { name: 'Error', message: String(e), code: null };
}

self.onmessage = ({ data }) => {
  const { id, op, args } = data;
  if (op === 'cancel') { cancelled = true; return; }
  queue = queue.then(async () => {
    cancelled = false;
    try {
      const fn = ops[op];
      if (!fn) throw new Error(`unknown operation ${op}`);
      const result = await fn(args ?? {}, (progress) => self.postMessage({ id, progress }));
      self.postMessage({ id, ok: true, result });
    } catch (e) {
      self.postMessage({ id, ok: false, error: serializeError(e) });
    }
  });
};
