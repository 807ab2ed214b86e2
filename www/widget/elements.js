// <bedside-classifier>, <bedside-search> and <bedside-deid>: the widget as HTML. Configured by attributes,
// rendered in light DOM (plain elements with `bedside-` classes, so the host page styles
// them and no inline style sheet is needed under a strict CSP), results as DOM events.
//
//   <bedside-classifier src="/model.gguf" backend="auto" text="optional note"></bedside-classifier>
//   (`integrity="sha256-…"` pins the bundle, as on a <script> tag)
//   <bedside-search src="/model.gguf" k="5" documents="/docs.jsonl"></bedside-search>
//   <bedside-deid src="/ner.gguf" rules aggregation="simple" text="optional note"></bedside-deid>
//
// Events (bubbling, composed): bedside-progress {phase, loaded, total, progress},
// bedside-load {manifest, backend, checksum}, bedside-result {text, result} (classifier),
// bedside-ready {length} and bedside-results {query, hits} (search), bedside-deid
// {text, entities, redacted} (de-identification), bedside-error {code, message}.
import { load, parseDocuments, topChunk, byteToCharIndex, entitySegments, entityLabels } from './core.js';

// Elements with the same bundle and backend share one model (one worker).
const models = new Map();

function sharedModel(src, backend, integrity, onProgress) {
  const key = `${backend}|${integrity ?? ''}|${new URL(src, location.href).href}`;
  if (!models.has(key)) {
    const promise = load(src, { backend, onProgress, integrity: integrity ?? undefined });
    promise.catch(() => models.delete(key)); // a failed load can be retried
    models.set(key, promise);
  }
  return models.get(key);
}

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c);
  return node;
}

let uid = 0;

const HTMLElementBase = typeof HTMLElement === 'undefined' ? class {} : HTMLElement;

class BedsideElement extends HTMLElementBase {
  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true }));
  }

  fail(error) {
    const detail = { code: error.code ?? null, message: error.message };
    this.status.textContent = `Error: ${error.message}`;
    this.status.classList.add('bedside-error');
    this.emit('bedside-error', detail);
  }

  async model() {
    const src = this.getAttribute('src');
    if (!src) throw Object.assign(new Error('set the src attribute to a bundle URL'), { code: 'no_model' });
    const backend = this.getAttribute('backend') || 'auto';
    const model = await sharedModel(src, backend, this.getAttribute('integrity'), (p) => {
      this.status.textContent = `Loading model… ${p.total ? Math.round((100 * p.loaded) / p.total) + '%' : ''}`;
      this.emit('bedside-progress', p);
    });
    if (!this.announced) {
      this.announced = true;
      this.status.textContent = `Model ready (${model.backend === 'webgpu' ? 'WebGPU' : 'WASM'}).`;
      this.emit('bedside-load', { manifest: model.manifest, backend: model.backend, checksum: model.checksum });
    }
    return model;
  }
}

/** A note box and a button; classifies in the worker and shows label, probabilities and passage. */
export class BedsideClassifierElement extends BedsideElement {
  connectedCallback() {
    if (this.built) return;
    this.built = true;
    const id = `bedside-note-${++uid}`;
    this.input = el('textarea', { id, className: 'bedside-input', rows: 5, spellcheck: false, autocomplete: 'off', value: this.getAttribute('text') ?? '' });
    this.button = el('button', { type: 'button', className: 'bedside-button', textContent: this.getAttribute('button-label') || 'Classify' });
    this.status = el('p', { className: 'bedside-status', role: 'status' });
    this.output = el('div', { className: 'bedside-output' });
    this.output.setAttribute('aria-live', 'polite');
    const label = el('label', { htmlFor: id, textContent: this.getAttribute('label') || 'Note' });
    this.append(label, this.input, this.button, this.status, this.output);
    this.button.addEventListener('click', () => this.classify(this.input.value).catch(() => {}));
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) this.button.click();
    });
    this.model()
      .then(() => (this.input.value.trim() ? this.classify(this.input.value) : null))
      .catch((e) => this.fail(e));
  }

  /** Classifies `text`, renders the result and emits `bedside-result`. */
  async classify(text) {
    try {
      if (!String(text).trim()) throw Object.assign(new Error('the note is empty'), { code: 'empty_text' });
      const model = await this.model();
      this.button.disabled = true;
      const result = await model.classify(text);
      this.render(text, result, model);
      this.emit('bedside-result', { text, result });
      return result;
    } catch (e) {
      this.fail(e);
      throw e;
    } finally {
      this.button.disabled = false;
    }
  }

  render(text, result, model) {
    const manifest = model.manifest;
    this.status.classList.remove('bedside-error');
    this.status.textContent = `${result.ms.toFixed(0)} ms on ${model.backend === 'webgpu' ? 'WebGPU' : 'WASM'}`;
    const head = el('p', { className: 'bedside-label' }, [
      el('strong', { textContent: result.label }), ` ${(result.score * 100).toFixed(1)}%`,
    ]);
    if (result.uncertain) head.append(' ', el('span', { className: 'bedside-uncertain', textContent: `uncertain (below ${Number(manifest.min_confidence.toPrecision(4))})` }));
    const bars = el('ul', { className: 'bedside-bars' });
    for (const [label, p] of Object.entries(result.probabilities).sort((a, b) => b[1] - a[1])) {
      const fill = el('span', { className: 'bedside-bar-fill' });
      fill.style.width = `${(p * 100).toFixed(1)}%`;
      bars.append(el('li', {}, [el('span', { className: 'bedside-bar-label', textContent: `${label} ${(p * 100).toFixed(1)}%` }),
        el('span', { className: 'bedside-bar' }, [fill])]));
    }
    const top = topChunk(result);
    const passage = el('p', { className: 'bedside-passage' });
    if (top) {
      const start = byteToCharIndex(text, top.start);
      const end = byteToCharIndex(text, top.end);
      passage.append(text.slice(0, start), el('mark', { textContent: text.slice(start, end) }), text.slice(end));
    }
    this.output.replaceChildren(head, bars, passage);
  }
}

