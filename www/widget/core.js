// The widget's API without the custom elements (index.js adds them): loading bundles with
// progress and caching, and a client for the worker that runs the model.
//
// Bundles come from a URL, a File/Blob or bytes; URLs (and files given a `cacheKey`) are
// kept in the Cache API so the next visit loads without downloading.

export { parseDocuments, parseCsv, resultsCsv, topChunk, byteToCharIndex, entitySegments, entityLabels } from './docs.js';
import { threadsFor } from './wasm-build.js';

/** Cache Storage bucket for downloaded bundles. */
export const CACHE_NAME = 'bedside-bundles-v1';
/** Prefix of cache keys for bundles that came from local files (never fetched). */
const LOCAL_PREFIX = 'cache:';

function bedsideError(code, message) {
  const e = new Error(message);
  e.name = 'BedsideError';
  e.code = code;
  return e;
}

function toError(err) {
  const e = new Error(err.message);
  e.name = err.name || 'Error';
  e.code = err.code ?? undefined;
  return e;
}

/** The worker, and the promises of the calls it has not answered yet. */
class WorkerClient {
  constructor() {
    // Written this way so bundlers (Vite, webpack) see the worker and bundle it.
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.pending = new Map();
    this.next = 1;
    this.worker.onmessage = ({ data }) => {
      const call = this.pending.get(data.id);
      if (!call) return;
      if (data.progress) { call.onProgress?.(data.progress); return; }
      this.pending.delete(data.id);
      if (data.ok) call.resolve(data.result);
      else call.reject(toError(data.error));
    };
    // A worker that cannot start (script missing, blocked by policy) fails every call.
    this.worker.onerror = (event) => {
      event.preventDefault?.();
      const e = bedsideError('worker_failed', `the Bedside worker failed: ${event.message || 'its script did not load'}`);
      for (const call of this.pending.values()) call.reject(e);
      this.pending.clear();
      this.failed = e;
    };
  }

  call(op, args, { transfer = [], onProgress } = {}) {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }

  cancel() {
    this.worker.postMessage({ op: 'cancel' });
  }

  terminate() {
    this.worker.terminate();
    const e = bedsideError('disposed', 'the model was disposed');
    for (const call of this.pending.values()) call.reject(e);
    this.pending.clear();
  }
}

/** A loaded bundle. Every method runs in the model's worker. */
export class BedsideModel {
  constructor(client, info) {
    this.client = client;
    /** The bundle's manifest: task, labels, max_seq_len, min_confidence, … */
    this.manifest = info.manifest;
    /** The bundle's task: 'embedding', 'classification', 'binary', 'multilabel' or 'token-classification'. */
    this.task = info.manifest.task;
    /** "webgpu" or "cpu" (the wasm build). */
    this.backend = info.backend;
    /** Why the model is not on WebGPU although that was asked for, as one plain sentence, else null. */
    this.backendNote = info.backendNote ?? null;
    /** The technical reason behind `backendNote` (adapter, limits, driver message), else null. */
    this.backendDetail = info.backendDetail ?? null;
    /** The wasm build the worker runs: "relaxed-simd" (Chrome/Edge) or "simd128". */
    this.wasmBuild = info.wasmBuild ?? null;
    /** CPU threads the wasm backend runs on (1 unless the page is cross-origin isolated). */
    this.threads = info.threads ?? 1;
    /** The bundle's checksum ("sha256:…"), recomputed by the runtime at load and equal to the stored one. */
    this.checksum = info.checksum;
    /** `general.name` of the bundle. */
    this.name = info.name;
    /** Whether the checksum covers `name` (bundle format 3 on); older bundles' names are unverified. */
    this.nameVerified = info.nameVerified;
    /** The bundle's layout version. */
    this.formatVersion = info.formatVersion;
    this.size = info.size;
    /** "network", "cache" or "bytes": where the bytes came from. */
    this.source = info.source;
    /** Milliseconds: reading the bytes, and the runtime's load. */
    this.timings = info.timings;
  }

  /** `{label, score, probabilities, labels, uncertain, chunks, ms}` for one note. */
  classify(text) {
    return this.client.call('classify', { text: String(text) });
  }

  /**
   * The entities of a note (token-classification bundles): `[{label, start, end, score,
   * start_char, end_char}]` in note order; `start`/`end` are UTF-8 byte offsets,
   * `start_char`/`end_char` JS string indices. `aggregation`: transformers'
   * `aggregation_strategy` ('none' | 'simple' | 'first' | 'average' | 'max'; default the bundle's).
   */
  async tag(text, { aggregation } = {}) {
    return (await this.client.call('tag', { text: String(text), aggregation: aggregation ?? null })).entities;
  }

  /**
   * De-identifies a note (token-classification bundles): `{text, redactions, counts, ms}`, each
   * entity replaced by `[LABEL]`. `rules: true` (or `{kinds, names}`) also replaces what the
   * pattern rules find (dates, phone and fax numbers, e-mail, URLs, record numbers, ages over 89,
   * listed names). The removed text is in no field.
   */
  deid(text, { rules = false } = {}) {
    return this.client.call('deid', { text: String(text), rules: rules || null });
  }

