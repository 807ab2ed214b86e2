// The page's choice of wasm build (www/widget/wasm-build.js) in Node: relaxed SIMD is picked
// only where the relaxed-SIMD build gives the numbers it should (those of the native CLI's
// `--quantized-matmul relaxed`). Node 20 has relaxed SIMD behind a flag, and with the flag
// computes its dot product otherwise than the final spec (and Chromium) do: there the probe
// must say simd128. The relaxed build's accuracy is checked in Chromium
// (tests/browser/relaxed.test.mjs).
// Run: node --test tests/wasm/   (after scripts/build-wasm.sh and `cargo build`)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, exportBundle, root, workDir } from './helpers.mjs';
import { bestWasmBuild } from '../../www/widget/wasm-build.js';

const work = workDir('bedside-relaxed-');
const relaxedWasm = readFileSync(join(root, 'target/wasm-node-relaxed/bedside_runtime_bg.wasm'));
const plainWasm = readFileSync(join(root, 'target/wasm-node/bedside_runtime_bg.wasm'));
// Where relaxed SIMD is still behind a flag, the child gets the flag.
const nodeFlags = WebAssembly.validate(relaxedWasm) ? [] : ['--experimental-wasm-relaxed-simd'];
const NOTES = ['patient denies chest pain.',
  Array(40).fill('male patient with chest pain and shortness of breath, bp 150/90.').join(' ')];

test('without relaxed SIMD the probe picks the simd128 build', () => {
  assert.ok(WebAssembly.validate(plainWasm), 'the simd128 build validates');
  if (!WebAssembly.validate(relaxedWasm)) assert.equal(bestWasmBuild(), 'simd128');
});

test('the probe picks relaxed SIMD exactly where that build classifies as the CLI does', () => {
  const bundle = exportBundle(work, join(root, 'models/fixtures/tiny-classifier'), 'q8_0', 'tiny.gguf');
  const notesFile = join(work, 'notes.json');
  writeFileSync(notesFile, JSON.stringify(NOTES));
  const run = (...args) => execFileSync(process.execPath, [...nodeFlags, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const probe = run('--input-type=module', '-e',
    `import { bestWasmBuild } from ${JSON.stringify(join(root, 'www/widget/wasm-build.js'))}; process.stdout.write(bestWasmBuild())`);
  const wasm = JSON.parse(run(join(root, 'tests/wasm/relaxed-embed.cjs'), bundle, 'classify', notesFile));
  const native = cli('classify', '--model', bundle, '--backend', 'cpu', '--quantized-matmul', 'relaxed', '--json', ...NOTES)
    .trim().split('\n').map(JSON.parse);
  let worst = 0;
  native.forEach((want, i) => {
    for (const [label, p] of Object.entries(want.probabilities)) worst = Math.max(worst, Math.abs(wasm[i].probabilities[label] - p));
  });
  console.log(`node ${process.version} ${nodeFlags.join(' ')}: probe says ${probe}; relaxed build vs CLI: max |ΔP| ${worst.toExponential(2)}`);
  assert.equal(probe === 'relaxed-simd', worst <= 1e-5, `probe ${probe}, max |ΔP| ${worst}`);
});
