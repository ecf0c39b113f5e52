#!/usr/bin/env node
// Builds the browser side with esbuild into dist/browser/ (served by the aggregator under /sdk/):
//   fedistill.js   the client SDK as one ES module (FedistillClient, backend selection, IndexedDB proxy cache, data)
//   join.js        the join page's script;  dashboard.js  the live dashboard's script
//   *.html, *.css  the pages, copied from web/;  *.wasm  tfjs-backend-wasm's binaries (loaded next to the bundle)
// Runs on `npm ci`/`npm install` (the `prepare` script), so a fresh checkout has it; `npm run build` runs it again.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'browser');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const entries = { fedistill: 'client/browser.ts', join: 'web/join.ts', dashboard: 'web/dashboard.ts' };
const t0 = Date.now();
const result = await build({
  absWorkingDir: root,
  entryPoints: Object.fromEntries(Object.entries(entries).filter(([, f]) => exists(join(root, f)))),
  outdir: out,
  bundle: true,
  format: 'esm',
  splitting: true,
  chunkNames: '[name]-[hash]',
  platform: 'browser',
  target: ['chrome109', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: 'linked',
  metafile: true,
  legalComments: 'linked',
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
});
for (const f of readdirSync(join(root, 'node_modules/@tensorflow/tfjs-backend-wasm/dist')).filter((f) => f.endsWith('.wasm'))) {
  copyFileSync(join(root, 'node_modules/@tensorflow/tfjs-backend-wasm/dist', f), join(out, f));
}
copyFileSync(join(root, 'node_modules/uplot/dist/uPlot.min.css'), join(out, 'uPlot.min.css'));
for (const f of readdirSync(join(root, 'web')).filter((f) => /\.(html|css|svg|png)$/.test(f))) copyFileSync(join(root, 'web', f), join(out, f));
writeFileSync(join(out, 'meta.json'), JSON.stringify(result.metafile));
// What a page loads for each entry: its module and every chunk it imports (statically or dynamically).
const closure = (entry) => {
  const seen = new Set();
  const visit = (p) => {
    if (seen.has(p) || !result.metafile.outputs[p]) return;
    seen.add(p);
    for (const i of result.metafile.outputs[p].imports) visit(i.path);
  };
  visit(Object.keys(result.metafile.outputs).find((k) => k.endsWith(`/${entry}.js`)));
  return [...seen].reduce((n, f) => n + statSync(join(root, f)).size, 0);
};
const sizes = Object.keys(entries).filter((e) => exists(join(root, entries[e]))).map((e) => `${e}.js + chunks ${(closure(e) / 1024).toFixed(0)} KiB`);
console.log(`fedistill build: dist/browser in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${sizes.join(', ')}, .wasm ${(statSync(join(out, 'tfjs-backend-wasm-simd.wasm')).size / 1024).toFixed(0)} KiB (SIMD build)`);

function exists(p) {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}