  /** One result per note, in order; `onProgress({loaded, total})` after each. */
  classifyMany(texts, { onProgress } = {}) {
    return this.client.call('classifyMany', { texts: texts.map(String) }, { onProgress });
  }

  /** One Float32Array per text. */
  async embed(texts) {
    const list = Array.isArray(texts) ? texts.map(String) : [String(texts)];
    return (await this.client.call('embed', { texts: list })).vectors;
  }

  /** `{cosine, ms}` of two texts' embeddings. */
  similarity(a, b) {
    return this.client.call('similarity', { a: String(a), b: String(b) });
  }

  /**
   * Replaces the model's search index with these documents (`[{id, text}]` or strings).
   * `classify: true` also predicts a label per document (classifier bundles).
   */
  index(documents, { int8 = false, classify = false, onProgress } = {}) {
    const docs = documents.map((d, i) => (typeof d === 'string' ? { id: String(i + 1), text: d } : d));
    return this.client.call('index', { ids: docs.map((d) => String(d.id)), texts: docs.map((d) => String(d.text)), int8, classify },
      { onProgress });
  }

  /** `[{id, score}]`, best first. With `documents`, indexes them first. */
  async search(query, { k = 10, documents, int8 } = {}) {
    if (documents) await this.index(documents, { int8 });
    return (await this.client.call('search', { query: String(query), k })).hits;
  }

  /** The indexed documents on a 2-D map (PCA): `[{id, x, y}]`. */
  project() {
    return this.client.call('project', {});
  }

  /** Stops a running classifyMany or index between two notes. */
  cancel() {
    this.client.cancel();
  }

  /** Ends the worker and frees the model. */
  dispose() {
    this.client.terminate();
    if (current === this) current = null;
  }
}

let current = null;

/** The model of the last `load()`, used by the module-level functions. */
export function currentModel() {
  return current;
}

function needModel() {
  if (!current) throw bedsideError('no_model', 'call load() first');
  return current;
}

/** Module-level shortcuts to the last loaded model. */
export const classify = (text) => needModel().classify(text);
export const embed = (texts) => needModel().embed(texts);
export const search = (query, options) => needModel().search(query, options);
export const similarity = (a, b) => needModel().similarity(a, b);
export const tag = (text, options) => needModel().tag(text, options);
export const deid = (text, options) => needModel().deid(text, options);

/**
 * Loads a bundle in a new worker and makes it the current model.
 * @param {string|URL|Blob|ArrayBuffer|Uint8Array} source a URL (same origin), a File/Blob,
 *   bytes, or a key from `cachedBundles()` ("cache:…")
 * @param {{backend?: 'auto'|'webgpu'|'cpu'|'wasm', onProgress?: Function, cache?: boolean, cacheKey?: string, integrity?: string, threads?: 'auto'|number}} options
 *   `integrity` pins the bundle ("sha256-<base64>" as Subresource Integrity writes it, or the
 *   "sha256:<hex>" that `bedside export` prints): any other bundle is refused with code
 *   `integrity_mismatch`, whether it came from the network, the cache or a file.
 */
export async function load(source, { backend = 'auto', onProgress, cache = true, cacheKey, integrity, threads = 'auto' } = {}) {
  threadsFor(threads); // refuses a bad count before any download
  const started = performance.now();
  const { bytes, from, save } = await readSource(source, { onProgress, cache, cacheKey });
  const readMs = performance.now() - started;
  const size = bytes.byteLength;
  let info, client;
  try {
    onProgress?.({ phase: 'load', loaded: size, total: size, progress: 100 });
    client = new WorkerClient();
    const buffer = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
    info = await client.call('load', { bytes: buffer, backend, integrity, threads }, { transfer: [buffer] });
  } catch (e) {
    client?.terminate();
    // A downloaded or cached copy that is refused is dropped, so the next try downloads again.
    const key = source instanceof URL ? source.href : source;
    if ((from === 'network' || from === 'cache') && typeof key === 'string' && !key.startsWith(LOCAL_PREFIX)) await forget(key);
    throw e;
  }
  await save?.();
  const model = new BedsideModel(client, {
    manifest: info.manifest, backend: info.backend, backendNote: info.backendNote, backendDetail: info.backendDetail, wasmBuild: info.wasmBuild, threads: info.threads, checksum: info.provenance.checksum,
    name: info.provenance.name || info.manifest.base_model, nameVerified: info.provenance.coverage === 'all_metadata_and_tensors',
    formatVersion: info.provenance.format_version, size, source: from,
    timings: { readMs, loadMs: info.ms },
  });
  // The previous model keeps running (an element may use it) until it is disposed.
  current = model;
  return model;
}

async function openCache() {
  if (typeof caches === 'undefined') return null; // not a secure context, or no Cache API
  try { return await caches.open(CACHE_NAME); } catch { return null; }
}

function cacheRequest(key) {
  // Local files are cached under a same-origin URL that is never fetched.
  if (key.startsWith(LOCAL_PREFIX)) return new Request(new URL(`/.bedside-cache/${encodeURIComponent(key.slice(LOCAL_PREFIX.length))}`, location.origin));
  return new Request(new URL(key, location.href));
}

