// The page: wires the widget's API (widget/core.js, a Web Worker running the wasm runtime)
// to the form controls. No framework and no build step. Nothing read here is sent anywhere:
// the only requests are for the page's own files and the model bundle.
import {
  load, cachedBundles, clearCache, webgpuAvailable, parseDocuments, resultsCsv, topChunk, byteToCharIndex,
  entitySegments, entityLabels,
} from './widget/core.js';

const $ = (id) => document.getElementById(id);
const LAST_MODEL = 'bedside.lastModel';
const MAX_TABLE_ROWS = 1000;
const PALETTE = ['#0072b2', '#e69f00', '#009e73', '#cc79a7', '#56b4e9', '#d55e00', '#f0e442', '#000000', '#999999', '#8c564b'];

let model = null;
let lastSource = null; // {source, cacheKey?} of the loaded model, to reload with another backend
let batch = null; // {labels, rows: [{id, text, result}]}
let docsById = new Map();
let webgpuText = '';
let redactedText = null; // the last de-identified copy, for its download button
const CLASSIFIER_TASKS = ['classification', 'binary', 'multilabel'];
const isTokenModel = () => model?.manifest.task === 'token-classification';

// ---------- small helpers ----------

function show(el, visible = true) { el.hidden = !visible; }

function showError(box, error) {
  if (!error) { box.textContent = ''; show(box, false); return; }
  const code = error.code ? ` (${error.code})` : '';
  box.textContent = `${error.message}${code}`;
  show(box, true);
}

function mb(bytes) { return `${(bytes / 1e6).toFixed(1)} MB`; }
function ms(x) { return x < 10 ? `${x.toFixed(1)} ms` : `${Math.round(x)} ms`; }
function pct(p) { return `${(100 * p).toFixed(1)}%`; }
function backendName(b) { return b === 'webgpu' ? 'WebGPU' : 'WASM (CPU)'; }

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c);
  return node;
}

function setBusy(busy) {
  const hasModel = model !== null;
  const canClassify = hasModel && CLASSIFIER_TASKS.includes(model.manifest.task);
  $('classify-run').disabled = busy || !canClassify;
  $('notes-file').disabled = busy || !canClassify;
  $('index-build').disabled = busy || !hasModel;
  $('search-run').disabled = busy || !hasModel || docsById.size === 0;
  $('compare-run').disabled = busy || !hasModel;
  $('deid-run').disabled = busy || !isTokenModel();
  $('model-url-load').disabled = busy;
  $('model-file').disabled = busy;
}

window.addEventListener('error', (e) => showError($('global-error'), e.error ?? new Error(e.message)));
window.addEventListener('unhandledrejection', (e) => showError($('global-error'), e.reason instanceof Error ? e.reason : new Error(String(e.reason))));

// ---------- model ----------

function progressText(p) {
  const amount = p.total ? `${mb(p.loaded)} of ${mb(p.total)}` : mb(p.loaded);
  switch (p.phase) {
    case 'download': return `Downloading the bundle: ${amount}`;
    case 'cache': return `Reading the bundle from this browser's cache: ${amount}`;
    case 'read': return `Reading the file: ${amount}`;
    case 'load': return 'Starting the runtime and verifying the checksum…';
    default: return '';
  }
}

