// `npm pack` runs this first: the package ships the wasm build in ../pkg, which
// scripts/build-wasm.sh makes (it is not committed).
import { existsSync } from 'node:fs';

const needed = ['pkg/bedside_runtime.js', 'pkg/bedside_runtime_bg.wasm', 'pkg/bedside_runtime_relaxed_bg.wasm',
  'pkg/threads/bedside_runtime.js', 'pkg/threads/bedside_runtime_bg.wasm', 'pkg/threads/bedside_runtime_relaxed_bg.wasm'];
const missing = needed.filter((f) => !existsSync(new URL(`../${f}`, import.meta.url)));
if (missing.length) {
  console.error(`missing ${missing.join(', ')}: run bash scripts/build-wasm.sh first`);
  process.exit(1);
}