/** A query box over a set of documents; shows ranked results with scores. */
export class BedsideSearchElement extends BedsideElement {
  connectedCallback() {
    if (this.built) return;
    this.built = true;
    // Documents given as child elements: each one's text, its data-id (else its position).
    const children = [...this.children].filter((c) => c.textContent.trim());
    this.docs = children.map((c, i) => ({ id: c.dataset.id ?? String(i + 1), text: c.textContent.trim() }));
    for (const c of children) c.remove();
    const id = `bedside-query-${++uid}`;
    this.input = el('input', { id, type: 'search', className: 'bedside-input', spellcheck: false, autocomplete: 'off', value: this.getAttribute('query') ?? '' });
    this.button = el('button', { type: 'button', className: 'bedside-button', textContent: 'Search' });
    this.status = el('p', { className: 'bedside-status', role: 'status' });
    this.output = el('ol', { className: 'bedside-results' });
    this.output.setAttribute('aria-live', 'polite');
    this.append(el('label', { htmlFor: id, textContent: this.getAttribute('label') || 'Search' }), this.input, this.button, this.status, this.output);
    this.button.addEventListener('click', () => this.search(this.input.value).catch(() => {}));
    this.input.addEventListener('keydown', (e) => { if (e.key === 'Enter') this.button.click(); });
    this.ready = this.prepare();
    this.ready.then(() => (this.input.value.trim() ? this.search(this.input.value) : null)).catch((e) => this.fail(e));
  }

  async prepare() {
    const model = await this.model();
    const url = this.getAttribute('documents');
    if (url) {
      const response = await fetch(new URL(url, location.href));
      if (!response.ok) throw Object.assign(new Error(`${url}: HTTP ${response.status}`), { code: 'http_error' });
      // Bytes, so the parser reports invalid UTF-8 by line instead of replacing it.
      this.docs = parseDocuments(new URL(url, location.href).pathname, new Uint8Array(await response.arrayBuffer()));
    }
    await this.indexDocs(model);
  }

  /** Replaces the documents: `[{id, text}]` or strings. */
  async setDocuments(docs) {
    this.docs = docs.map((d, i) => (typeof d === 'string' ? { id: String(i + 1), text: d } : { id: String(d.id), text: String(d.text) }));
    this.ready = this.model().then((model) => this.indexDocs(model));
    return this.ready;
  }

  async indexDocs(model) {
    if (!this.docs?.length) throw Object.assign(new Error('no documents: add child elements, a documents URL, or call setDocuments()'), { code: 'empty_corpus' });
    const info = await model.index(this.docs, { int8: this.hasAttribute('int8'),
      onProgress: (p) => { this.status.textContent = `Indexing ${p.loaded}/${p.total}…`; this.emit('bedside-progress', p); } });
    this.status.textContent = `${info.length} documents indexed.`;
    this.emit('bedside-ready', { length: info.length });
  }

  /** Searches, renders the hits and emits `bedside-results`. */
  async search(query) {
    try {
      if (!String(query).trim()) throw Object.assign(new Error('the query is empty'), { code: 'empty_text' });
      await this.ready;
      const model = await this.model();
      const k = Number(this.getAttribute('k')) || 10;
      const byId = new Map(this.docs.map((d) => [d.id, d]));
      const hits = (await model.search(query, { k })).map((h) => ({ ...h, text: byId.get(h.id)?.text ?? '' }));
      this.output.replaceChildren(...hits.map((h) => el('li', {}, [
        el('span', { className: 'bedside-score', textContent: h.score.toFixed(3) }), ' ', el('span', { textContent: h.text })])));
      this.emit('bedside-results', { query, hits });
      return hits;
    } catch (e) {
      this.fail(e);
      throw e;
    }
  }
}

/** How many label colours bedside.css defines (`.bedside-entity-0` … `-7`). */
const ENTITY_COLOURS = 8;

/**
 * A note box (token-classification bundle): the note with its entities highlighted (label on
 * hover and for screen readers), a redacted copy to download, and counts per label.
 * `rules` (boolean attribute) starts with the pattern rules on; `aggregation` picks how the
 * highlighted entities are grouped (default: the bundle's).
 */
