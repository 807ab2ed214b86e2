// Which of the runtime's two wasm builds this browser runs (scripts/build-wasm.sh makes both):
//   'relaxed-simd'  Chrome/Edge 114+, Firefox 153 ESR: q8_0/q4_0 matmuls on relaxed SIMD's 8-bit dot product,
//                   about twice the int8 throughput (q8_0 activations keep 7 bits instead of 8)
//   'simd128'       every other browser with WebAssembly SIMD
// Both share one JS glue (pkg/bedside_runtime.js); only the .wasm file differs. Each also comes
// threaded (pkg/threads/, its own glue) for cross-origin isolated pages: see `threadsFor`.

const v128 = (byte) => [0xfd, 0x0c, ...new Array(16).fill(byte & 0xff)];
// f() = lane 0 of i32x4.relaxed_dot_i8x16_i7x16_add_s(splat(-3), splat(5), 0) = 4 · (-3 · 5).
// Validating is not enough: early engines (Node 20's, behind a flag) compute it otherwise.
const body = [0x00, ...v128(-3), ...v128(5), ...v128(0), 0xfd, 0x93, 0x02, 0xfd, 0x1b, 0x00, 0x0b];
const PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // types: () -> i32
  0x03, 0x02, 0x01, 0x00, // one function, of type 0
  0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00, // export it as "f"
  0x0a, body.length + 2, 0x01, body.length, ...body, // its code
]);

/** The build this engine runs best: 'relaxed-simd' where it computes relaxed SIMD's dot product as
 *  specified, else 'simd128'. */
export function bestWasmBuild() {
  try {
    if (!WebAssembly.validate(PROBE)) return 'simd128';
    const probe = new WebAssembly.Instance(new WebAssembly.Module(PROBE));
    return probe.exports.f() === -60 ? 'relaxed-simd' : 'simd128';
  } catch {
    return 'simd128';
  }
}

/** How many threads to run on: `wanted` ('auto', or a count) where the page can share memory
 *  with workers (cross-origin isolated), else 1. 'auto' is every core up to 4, as onnxruntime-web
 *  caps its own. */
export function threadsFor(wanted = 'auto') {
  const cores = self.navigator?.hardwareConcurrency || 1;
  const count = wanted === 'auto' ? (threadsHangHere() ? 1 : Math.min(4, cores)) : Math.floor(Number(wanted));
  if (!Number.isFinite(count) || count < 1) {
    throw Object.assign(new Error("threads must be 'auto' or a whole number of at least 1"), { name: 'BedsideError', code: 'bad_threads' });
  }
  return count > 1 && canShareMemory() ? count : 1;
}

/** Firefox (153 ESR, headless, Linux): a threaded load or its first call never returned in 4 of
 *  about 60 tries in our tests (cause not found yet), so 'auto' gives Firefox one thread. An
 *  explicit count is still honoured there. */
function threadsHangHere() {
  return /\bFirefox\//.test(self.navigator?.userAgent ?? '');
}

/** Whether this context may share a wasm memory with workers: a cross-origin isolated page
 *  (COOP + COEP headers, as `bedside serve` sends) that has SharedArrayBuffer. */
export function canShareMemory() {
  return self.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function';
}

/** The URL of `build`'s .wasm file, next to its glue (the threaded builds in pkg/threads/).
 *  (Literal `new URL(…, import.meta.url)` calls, so that bundlers such as Vite find and emit
 *  every file.) */
export function wasmUrl(build, { threaded = false } = {}) {
  if (threaded) {
    return build === 'relaxed-simd'
      ? new URL('../pkg/threads/bedside_runtime_relaxed_bg.wasm', import.meta.url)
      : new URL('../pkg/threads/bedside_runtime_bg.wasm', import.meta.url);
  }
  return build === 'relaxed-simd'
    ? new URL('../pkg/bedside_runtime_relaxed_bg.wasm', import.meta.url)
    : new URL('../pkg/bedside_runtime_bg.wasm', import.meta.url);
}