async function loadModel(source, { cacheKey, quietMissing = false } = {}) {
  const bar = $('model-progress');
  showError($('model-error'), null);
  setBusy(true);
  show(bar, true);
  bar.removeAttribute('value');
  const backend = $('backend-select').value;
  try {
    const loaded = await load(source, {
      backend,
      cacheKey,
      onProgress: (p) => {
        if (p.progress === null || p.phase === 'load') bar.removeAttribute('value'); else bar.value = p.progress;
        $('model-status').textContent = progressText(p);
      },
    });
    model?.dispose();
    model = loaded;
    lastSource = { source, cacheKey };
    // Results of the previous model would be misleading next to the new one.
    docsById = new Map();
    batch = null;
    $('search-results').replaceChildren();
    $('index-status').textContent = '';
    $('compare-result').textContent = '';
    show($('classify-result'), false);
    show($('batch-results'), false);
    $('batch-status').textContent = '';
    $('classify-status').textContent = {
      embedding: 'This is an embedding bundle: classifying needs a classifier bundle. Search works.',
      'token-classification': 'This is a token-classification bundle: it tags and de-identifies notes (see "De-identify a note"); classifying needs a classifier bundle.',
    }[loaded.manifest.task] ?? '';
    showDeidPanel(loaded.manifest.task === 'token-classification');
    clearMap();
    const key = typeof source === 'string' ? source : cacheKey ? `cache:${cacheKey}` : null;
    if (key) localStorage.setItem(LAST_MODEL, key);
    showModel(loaded);
  } catch (e) {
    if (quietMissing && (e.code === 'not_found' || e.code === 'not_cached')) {
      $('model-status').textContent = 'No model loaded. Choose a bundle file, drop one on this box, or start '
        + '`bedside serve --model <bundle>` to have this page load it.';
    } else {
      $('model-status').textContent = model ? 'Loading failed; the previous model is still loaded.' : 'No model loaded.';
      if (e.code === 'worker_failed') e.message += '. Is the runtime built? (bash scripts/build-wasm.sh writes www/pkg/)';
      showError($('model-error'), e);
    }
  } finally {
    show(bar, false);
    setBusy(false);
    refreshCacheStatus();
  }
}

/** What a classifier head reads, in words (bundles before format 2 have no field: the pooler). */
function headFeaturesText(features = 'pooler') {
  return {
    pooler: 'the pooler over the [CLS] vector (as BertForSequenceClassification)',
    cls: 'the [CLS] vector',
    mean: 'the mean of the token vectors',
  }[features] ?? features;
}

function showModel(m) {
  const man = m.manifest;
  const from = { network: 'downloaded', cache: "this browser's cache", file: 'a local file', bytes: 'bytes' }[m.source];
  $('model-status').textContent = `Model ready: read in ${ms(m.timings.readMs)}, loaded in ${ms(m.timings.loadMs)}.`;
  $('info-name').textContent = `${m.name} (${man.quantization})${m.nameVerified ? '' : ' — name not covered by the checksum (bundle format ' + m.formatVersion + '; re-export to verify it)'}`;
  $('info-task').textContent = man.task;
  $('info-labels').textContent = man.labels.length ? man.labels.join(', ') : '— (embedding model)';
  const pooling = man.task === 'embedding' ? `, ${man.pooling} pooling` : '';
  $('info-window').textContent = `${man.max_seq_len} tokens, stride ${man.stride}${pooling}`;
  $('info-features').textContent = man.task === 'embedding' ? '— (embedding model)'
    : man.task === 'token-classification' ? `each token's vector (one label per token; entities grouped "${man.entity_aggregation ?? 'simple'}")`
      : headFeaturesText(man.head_features);
  $('info-threshold').textContent = man.min_confidence > 0 ? `probability ${Number(man.min_confidence.toPrecision(4))}` : 'never (no minimum confidence)';
  $('info-size').textContent = mb(m.size);
  $('info-checksum').textContent = m.checksum;
  $('info-verified').textContent = m.nameVerified ? '✓ verified by the runtime: every metadata field, the tensor table and all tensor data'
    : '✓ verified by the runtime: manifest, tokenizer, tensor table and tensor data (not the name)';
  $('info-verified').title = 'The runtime recomputed this SHA-256 over the bundle and it matched the checksum stored in it. It shows the file is intact and unchanged since export, not who made it: compare it with the checksum the model\'s maker published, or pin it (load(url, { integrity })).';
  $('info-source').textContent = from;
  show($('model-info'), true);
  const badge = $('backend-badge');
  badge.textContent = `Backend: ${backendName(m.backend)}`;
  badge.classList.toggle('webgpu', m.backend === 'webgpu');
  // The runtime's reason for not using WebGPU, else what the browser offers.
  $('backend-note').textContent = m.backendNote ?? (m.backend === 'webgpu' ? '' : webgpuText);
  $('backend-note').title = m.backendDetail ?? '';
  document.body.dataset.modelReady = 'true';
  document.body.dataset.modelSource = m.source;
  document.body.dataset.backend = m.backend;
  // Which wasm build the worker runs: relaxed SIMD (Chrome/Edge) or plain SIMD.
  document.body.dataset.wasmBuild = m.wasmBuild ?? '';
  // CPU threads: several on a cross-origin isolated page (as `bedside serve` makes it), else one.
  document.body.dataset.threads = String(m.threads ?? 1);
  badge.title = m.backend === 'webgpu' ? '' : `wasm build: ${m.wasmBuild}, ${m.threads === 1 ? 'one thread' : `${m.threads} threads`}`;
}

