// Types of bedside-widget (hand-written; the code is plain ES modules).

export type Backend = 'auto' | 'webgpu' | 'cpu' | 'wasm';
export type Task = 'embedding' | 'classification' | 'binary' | 'multilabel' | 'token-classification';
/** How token predictions become entities: transformers' `aggregation_strategy`. */
export type EntityAggregation = 'none' | 'simple' | 'first' | 'average' | 'max';

export interface Progress {
  /** download (network), cache (Cache Storage), read (a File), load (the runtime), classify, index */
  phase: 'download' | 'cache' | 'read' | 'load' | 'classify' | 'index';
  loaded: number;
  /** 0 when unknown */
  total: number;
  /** percent, or null when the total is unknown */
  progress?: number | null;
}

export interface Manifest {
  format_version: number;
  task: Task;
  labels: string[];
  head_outputs: number;
  /**
   * What the classifier layer reads: the pooler over [CLS] (BertForSequenceClassification),
   * the raw [CLS] vector, or the mean of the token vectors. Format-1 bundles: always 'pooler'.
   */
  head_features: 'pooler' | 'cls' | 'mean';
  /** How embeddings are pooled (task 'embedding'). */
  pooling: 'cls' | 'mean';
  normalize: boolean;
  max_seq_len: number;
  stride: number;
  aggregation: { method: 'clinicalbert' | 'mean' | 'max'; c?: number };
  /** Token-classification bundles: how token labels become entities (default 'simple'). */
  entity_aggregation?: EntityAggregation;
  decision_threshold: number;
  min_confidence: number;
  base_model: string;
  quantization: 'f32' | 'f16' | 'q8_0' | 'q4_0';
  special_tokens: { cls: string; sep: string; pad: string };
  config: Record<string, unknown>;
  created_by: string;
}

export interface Chunk {
  index: number;
  /** UTF-8 byte offsets of the window in the note (see byteToCharIndex) */
  start: number;
  end: number;
  num_tokens: number;
  score: number;
  probabilities: Record<string, number>;
}

export interface Classification {
  label: string;
  score: number;
  probabilities: Record<string, number>;
  /** labels at or above the decision threshold (multi-label), else [label] */
  labels: string[];
  /** the probability is below the bundle's min_confidence */
  uncertain: boolean;
  chunks: Chunk[];
  /** milliseconds in the worker */
  ms: number;
}

/** An entity found in a note (`tag`). */
export interface Entity {
  /** The entity's label ('NAME'; with aggregation 'none' the token's tag, 'B-NAME') */
  label: string;
  /** UTF-8 byte offsets into the note (as the CLI and `classify`'s chunks) */
  start: number;
  end: number;
  /** mean probability of the entity's tokens (transformers' pipeline score) */
  score: number;
  /** the same span as JS string (UTF-16) indices: `note.slice(start_char, end_char)` */
  start_char: number;
  end_char: number;
}

/** One replaced span of a de-identified note. */
export interface Redaction {
  label: string;
  /** UTF-8 byte offsets into the note, and into the redacted text (the `[LABEL]` placeholder) */
  start: number;
  end: number;
  redacted_start: number;
  redacted_end: number;
  /** the same four as JS string (UTF-16) indices */
  start_char: number;
  end_char: number;
  redacted_start_char: number;
  redacted_end_char: number;
}

/** A de-identified note: never the removed text. */
export interface Redacted {
  /** the note with each span replaced by `[LABEL]` (overlapping or touching spans merged) */
  text: string;
  redactions: Redaction[];
  /** spans replaced per label */
  counts: Record<string, number>;
  /** milliseconds in the worker */
  ms: number;
}

/** What the pattern rules look for, besides the model (all of them with `true`). */
export type PhiKind = 'date' | 'phone' | 'fax' | 'email' | 'url' | 'mrn' | 'age_over_89' | 'name';
export type DeidRules = boolean | { kinds?: PhiKind[]; names?: string[] };

export interface Hit {
  id: string;
  /** cosine similarity */
  score: number;
}

export interface Document {
  id: string | number;
  text: string;
  label?: string;
}

export interface IndexInfo {
  length: number;
  dim: number;
  int8: boolean;
  memoryBytes: number;
  /** predicted labels in document order when indexed with `classify: true` */
  predicted: string[] | null;
  ms: number;
}

export interface LoadOptions {
  /** "auto" uses WebGPU when the runtime build and the browser have it. Default "auto". */
  backend?: Backend;
  onProgress?: (event: Progress) => void;
  /** Keep downloaded bundles in the Cache API (default true). */
  cache?: boolean;
  /** Cache a File/Blob under this name; load("cache:" + name) later. */
  cacheKey?: string;
  /** Pins the bundle: "sha256-<base64>" (Subresource Integrity's form) or "sha256:<hex>" (what
   * `bedside export` prints). Any other bundle is refused (code `integrity_mismatch`). */
  integrity?: string;
  /** CPU threads for the wasm backend: "auto" (every core up to 4) or a count. More than one
   * needs a cross-origin isolated page (COOP/COEP headers, as `bedside serve` sends); elsewhere
   * the model runs on one thread. Threads change speed only, never a result. Default "auto". */
  threads?: 'auto' | number;
}