export class BedsideDeidElement extends BedsideElement {
  connectedCallback() {
    if (this.built) return;
    this.built = true;
    const id = `bedside-deid-note-${++uid}`;
    this.input = el('textarea', { id, className: 'bedside-input', rows: 5, spellcheck: false, autocomplete: 'off', value: this.getAttribute('text') ?? '' });
    this.rules = el('input', { type: 'checkbox', checked: this.hasAttribute('rules') });
    const rulesLabel = el('label', { className: 'bedside-check' }, [this.rules,
      ' Also apply pattern rules (dates, phone numbers, e-mail, URLs, record numbers, ages over 89)']);
    this.button = el('button', { type: 'button', className: 'bedside-button', textContent: this.getAttribute('button-label') || 'De-identify' });
    this.status = el('p', { className: 'bedside-status', role: 'status' });
    this.output = el('div', { className: 'bedside-output' });
    this.output.setAttribute('aria-live', 'polite');
    const label = el('label', { htmlFor: id, textContent: this.getAttribute('label') || 'Note' });
    this.append(label, this.input, rulesLabel, this.button, this.status, this.output);
    this.button.addEventListener('click', () => this.deid(this.input.value).catch(() => {}));
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) this.button.click();
    });
    this.model()
      .then(() => (this.input.value.trim() ? this.deid(this.input.value) : null))
      .catch((e) => this.fail(e));
  }

  /** Finds the entities of `text`, renders them and the redacted copy, emits `bedside-deid`. */
  async deid(text) {
    try {
      if (!String(text).trim()) throw Object.assign(new Error('the note is empty'), { code: 'empty_text' });
      const model = await this.model();
      if (model.manifest.task !== 'token-classification') {
        throw Object.assign(new Error(`this bundle is a ${model.manifest.task} model; de-identification needs a token-classification bundle`),
          { code: 'wrong_task' });
      }
      this.button.disabled = true;
      const started = performance.now();
      const entities = await model.tag(text, { aggregation: this.getAttribute('aggregation') || undefined });
      const redacted = await model.deid(text, { rules: this.rules.checked });
      this.render(text, entities, redacted, model, performance.now() - started);
      const detail = { text, entities, redacted };
      this.emit('bedside-deid', detail);
      return detail;
    } catch (e) {
      this.fail(e);
      throw e;
    } finally {
      this.button.disabled = false;
    }
  }

  render(text, entities, redacted, model, ms) {
    this.status.classList.remove('bedside-error');
    const n = redacted.redactions.length;
    this.status.textContent = `${entities.length} entit${entities.length === 1 ? 'y' : 'ies'} found, ${n} span${n === 1 ? '' : 's'} redacted `
      + `(${ms.toFixed(0)} ms on ${model.backend === 'webgpu' ? 'WebGPU' : 'WASM'})`;
    const labels = entityLabels([...model.manifest.labels, ...Object.keys(redacted.counts)]);
    const colour = (label) => `bedside-entity-${Math.max(0, labels.indexOf(label.replace(/^[BIES]-/, ''))) % ENTITY_COLOURS}`;
    const note = el('p', { className: 'bedside-entities' });
    note.setAttribute('aria-label', 'Note with the entities found highlighted');
    for (const { text: part, entity } of entitySegments(text, entities)) {
      if (!entity) { note.append(part); continue; }
      const mark = el('mark', { className: `bedside-entity ${colour(entity.label)}`, title: `${entity.label} (${(entity.score * 100).toFixed(0)}%)` },
        [part, el('span', { className: 'bedside-sr', textContent: ` (${entity.label})` })]);
      mark.dataset.label = entity.label;
      note.append(mark);
    }
    const counts = el('ul', { className: 'bedside-counts' });
    counts.setAttribute('aria-label', 'Spans redacted per label');
    for (const [label, count] of Object.entries(redacted.counts)) {
      counts.append(el('li', {}, [el('span', { className: `bedside-swatch ${colour(label)}` }), `${label}: ${count}`]));
    }
    if (!counts.children.length) counts.append(el('li', { textContent: 'Nothing to redact.' }));
    const copy = el('pre', { className: 'bedside-redacted', textContent: redacted.text, tabIndex: 0 });
    copy.setAttribute('aria-label', 'Redacted note');
    const download = el('button', { type: 'button', className: 'bedside-button', textContent: 'Download redacted note' });
    download.addEventListener('click', () => downloadText(redacted.text, this.getAttribute('filename') || 'note-redacted.txt'));
    this.output.replaceChildren(note, counts, el('p', { className: 'bedside-heading', textContent: 'Redacted copy' }), copy, download);
  }
}

/** Saves `text` as a file from a Blob: nothing is sent anywhere. */
function downloadText(text, name) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain;charset=utf-8' }));
  const a = el('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

if (typeof customElements !== 'undefined') {
  if (!customElements.get('bedside-classifier')) customElements.define('bedside-classifier', BedsideClassifierElement);
  if (!customElements.get('bedside-search')) customElements.define('bedside-search', BedsideSearchElement);
  if (!customElements.get('bedside-deid')) customElements.define('bedside-deid', BedsideDeidElement);
}