async function refreshCacheStatus() {
  try {
    const cached = await cachedBundles();
    const total = cached.reduce((s, c) => s + c.size, 0);
    $('cache-status').textContent = cached.length
      ? `Cached here: ${cached.map((c) => c.name).join(', ')} (${mb(total)}).`
      : 'No model cached in this browser.';
  } catch {
    $('cache-status').textContent = 'This browser offers no cache here.';
  }
}

$('model-url-load').addEventListener('click', () => {
  const url = $('model-url').value.trim();
  if (!url) return;
  // Same origin only: the policy would refuse another origin anyway; say so clearly.
  if (new URL(url, location.href).origin !== location.origin) {
    showError($('model-error'), new Error('Only bundles on this site can be loaded (the page may not contact other origins). Download it and choose the file instead.'));
    return;
  }
  loadModel(url);
});
$('model-url').addEventListener('keydown', (e) => { if (e.key === 'Enter') $('model-url-load').click(); });
$('model-file').addEventListener('change', (e) => {
  const file = e.target.files[0];
  if (file) loadModel(file, { cacheKey: file.name });
});
$('backend-select').addEventListener('change', () => {
  if (lastSource) loadModel(lastSource.cacheKey ? `cache:${lastSource.cacheKey}` : lastSource.source);
});
$('cache-clear').addEventListener('click', async () => {
  const n = await clearCache();
  localStorage.removeItem(LAST_MODEL);
  $('cache-status').textContent = `Removed ${n} cached bundle${n === 1 ? '' : 's'}. The loaded model keeps running.`;
});

// ---------- classify ----------

function renderResult(text, r) {
  const man = model.manifest;
  $('result-label').textContent = man.task === 'multilabel' ? (r.labels.length ? r.labels.join(', ') : 'no label') : r.label;
  $('result-score').textContent = pct(r.score);
  const uncertain = $('result-uncertain');
  show(uncertain, r.uncertain);
  const floor = Number(man.min_confidence.toPrecision(4));
  uncertain.title = `The probability is below this bundle's minimum confidence (${floor}).`;
  uncertain.textContent = `uncertain (below ${floor})`;

  const bars = Object.entries(r.probabilities).sort((a, b) => b[1] - a[1]).map(([label, p]) => {
    const fill = el('span', { className: 'bar-fill' });
    fill.style.width = `${(100 * p).toFixed(2)}%`;
    const bar = el('span', { className: 'bar' }, [fill]);
    bar.setAttribute('role', 'meter');
    bar.setAttribute('aria-valuemin', '0');
    bar.setAttribute('aria-valuemax', '1');
    bar.setAttribute('aria-valuenow', String(p));
    bar.setAttribute('aria-label', label);
    return el('li', {}, [el('span', { textContent: label }), bar, el('span', { className: 'p', textContent: pct(p) })]);
  });
  $('result-bars').replaceChildren(...bars);

  const top = topChunk(r);
  const passage = $('result-passage');
  if (top) {
    const start = byteToCharIndex(text, top.start);
    const end = byteToCharIndex(text, top.end);
    passage.replaceChildren(text.slice(0, start), el('mark', { textContent: text.slice(start, end) }), text.slice(end));
    $('result-windows').textContent = r.chunks.length > 1
      ? `Window ${top.index + 1} of ${r.chunks.length} (${top.num_tokens} tokens) scored highest (${pct(top.score)}).`
      : `The whole note fits one window (${top.num_tokens} tokens).`;
  }
  $('classify-status').textContent = `${ms(r.ms)} on ${backendName(model.backend)}`;
  const box = $('classify-result');
  box.dataset.json = JSON.stringify(r); // the full result, for tests and the curious
  show(box, true);
}

async function classifyNote() {
  const text = $('note').value;
  showError($('classify-error'), null);
  if (!text.trim()) { showError($('classify-error'), new Error('Type or paste a note first.')); return; }
  setBusy(true);
  $('classify-status').textContent = 'Classifying…';
  try {
    renderResult(text, await model.classify(text));
  } catch (e) {
    $('classify-status').textContent = '';
    showError($('classify-error'), e);
  } finally {
    setBusy(false);
  }
}