export declare class BedsideModel {
  readonly manifest: Manifest;
  readonly backend: 'webgpu' | 'cpu';
  /** Why the model is not on WebGPU although that was asked for, as one plain sentence, else null. */
  readonly backendNote: string | null;
  /** The technical reason behind `backendNote` (adapter, limits, driver message), else null. */
  readonly backendDetail: string | null;
  /** The wasm build the worker runs: relaxed SIMD (Chrome/Edge 114+) or plain SIMD. */
  readonly wasmBuild: 'relaxed-simd' | 'simd128' | null;
  /** CPU threads the wasm backend runs on (1 unless the page is cross-origin isolated). */
  readonly threads: number;
  /** "sha256:…", recomputed by the runtime at load and equal to the one stored in the bundle. */
  readonly checksum: string;
  /** `general.name` of the bundle (its base model when empty). */
  readonly name: string;
  /** Whether the checksum covers `name`: true from bundle format 3 on. */
  readonly nameVerified: boolean;
  /** The bundle's layout version. */
  readonly formatVersion: number;
  readonly size: number;
  readonly source: 'network' | 'cache' | 'file' | 'bytes';
  readonly timings: { readMs: number; loadMs: number };
  /** The bundle's task (`manifest.task`). */
  readonly task: Task;
  classify(text: string): Promise<Classification>;
  /** Entities of a note (token-classification bundles; others: code `wrong_task`). */
  tag(text: string, options?: { aggregation?: EntityAggregation }): Promise<Entity[]>;
  /** De-identifies a note (token-classification bundles): the model's entities, and with `rules` the pattern rules' spans, replaced by `[LABEL]`. */
  deid(text: string, options?: { rules?: DeidRules }): Promise<Redacted>;
  classifyMany(texts: string[], options?: { onProgress?: (event: Progress) => void }): Promise<Classification[]>;
  embed(texts: string | string[]): Promise<Float32Array[]>;
  similarity(a: string, b: string): Promise<{ cosine: number; ms: number }>;
  index(documents: Array<Document | string>, options?: { int8?: boolean; classify?: boolean; onProgress?: (event: Progress) => void }): Promise<IndexInfo>;
  search(query: string, options?: { k?: number; documents?: Array<Document | string>; int8?: boolean }): Promise<Hit[]>;
  project(): Promise<Array<{ id: string; x: number; y: number }>>;
  cancel(): void;
  dispose(): void;
}

export declare const CACHE_NAME: string;

/** Loads a bundle (URL, File/Blob, bytes, or "cache:<key>") in a new worker; it becomes the current model. */
export declare function load(source: string | URL | Blob | ArrayBuffer | Uint8Array, options?: LoadOptions): Promise<BedsideModel>;
export declare function currentModel(): BedsideModel | null;
/** Shortcuts to the current model. */
export declare function classify(text: string): Promise<Classification>;
export declare function embed(texts: string | string[]): Promise<Float32Array[]>;
export declare function search(query: string, options?: { k?: number; documents?: Array<Document | string>; int8?: boolean }): Promise<Hit[]>;
export declare function similarity(a: string, b: string): Promise<{ cosine: number; ms: number }>;
export declare function tag(text: string, options?: { aggregation?: EntityAggregation }): Promise<Entity[]>;
export declare function deid(text: string, options?: { rules?: DeidRules }): Promise<Redacted>;

export declare function cachedBundles(): Promise<Array<{ key: string; name: string; size: number; stored: string | null }>>;
export declare function clearCache(): Promise<number>;
export declare function webgpuAvailable(): Promise<boolean>;

export declare function parseDocuments(name: string, content: string | Uint8Array | ArrayBuffer): Array<{ id: string; text: string; label?: string; line: number }>;
export declare function parseCsv(text: string): Array<{ cells: string[]; line: number }>;
export declare function resultsCsv(labels: string[], results: Array<{ id: string; result: Classification }>): string;
export declare function topChunk(result: Classification): Chunk | null;
export declare function byteToCharIndex(text: string, byteOffset: number): number;
/** The note cut at its entities, for highlighting (entity null between entities). */
export declare function entitySegments<E extends { start: number; end: number; start_char?: number; end_char?: number }>(text: string, entities: E[]): Array<{ text: string; entity: E | null }>;
/** Labels without their B-/I- prefix, in first-seen order, 'O' left out. */
export declare function entityLabels(labels: string[]): string[];

export interface BedsideEvents {
  'bedside-progress': CustomEvent<Progress>;
  'bedside-load': CustomEvent<{ manifest: Manifest; backend: 'webgpu' | 'cpu'; checksum: string | null }>;
  'bedside-result': CustomEvent<{ text: string; result: Classification }>;
  'bedside-ready': CustomEvent<{ length: number }>;
  'bedside-results': CustomEvent<{ query: string; hits: Array<Hit & { text: string }> }>;
  'bedside-deid': CustomEvent<{ text: string; entities: Entity[]; redacted: Redacted }>;
  'bedside-error': CustomEvent<{ code: string | null; message: string }>;
}

/** <bedside-classifier src backend text label button-label> */
export declare class BedsideClassifierElement extends HTMLElement {
  classify(text: string): Promise<Classification>;
}

/** <bedside-search src backend documents k int8 query label>; child elements are documents. */
export declare class BedsideSearchElement extends HTMLElement {
  setDocuments(documents: Array<Document | string>): Promise<void>;
  search(query: string): Promise<Array<Hit & { text: string }>>;
}

/**
 * <bedside-deid src backend integrity text label button-label aggregation rules filename>: a
 * note box for a token-classification bundle; shows the note with its entities highlighted, the
 * counts per label and the redacted copy (with a download button). `rules`: the "also apply
 * pattern rules" box starts ticked.
 */
export declare class BedsideDeidElement extends HTMLElement {
  deid(text: string): Promise<{ text: string; entities: Entity[]; redacted: Redacted }>;
}

declare global {
  interface HTMLElementTagNameMap {
    'bedside-classifier': BedsideClassifierElement;
    'bedside-search': BedsideSearchElement;
    'bedside-deid': BedsideDeidElement;
  }
}