async function forget(key) {
  const cache = await openCache();
  await cache?.delete(cacheRequest(key));
}

async function readSource(source, { onProgress, cache, cacheKey }) {
  if (source instanceof Uint8Array) return { bytes: source, from: 'bytes' };
  if (source instanceof ArrayBuffer) return { bytes: new Uint8Array(source), from: 'bytes' };
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    const bytes = await readStream(source.stream(), source.size, onProgress, 'read');
    // Cached only once the runtime has accepted it (the Blob can be read again then).
    const save = cacheKey ? async () => store(`${LOCAL_PREFIX}${cacheKey}`, new Uint8Array(await source.arrayBuffer()), {}) : null;
    return { bytes, from: 'file', save };
  }
  const key = source instanceof URL ? source.href : String(source);
  if (key.startsWith(LOCAL_PREFIX)) {
    const bytes = await fromCache(key, onProgress);
    if (!bytes) throw bedsideError('not_cached', `${key} is not in this browser's cache any more`);
    return { bytes, from: 'cache' };
  }
  if (cache) {
    const cached = await cachedResponse(key);
    if (cached && await stillFresh(key, cached)) {
      return { bytes: await readStream(cached.body, Number(cached.headers.get('Content-Length')) || 0, onProgress, 'cache'), from: 'cache' };
    }
  }
  const response = await fetch(new URL(key, location.href), { cache: 'no-store' });
  if (!response.ok) throw bedsideError(response.status === 404 ? 'not_found' : 'http_error', `${key}: HTTP ${response.status}`);
  const total = Number(response.headers.get('Content-Length')) || 0;
  const bytes = await readStream(response.body, total, onProgress, 'download');
  if (cache) {
    const headers = {};
    for (const h of ['ETag', 'Last-Modified']) if (response.headers.get(h)) headers[`X-Bedside-${h}`] = response.headers.get(h);
    await store(key, bytes, headers);
  }
  return { bytes, from: 'network' };
}

async function cachedResponse(key) {
  const cache = await openCache();
  return cache ? (await cache.match(cacheRequest(key))) ?? null : null;
}

async function fromCache(key, onProgress) {
  const cached = await cachedResponse(key);
  if (!cached) return null;
  return readStream(cached.body, Number(cached.headers.get('Content-Length')) || 0, onProgress, 'cache');
}

// A cached download is used when the server still has the same file (ETag or
// Last-Modified), or when the server cannot be asked (offline).
async function stillFresh(key, cached) {
  const etag = cached.headers.get('X-Bedside-ETag');
  const modified = cached.headers.get('X-Bedside-Last-Modified');
  if (!etag && !modified) return true;
  try {
    const head = await fetch(new URL(key, location.href), { method: 'HEAD', cache: 'no-store' });
    if (!head.ok) return head.status !== 404;
    if (etag && head.headers.get('ETag')) return head.headers.get('ETag') === etag;
    if (modified && head.headers.get('Last-Modified')) return head.headers.get('Last-Modified') === modified;
    return true;
  } catch {
    return true;
  }
}

async function store(key, bytes, headers) {
  const cache = await openCache();
  if (!cache) return;
  try {
    await cache.put(cacheRequest(key), new Response(bytes, {
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.byteLength),
        'X-Bedside-Stored': new Date().toISOString(), ...headers },
    }));
  } catch {
    // Out of quota: the model still runs, it just downloads again next time.
  }
}

async function readStream(stream, total, onProgress, phase) {
  const reader = stream.getReader();
  const chunks = [];
  let loaded = 0;
  onProgress?.({ phase, loaded, total, progress: total ? 0 : null });
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    onProgress?.({ phase, loaded, total, progress: total ? (100 * loaded) / total : null });
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.byteLength; }
  return bytes;
}

/** Bundles in this browser's cache: `[{key, name, size, stored}]`. */
export async function cachedBundles() {
  const cache = await openCache();
  if (!cache) return [];
  const out = [];
  for (const request of await cache.keys()) {
    const response = await cache.match(request);
    const path = new URL(request.url).pathname;
    const local = path.startsWith('/.bedside-cache/');
    const key = local ? LOCAL_PREFIX + decodeURIComponent(path.slice('/.bedside-cache/'.length)) : request.url;
    out.push({ key, name: local ? key.slice(LOCAL_PREFIX.length) : path.split('/').pop(),
      size: Number(response?.headers.get('Content-Length')) || 0, stored: response?.headers.get('X-Bedside-Stored') ?? null });
  }
  return out;
}

/** Removes every cached bundle; returns how many there were. */
export async function clearCache() {
  if (typeof caches === 'undefined') return 0;
  const cache = await openCache();
  const n = cache ? (await cache.keys()).length : 0;
  await caches.delete(CACHE_NAME);
  return n;
}

/** Which backends this browser could run: WebGPU needs `navigator.gpu` and an adapter. */
export async function webgpuAvailable() {
  if (typeof navigator === 'undefined' || !navigator.gpu) return false;
  try { return (await navigator.gpu.requestAdapter()) !== null; } catch { return false; }
}
