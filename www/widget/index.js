// bedside-widget: biomedical BERT bundles run privately in the browser, in a Web Worker.
//
//   import { load, classify, embed, search } from 'bedside-widget';
//   const model = await load('/models/topic-q8_0.gguf', { onProgress: (e) => console.log(e) });
//   const result = await classify('Crushing chest pain radiating to the left arm');
//
// Importing this module also defines <bedside-classifier>, <bedside-search> and <bedside-deid>.
export * from './core.js';
export { BedsideClassifierElement, BedsideSearchElement, BedsideDeidElement } from './elements.js';