$('classify-run').addEventListener('click', classifyNote);
$('note').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !$('classify-run').disabled) classifyNote();
});

async function classifyFile(file) {
  showError($('batch-error'), null);
  if (!model || !CLASSIFIER_TASKS.includes(model.manifest.task)) {
    showError($('batch-error'), new Error('Load a classifier bundle first.'));
    return;
  }
  let notes;
  try {
    notes = parseDocuments(file.name, new Uint8Array(await file.arrayBuffer()));
  } catch (e) {
    showError($('batch-error'), e);
    return;
  }
  const bar = $('batch-progress');
  setBusy(true);
  show(bar, true);
  bar.value = 0;
  show($('batch-cancel'), true);
  show($('batch-results'), false);
  const started = performance.now();
  try {
    const results = await model.classifyMany(notes.map((n) => n.text), {
      onProgress: (p) => {
        bar.value = (100 * p.loaded) / p.total;
        $('batch-status').textContent = `Classified ${p.loaded} of ${p.total} notes…`;
      },
    });
    batch = { labels: model.manifest.labels, rows: notes.map((n, i) => ({ id: n.id, text: n.text, result: results[i] })) };
    const total = performance.now() - started;
    $('batch-status').textContent = `${notes.length} notes in ${(total / 1000).toFixed(1)} s (${ms(total / notes.length)} per note on ${backendName(model.backend)}).`;
    renderBatch();
  } catch (e) {
    $('batch-status').textContent = '';
    showError($('batch-error'), e.code === 'cancelled' ? new Error('Cancelled.') : e);
  } finally {
    show(bar, false);
    show($('batch-cancel'), false);
    setBusy(false);
  }
}

function renderBatch() {
  const rows = batch.rows.slice(0, MAX_TABLE_ROWS).map(({ id, text, result: r }) => el('tr', {}, [
    el('td', { textContent: id }),
    el('td', { textContent: r.label }),
    el('td', { className: 'num', textContent: pct(r.score) }),
    el('td', { textContent: r.uncertain ? 'uncertain' : '' }),
    el('td', { className: 'num', textContent: r.ms.toFixed(1) }),
    el('td', { className: 'note', textContent: text, title: text }),
  ]));
  $('batch-table').querySelector('tbody').replaceChildren(...rows);
  $('batch-table').querySelector('caption').textContent = batch.rows.length > MAX_TABLE_ROWS
    ? `Batch results (first ${MAX_TABLE_ROWS} of ${batch.rows.length}; the CSV has all)` : `Batch results (${batch.rows.length} notes)`;
  show($('batch-results'), true);
}

