// Which of the runtime's two wasm builds this browser runs (scripts/build-wasm.sh makes both):
//   'relaxed-simd'  Chrome/Edge 114+: q8_0/q4_0 matmuls on relaxed SIMD's 8-bit dot product,
//                   about twice the int8 throughput (q8_0 activations keep 7 bits instead of 8)
//   'simd128'       every other browser with WebAssembly SIMD
// Both share one JS glue (pkg/bedside_runtime.js); only the .wasm file differs.

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

/** The URL of `build`'s .wasm file, next to the glue. (Literal `new URL(…, import.meta.url)`
 *  calls, so that bundlers such as Vite find and emit both files.) */
export function wasmUrl(build) {
  return build === 'relaxed-simd'
    ? new URL('../pkg/bedside_runtime_relaxed_bg.wasm', import.meta.url)
    : new URL('../pkg/bedside_runtime_bg.wasm', import.meta.url);
}
