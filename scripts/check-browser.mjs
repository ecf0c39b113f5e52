#!/usr/bin/env node
// The isomorphic check: the browser-safe folders (shared/, client/*.ts, web/ — see tsconfig.browser.json) must compile
// without Node's types, so a `node:` import or a Node global (process, Buffer, setImmediate …) there fails here, not in
// a user's browser. Two ways Node could still slip in, both refused below: a browser file importing one of ours from
// outside those folders (server/, datasets/, client/node/ — even type-only imports, since they drag Node's types along),
// and @types/node entering the program through any other path.
// Run by scripts/build.mjs (so `npm ci` and `npm run build` fail on it) and by `npm run typecheck`.
import ts from 'typescript';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const errors = [];
const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.browser.json'), {}, {
  ...ts.sys,
  onUnRecoverableConfigFileDiagnostic: (d) => errors.push(ts.flattenDiagnosticMessageText(d.messageText, '\n')),
});
if (!config) fail();

const program = ts.createProgram({ rootNames: config.fileNames, options: config.options });
const diagnostics = ts.getPreEmitDiagnostics(program);
const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => '\n' };
if (diagnostics.length) errors.push(ts.formatDiagnostics(diagnostics, host).trimEnd());

const isBrowserSafe = (rel) =>
  rel.startsWith(`shared${sep}`) || rel.startsWith(`web${sep}`) || (rel.startsWith(`client${sep}`) && !rel.startsWith(`client${sep}node${sep}`));
const ours = program.getSourceFiles().filter((f) => !f.fileName.includes('/node_modules/'));
const outside = ours.map((f) => relative(root, f.fileName)).filter((rel) => !isBrowserSafe(rel));
if (outside.length) {
  // Name the browser file that imports each one, so the fix is obvious.
  for (const f of ours.filter((f) => isBrowserSafe(relative(root, f.fileName)))) {
    for (const imp of ts.preProcessFile(f.text, true, true).importedFiles) {
      if (!imp.fileName.startsWith('.')) continue;
      const target = relative(root, join(dirname(f.fileName), imp.fileName));
      if (!isBrowserSafe(target)) errors.push(`${relative(root, f.fileName)} imports ${target}: browser code must not import Node-side modules (move the shared types to shared/)`);
    }
  }
  if (!errors.length) errors.push(`the browser check pulled in Node-side files: ${outside.join(', ')}`);
}
const nodeTypes = program.getSourceFiles().find((f) => /[\\/]node_modules[\\/]@types[\\/]node[\\/]/.test(f.fileName));
if (nodeTypes && !outside.length) {
  errors.push(`@types/node entered the browser check (${relative(root, nodeTypes.fileName)}); find the import with: npx tsc -p tsconfig.browser.json --explainFiles`);
}
if (errors.length) fail();

function fail() {
  console.error(`isomorphic check (tsconfig.browser.json) failed:\n${errors.join('\n')}`);
  process.exit(1);
}