$('notes-file').addEventListener('change', (e) => { if (e.target.files[0]) classifyFile(e.target.files[0]); });
$('batch-cancel').addEventListener('click', () => model?.cancel());
$('batch-download').addEventListener('click', () => {
  if (!batch) return;
  const csv = resultsCsv(batch.labels, batch.rows);
  const url = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
  const a = el('a', { href: url, download: 'bedside-results.csv' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
});

// ---------- de-identify ----------

const ENTITY_COLOURS = 8; // .entity-0 … .entity-7 in style.css

function showDeidPanel(visible) {
  show($('deid'), visible);
  show($('deid-nav'), visible);
  show($('deid-nav-sep'), visible);
  show($('deid-result'), false);
  showError($('deid-error'), null);
  $('deid-status').textContent = '';
  redactedText = null;
}

function renderDeid(text, entities, redacted) {
  const labels = entityLabels([...model.manifest.labels, ...Object.keys(redacted.counts)]);
  const colour = (label) => `entity-${Math.max(0, labels.indexOf(label.replace(/^[BIES]-/, ''))) % ENTITY_COLOURS}`;
  const note = $('deid-highlighted');
  note.replaceChildren(...entitySegments(text, entities).map(({ text: part, entity }) => {
    if (!entity) return part;
    const mark = el('mark', { className: `entity ${colour(entity.label)}`, title: `${entity.label} (${pct(entity.score)})` },
      [part, el('span', { className: 'sr-only', textContent: ` (${entity.label})` })]);
    mark.dataset.label = entity.label;
    mark.dataset.start = String(entity.start);
    mark.dataset.end = String(entity.end);
    return mark;
  }));
  const seen = entityLabels([...entities.map((e) => e.label), ...Object.keys(redacted.counts)]);
  $('deid-legend').replaceChildren(...seen.map((l) => el('li', {}, [el('span', { className: `swatch entity-swatch ${colour(l)}` }), l])));
  const rows = Object.entries(redacted.counts).map(([label, n]) => el('tr', {}, [
    el('td', {}, [el('span', { className: `swatch entity-swatch ${colour(label)}` }), ` ${label}`]),
    el('td', { className: 'num', textContent: String(n) }),
  ]));
  if (!rows.length) rows.push(el('tr', {}, [el('td', { colSpan: 2, textContent: 'Nothing found to redact.' })]));
  $('deid-counts').querySelector('tbody').replaceChildren(...rows);
  $('deid-redacted').textContent = redacted.text;
  redactedText = redacted.text;
  const box = $('deid-result');
  box.dataset.json = JSON.stringify({ entities, redactions: redacted.redactions, counts: redacted.counts }); // for tests
  show(box, true);
}

async function deidNote() {
  const text = $('deid-note').value;
  showError($('deid-error'), null);
  if (!text.trim()) { showError($('deid-error'), new Error('Type or paste a note first.')); return; }
  setBusy(true);
  $('deid-status').textContent = 'De-identifying…';
  try {
    const started = performance.now();
    // The entities the model finds (highlighted), then the redacted copy (with the rules if asked).
    const entities = await model.tag(text);
    const redacted = await model.deid(text, { rules: $('deid-rules').checked });
    renderDeid(text, entities, redacted);
    const n = redacted.redactions.length;
    $('deid-status').textContent = `${entities.length} entit${entities.length === 1 ? 'y' : 'ies'}, ${n} span${n === 1 ? '' : 's'} redacted `
      + `in ${ms(performance.now() - started)} on ${backendName(model.backend)}.`;
  } catch (e) {
    $('deid-status').textContent = '';
    showError($('deid-error'), e);
  } finally {
    setBusy(false);
  }
}

$('deid-run').addEventListener('click', deidNote);
$('deid-note').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !$('deid-run').disabled) deidNote();
});
$('deid-download').addEventListener('click', () => {
  if (redactedText === null) return;
  // A Blob made here: the copy is saved, not sent anywhere.
  const url = URL.createObjectURL(new Blob([redactedText], { type: 'text/plain;charset=utf-8' }));
  const a = el('a', { href: url, download: 'note-redacted.txt' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
});

// ---------- search ----------

let droppedDocFiles = [];

async function readDocuments() {
  const files = [...$('docs-file').files, ...droppedDocFiles];
  const docs = [];
  for (const file of files) {
    const parsed = parseDocuments(file.name, new Uint8Array(await file.arrayBuffer()));
    // Ids of several files are prefixed with the file name so they stay distinct.
    for (const d of parsed) docs.push(files.length > 1 ? { ...d, id: `${file.name}:${d.id}` } : d);
  }
  const pasted = $('docs-text').value.split('\n').map((t, i) => ({ id: files.length ? `pasted:${i + 1}` : String(i + 1), text: t.trim(), line: i + 1 }))
    .filter((d) => d.text);
  docs.push(...pasted);
  if (!docs.length) throw new Error('Choose document files, drop them on this box, or paste documents first.');
  return docs;
}

async function buildIndex() {
  showError($('search-error'), null);
  let docs;
  try {
    docs = await readDocuments();
  } catch (e) {
    showError($('search-error'), e);
    return;
  }
  const bar = $('index-progress');
  setBusy(true);
  show(bar, true);
  bar.value = 0;
  show($('index-cancel'), true);
  const withLabels = docs.some((d) => d.label);
  const predict = !withLabels && CLASSIFIER_TASKS.includes(model.manifest.task);
  try {
    const info = await model.index(docs, {
      int8: $('docs-int8').checked,
      classify: predict,
      onProgress: (p) => {
        bar.value = (100 * p.loaded) / p.total;
        $('index-status').textContent = `Embedding ${p.loaded} of ${p.total} documents…`;
      },
    });
    docsById = new Map(docs.map((d, i) => [d.id, { ...d, label: d.label ?? info.predicted?.[i] ?? null }]));
    $('index-status').textContent = `${info.length} documents indexed in ${(info.ms / 1000).toFixed(1)} s `
      + `(${info.int8 ? 'int8' : 'f32'}, ${mb(info.memoryBytes)} in memory).`;
    $('search-results').replaceChildren();
    await drawMap();
  } catch (e) {
    $('index-status').textContent = '';
    showError($('search-error'), e.code === 'cancelled' ? new Error('Cancelled; the previous index is kept.') : e);
  } finally {
    show(bar, false);
    show($('index-cancel'), false);
    setBusy(false);
  }
}

async function runSearch() {
  showError($('search-error'), null);
  const query = $('query').value;
  if (!query.trim()) { showError($('search-error'), new Error('Type a query first.')); return; }
  const k = Math.max(1, Math.min(100, Number($('query-k').value) || 5));
  setBusy(true);
  try {
    const started = performance.now();
    const hits = await model.search(query, { k });
    const list = $('search-results');
    list.replaceChildren(...hits.map((h) => {
      const doc = docsById.get(h.id);
      const text = doc?.text ?? '';
      return el('li', {}, [
        el('span', { className: 'score', textContent: h.score.toFixed(4) }),
        el('span', { className: 'id', textContent: h.id }),
        doc?.label ? el('span', { className: 'id', textContent: `[${doc.label}]` }) : '',
        text.length > 240 ? `${text.slice(0, 240)}…` : text,
      ]);
    }));
    list.dataset.json = JSON.stringify(hits);
    $('index-status').textContent = `${hits.length} results in ${ms(performance.now() - started)}.`;
  } catch (e) {
    showError($('search-error'), e);
  } finally {
    setBusy(false);
  }
}

async function compareTexts() {
  showError($('search-error'), null);
  const a = $('compare-a').value;
  const b = $('compare-b').value;
  if (!a.trim() || !b.trim()) { showError($('search-error'), new Error('Fill in both texts.')); return; }
  setBusy(true);
  try {
    const { cosine, ms: t } = await model.similarity(a, b);
    const out = $('compare-result');
    out.textContent = `cosine similarity ${cosine.toFixed(4)} (${ms(t)})`;
    out.dataset.cosine = String(cosine);
  } catch (e) {
    showError($('search-error'), e);
  } finally {
    setBusy(false);
  }
}

$('index-build').addEventListener('click', buildIndex);
$('index-cancel').addEventListener('click', () => model?.cancel());
$('search-run').addEventListener('click', runSearch);
$('query').addEventListener('keydown', (e) => { if (e.key === 'Enter' && !$('search-run').disabled) runSearch(); });
$('compare-run').addEventListener('click', compareTexts);
$('docs-file').addEventListener('change', () => { droppedDocFiles = []; });

// ---------- map ----------

const SVG = 'http://www.w3.org/2000/svg';

function clearMap() {
  const svg = $('map');
  svg.querySelectorAll('circle').forEach((n) => n.remove());
  $('map-empty').style.display = ''; // an SVG element: no `hidden` property
  $('map-legend').replaceChildren();
  show($('map-tooltip'), false);
}

async function drawMap() {
  clearMap();
  const svg = $('map');
  if (docsById.size < 2) return;
  const points = await model.project();
  $('map-empty').style.display = 'none';
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const W = 640, H = 400, M = 24;
  const sx = (x) => M + ((x - x0) / (x1 - x0 || 1)) * (W - 2 * M);
  const sy = (y) => H - M - ((y - y0) / (y1 - y0 || 1)) * (H - 2 * M);
  const labels = [...new Set([...docsById.values()].map((d) => d.label ?? 'no label'))].sort();
  const color = (label) => PALETTE[labels.indexOf(label) % PALETTE.length];
  const focusable = points.length <= 500;
  for (const p of points) {
    const doc = docsById.get(p.id);
    const label = doc?.label ?? 'no label';
    const c = document.createElementNS(SVG, 'circle');
    c.setAttribute('cx', sx(p.x).toFixed(1));
    c.setAttribute('cy', sy(p.y).toFixed(1));
    c.setAttribute('r', '5');
    c.setAttribute('fill', color(label));
    c.dataset.id = p.id;
    if (focusable) c.setAttribute('tabindex', '0');
    c.setAttribute('aria-label', `${p.id}, ${label}`);
    svg.append(c);
  }
  $('map-legend').replaceChildren(...labels.map((l) => {
    const swatch = el('span', { className: 'swatch' });
    swatch.style.background = color(l);
    return el('li', {}, [swatch, l]);
  }));
}

function showTooltip(circle) {
  const doc = docsById.get(circle.dataset.id);
  if (!doc) return;
  const tip = $('map-tooltip');
  const text = doc.text.length > 160 ? `${doc.text.slice(0, 160)}…` : doc.text;
  tip.replaceChildren(el('strong', { textContent: `${doc.id} · ${doc.label ?? 'no label'}` }), el('br'), text);
  const wrap = $('map-wrap').getBoundingClientRect();
  const box = circle.getBoundingClientRect();
  tip.style.left = `${Math.min(box.right - wrap.left + 8, wrap.width - 200)}px`;
  tip.style.top = `${box.top - wrap.top + 8}px`;
  show(tip, true);
  $('map').querySelectorAll('circle.active').forEach((c) => c.classList.remove('active'));
  circle.classList.add('active');
}

function hideTooltip() {
  show($('map-tooltip'), false);
  $('map').querySelectorAll('circle.active').forEach((c) => c.classList.remove('active'));
}

for (const type of ['mouseover', 'focusin']) {
  $('map').addEventListener(type, (e) => { if (e.target.tagName === 'circle') showTooltip(e.target); });
}
$('map').addEventListener('mouseleave', hideTooltip);
$('map').addEventListener('focusout', hideTooltip);

// ---------- drag and drop ----------

// A file dropped outside a box must not make the browser open it.
document.addEventListener('dragover', (e) => e.preventDefault());
document.addEventListener('drop', (e) => {
  e.preventDefault();
  const file = e.dataTransfer?.files?.[0];
  if (file && file.name.toLowerCase().endsWith('.gguf')) loadModel(file, { cacheKey: file.name });
});
for (const zone of document.querySelectorAll('[data-drop]')) {
  zone.addEventListener('dragenter', () => zone.classList.add('drag-over'));
  zone.addEventListener('dragleave', (e) => { if (!zone.contains(e.relatedTarget)) zone.classList.remove('drag-over'); });
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    e.stopPropagation();
    zone.classList.remove('drag-over');
    const files = [...(e.dataTransfer?.files ?? [])];
    if (!files.length) return;
    const kind = zone.dataset.drop;
    if (kind === 'model' || files[0].name.toLowerCase().endsWith('.gguf')) loadModel(files[0], { cacheKey: files[0].name });
    else if (kind === 'notes') classifyFile(files[0]);
    else if (kind === 'docs') {
      droppedDocFiles = files;
      $('index-status').textContent = `${files.length} file${files.length > 1 ? 's' : ''} ready: ${files.map((f) => f.name).join(', ')}.`;
      if (!$('index-build').disabled) buildIndex();
    }
  });
}

