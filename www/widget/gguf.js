// Reads a bundle's GGUF metadata header (models/BUNDLE.md) without parsing tensors: enough
// to show the stored checksum and name before the runtime loads the bundle. The runtime
// recomputes that checksum over the manifest, tokenizer, tensor table and all tensor data
// when it loads, and refuses a mismatch (`checksum_mismatch`): that is the integrity check.

const TYPE_SIZES = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
const STRING = 8;
const ARRAY = 9;

/**
 * String-valued metadata of a GGUF file (`general.name`, `bedside.checksum`, …); other
 * values are skipped. Throws `Error` with code `bad_magic` or `truncated_bundle`.
 * @param {Uint8Array} bytes
 * @returns {Record<string, string>}
 */
export function readMetadata(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoder = new TextDecoder();
  let at = 0;
  const need = (n) => {
    if (at + n > bytes.byteLength) throw bundleError('truncated_bundle', 'the bundle ends inside its metadata');
  };
  const u32 = () => { need(4); const v = view.getUint32(at, true); at += 4; return v; };
  const u64 = () => { need(8); const v = view.getBigUint64(at, true); at += 8; return Number(v); };
  const string = () => { const n = u64(); need(n); const s = decoder.decode(bytes.subarray(at, at + n)); at += n; return s; };
  const skip = (type) => {
    if (type === STRING) { const n = u64(); need(n); at += n; return; }
    if (type === ARRAY) { const inner = u32(); const count = u64(); for (let i = 0; i < count; i++) skip(inner); return; }
    const size = TYPE_SIZES[type];
    if (size === undefined) throw bundleError('bad_bundle', `unknown GGUF value type ${type}`);
    need(size); at += size;
  };

  need(4);
  if (decoder.decode(bytes.subarray(0, 4)) !== 'GGUF') throw bundleError('bad_magic', 'not a bundle: the file does not start with GGUF');
  at = 4;
  u32(); // version
  u64(); // tensor count
  const count = u64();
  const out = {};
  for (let i = 0; i < count; i++) {
    const key = string();
    const type = u32();
    if (type === STRING) out[key] = string();
    else skip(type);
  }
  return out;
}

function bundleError(code, message) {
  const e = new Error(message);
  e.name = 'BedsideError';
  e.code = code;
  return e;
}
