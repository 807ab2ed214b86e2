// The runtime's WebGPU backend in headless Chromium. With --enable-unsafe-webgpu Chromium
// exposes SwiftShader's WebGPU adapter (a CPU implementation, so correctness, not speed):
// the WebGPU results must match the wasm CPU path in the same page (its f32 reference mode
// for quantized weights; the default integer path within cosine 0.999), for f32, q8_0 and
// q4_0 bundles, batches, and long notes cut into windows. Without the flag there is no
// adapter: "auto" falls back to wasm with a note, "webgpu" fails with code "gpu".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import {
  cli, chromiumPath, cosine, launch, minilmDir, root, screenshot, staticServer, watchPage, workDir,
} from './helpers.mjs';

const MAX_PROB_DIFF = 1e-3;
const MIN_COSINE = 0.999;
const QUANTS = ['f32', 'f16', 'q8_0', 'q4_0'];

const TEXTS = [
  'Type 2 diabetes mellitus with diabetic chronic kidney disease',
  'T2DM with CKD stage 3',
  'Patient denies chest pain; BP 142/90, HR 88. Continue lisinopril 10 mg daily.',
  'a',
];
const LONG_NOTE = 'Chest pain radiating to the left arm, troponin elevated, started on heparin. '.repeat(12)
  + 'Wheezing and shortness of breath, albuterol nebuliser given. '.repeat(10);

let work;
let server;

before(() => {
  work = workDir('webgpu');
  mkdirSync(join(work, 'models'));
  cpSync(join(root, 'www/pkg'), join(work, 'pkg'), { recursive: true });
  writeFileSync(join(work, 'index.html'), '<!doctype html><meta charset="utf-8"><title>webgpu</title><link rel="icon" href="data:,"><p>webgpu test</p>');
  for (const quant of QUANTS) {
    cli('export', '--model', minilmDir(), '--quant', quant, '--out', join(work, 'models', `minilm-${quant}.gguf`));
    cli('export', '--model', join(root, 'models/fixtures/tiny-classifier'), '--quant', quant,
      '--out', join(work, 'models', `tiny-${quant}.gguf`));
  }
  return staticServer(work).then((s) => { server = s; });
});

after(() => server?.stop());

/** Runs in the page: loads a bundle on both backends and returns both answers. */
async function bothBackends(page, { bundle, texts, note, backend }) {
  return page.evaluate(async ({ bundle, texts, note, backend }) => {
    const wasm = await import('/pkg/bedside_runtime.js');
    await wasm.default('/pkg/bedside_runtime_bg.wasm');
    const bytes = new Uint8Array(await (await fetch(bundle)).arrayBuffer());
    // The reference: the wasm path with quantized weights dequantized to f32, as the shaders
    // compute them; `fast` is the default wasm path (integer matmuls for q8_0/q4_0).
    const cpu = await wasm.Bedside.create(bytes, 'cpu', 'dequantized');
    const fast = wasm.Bedside.load(bytes);
    const gpu = await wasm.Bedside.create(bytes, backend);
    const out = { backend: gpu.backend, note: gpu.backendNote, detail: gpu.backendDetail, adapter: gpu.adapter() };
    if (texts) {
      out.cpu = cpu.embed(texts).map((v) => Array.from(v));
      out.fast = fast.embed(texts).map((v) => Array.from(v));
      out.gpu = (await gpu.embedAsync(texts)).map((v) => Array.from(v));
    }
    if (note) {
      out.cpu = cpu.classify(note);
      out.fast = fast.classify(note);
      out.gpu = await gpu.classifyAsync(note);
    }
    return out;
  }, { bundle, texts, note, backend });
}

test('WebGPU matches the wasm CPU path in Chromium (SwiftShader)', { timeout: 600_000 }, async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const problems = watchPage(page);
    await page.goto(`${server.url}/index.html`);
    for (const quant of QUANTS) {
      const emb = await bothBackends(page, { bundle: `/models/minilm-${quant}.gguf`, texts: TEXTS, backend: 'webgpu' });
      assert.equal(emb.backend, 'webgpu', `MiniLM ${quant}: ${emb.note}`);
      assert.equal(emb.gpu.length, TEXTS.length);
      emb.cpu.forEach((want, i) => {
        const c = cosine(want, emb.gpu[i]);
        assert.ok(c >= MIN_COSINE, `MiniLM ${quant} text ${i}: cosine ${c}`);
        const f = cosine(emb.fast[i], emb.gpu[i]);
        assert.ok(f >= MIN_COSINE, `MiniLM ${quant} text ${i}: cosine ${f} with the integer wasm path`);
      });

      const cls = await bothBackends(page, { bundle: `/models/tiny-${quant}.gguf`, note: LONG_NOTE, backend: 'webgpu' });
      assert.equal(cls.backend, 'webgpu');
      assert.ok(cls.cpu.chunks.length > 2, 'the long note should need several windows');
      assert.equal(cls.gpu.label, cls.cpu.label, `tiny ${quant}: label`);
      assert.equal(cls.fast.label, cls.cpu.label, `tiny ${quant}: label of the integer wasm path`);
      assert.equal(cls.gpu.chunks.length, cls.cpu.chunks.length);
      cls.cpu.chunks.forEach((chunk, k) => {
        for (const [label, p] of Object.entries(chunk.probabilities)) {
          const q = cls.gpu.chunks[k].probabilities[label];
          assert.ok(Math.abs(p - q) <= MAX_PROB_DIFF, `tiny ${quant} window ${k} P(${label}): ${p} vs ${q}`);
        }
      });
    }
    const adapter = await bothBackends(page, { bundle: '/models/tiny-f32.gguf', backend: 'webgpu' });
    console.log(`WebGPU adapter in Chromium: ${JSON.stringify(adapter.adapter)}`);
    await screenshot(page, 'webgpu-parity');
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
  }
});

test('without WebGPU, auto falls back to wasm and webgpu fails clearly', { timeout: 120_000 }, async () => {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`${server.url}/index.html`);
    const auto = await bothBackends(page, { bundle: '/models/tiny-q8_0.gguf', note: LONG_NOTE, backend: 'auto' });
    assert.equal(auto.backend, 'cpu');
    // One plain sentence for the page; the technical reason apart.
    assert.equal(auto.note, 'No GPU is available here, so the model runs on the CPU.');
    assert.match(auto.detail, /adapter|WebGPU/i);
    assert.deepEqual(auto.gpu, auto.fast, 'auto on the CPU path is the (default) CPU path');
    const refused = await page.evaluate(async () => {
      const wasm = await import('/pkg/bedside_runtime.js');
      const bytes = new Uint8Array(await (await fetch('/models/tiny-q8_0.gguf')).arrayBuffer());
      try {
        await wasm.Bedside.create(bytes, 'webgpu');
        return null;
      } catch (e) {
        return { name: e.name, code: e.code, message: e.message };
      }
    });
    assert.ok(refused, 'webgpu without an adapter must fail');
    assert.equal(refused.code, 'gpu');
    assert.equal(refused.name, 'BedsideError');
  } finally {
    await browser.close();
  }
});