// ---------- start ----------

async function start() {
  $('isolation-badge').textContent = `Cross-origin isolated: ${self.crossOriginIsolated ? 'yes' : 'no'}`;
  $('privacy-origin').textContent = location.origin;
  $('privacy-csp').textContent = document.querySelector('meta[http-equiv="Content-Security-Policy"]')?.content ?? '';
  webgpuAvailable().then((ok) => {
    webgpuText = ok ? 'This browser can use a GPU (WebGPU).' : 'No GPU is available to this browser, so the model runs on the CPU.';
    if (!model) $('backend-note').textContent = webgpuText;
  });
  setBusy(false);
  refreshCacheStatus();
  // ?model=<same-origin path> picks the bundle; else the one the server offers at model.gguf
  // (`bedside serve --model`); else the last one used here (perhaps a cached local file).
  const asked = new URLSearchParams(location.search).get('model');
  const offered = $('model-url').value;
  const served = asked ? false : await fetch(offered, { method: 'HEAD', cache: 'no-store' }).then((r) => r.ok, () => false);
  const source = asked ?? (served ? offered : localStorage.getItem(LAST_MODEL) ?? offered);
  if (asked) $('model-url').value = asked;
  if (source.startsWith('cache:')) {
    await loadModel(source, { quietMissing: true });
    if (!model) await loadModel($('model-url').value, { quietMissing: true });
  } else {
    await loadModel(source, { quietMissing: true });
  }
}

start();
