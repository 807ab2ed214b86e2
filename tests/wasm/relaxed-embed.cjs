// Child process of relaxed.test.mjs: the relaxed-SIMD Node build embeds (or classifies) texts
// with one bundle and prints JSON. Run by a Node that has relaxed SIMD (the test passes
// --experimental-wasm-relaxed-simd where it is still behind a flag).
// Usage: node relaxed-embed.cjs <bundle> embed|classify <texts.json>
const { readFileSync } = require('node:fs');
const { join } = require('node:path');

const [bundle, op, textsFile] = process.argv.slice(2);
const { Bedside } = require(join(__dirname, '../../target/wasm-node-relaxed/bedside_runtime.js'));
const model = Bedside.load(readFileSync(bundle));
const texts = JSON.parse(readFileSync(textsFile, 'utf8'));
const out = op === 'classify' ? texts.map((t) => model.classify(t)) : model.embed(texts).map((v) => Array.from(v));
process.stdout.write(JSON.stringify(out));
