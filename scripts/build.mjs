#!/usr/bin/env node
// The build, run on `npm ci`/`npm install` (the `prepare` script, so a fresh checkout has it) and by `npm run build`.
// Three jobs at once (two tsc processes beside esbuild's own), and the build fails if any does:
//   dist/lib/      the library: every module of shared/, server/, client/, datasets/ and simulations/ as an ES module
//                  with its .d.ts (tsc -p tsconfig.build.json) — what the package's entry points, its bin and
//                  `simulate`'s worker processes run, with neither tsx nor TypeScript installed
//   the isomorphic check of the browser-safe folders (scripts/check-browser.mjs, tsconfig.browser.json)
//   dist/browser/  the browser side with esbuild (served by the aggregator under /sdk/, and `fedistill/browser`):
//     fedistill.js   the client SDK as one ES module (FedistillClient, backend selection, IndexedDB proxy cache, data)
//     join.js        the join page's script;  dashboard.js  the live dashboard's script
//     *.html, *.css  the pages, copied from web/;  *.wasm  tfjs-backend-wasm's binaries (loaded next to the bundle)
import { build } from 'esbuild';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'browser');
const t0 = Date.now();
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
// Emitted afresh so a moved or deleted source leaves no stale module behind.
rmSync(join(root, 'dist', 'lib'), { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const lib = run('dist/lib (tsc)', [tsc, '-p', join(root, 'tsconfig.build.json')]);
const isomorphic = run('isomorphic check', [join(root, 'scripts', 'check-browser.mjs')]);

const entries = { fedistill: 'client/browser.ts', join: 'web/join.ts', dashboard: 'web/dashboard.ts' };
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
const esbuildSeconds = (Date.now() - t0) / 1000;
console.log(`fedistill build: dist/browser in ${esbuildSeconds.toFixed(1)} s: ${sizes.join(', ')}, .wasm ${(statSync(join(out, 'tfjs-backend-wasm-simd.wasm')).size / 1024).toFixed(0)} KiB (SIMD build)`);
const failed = (await Promise.all([lib, isomorphic])).filter((r) => !r.ok);
if (failed.length) {
  console.error(`fedistill build failed: ${failed.map((r) => r.name).join(', ')}`);
  process.exit(1);
}
console.log(`fedistill build: dist/lib and the isomorphic check in ${((Date.now() - t0) / 1000).toFixed(1)} s (whole build)`);

function exists(p) {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}

/** A node script as a child process (its output passed through); resolves to whether it succeeded. */
function run(name, args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' });
    child.on('error', (e) => (console.error(`${name}: ${e.message}`), resolve({ name, ok: false })));
    child.on('exit', (code) => resolve({ name, ok: code === 0 }));
  });
}
