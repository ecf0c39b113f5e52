#!/usr/bin/env node
// fedistill CLI: `fedistill <command> [flags]` (each command takes --help); `fedistill --version` prints the version.
//
// Two ways to run, picked once per start:
//   source    a checkout: the TypeScript sources lie next to this file (../server/cli.ts) and tsx resolves (a dev
//             dependency). They run through tsx, so no build step stands between an edit and a run.
//   compiled  an installed package (its tarball ships dist/lib/ but no .ts sources, and tsx is not a dependency), or a
//             checkout without tsx (`npm ci --omit=dev`): the JavaScript in ../dist/lib/ that `npm run build` emits.
// FEDISTILL_COMPILED=1 forces the compiled JavaScript in a checkout (to try what users get, after `npm run build`).
import { existsSync, readFileSync } from 'node:fs';

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === '--version' || cmd === '-v' || cmd === 'version') {
  console.log(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version);
  process.exit(0);
}

// Each command is a module exporting main(argv); the path is relative to the repository root, without extension.
const commands = {
  server: 'server/cli',
  client: 'client/node/cli',
  simulate: 'simulations/cli',
  split: 'datasets/split-cli',
  export: 'server/export-cli',
  credential: 'server/credentials-cli',
};
if (!Object.hasOwn(commands, cmd ?? '')) {
  console.log(`usage: fedistill <${Object.keys(commands).join('|')}> [flags]   (fedistill <command> --help for flags)
       fedistill --version`);
  process.exit(cmd && cmd !== '--help' && cmd !== '-h' ? 2 : 0);
}

const root = new URL('../', import.meta.url);
const fromSource = process.env.FEDISTILL_COMPILED !== '1' && existsSync(new URL('server/cli.ts', root)) && (await tsxRegistered());
const file = new URL(fromSource ? `${commands[cmd]}.ts` : `dist/lib/${commands[cmd]}.js`, root);
if (!existsSync(file)) {
  console.error(
    fromSource || existsSync(new URL('server/cli.ts', root))
      ? `fedistill ${cmd}: ${file.pathname} is missing (in a checkout: run \`npm run build\`, or install the dev dependencies for tsx)`
      : `fedistill ${cmd}: ${file.pathname} is missing from this installation`,
  );
  process.exit(1);
}
try {
  const mod = await import(file.href);
  await mod.main(rest);
  if (cmd === 'simulate') process.exit(0);
} catch (e) {
  // A refused flag or env var (UsageError, exit 2) names itself and what is allowed; anything else exits 1.
  const usage = e?.exitCode === 2;
  console.error(`fedistill ${cmd}: ${e instanceof Error ? e.message : e}${usage ? ` (fedistill ${cmd} --help lists the flags)` : ''}`);
  if (process.env.FEDISTILL_DEBUG) console.error(e);
  process.exit(usage ? 2 : 1);
}

/** Register tsx's loader if tsx is installed; false when it is not (an installed package never has it). */
async function tsxRegistered() {
  try {
    const { register } = await import('tsx/esm/api');
    register();
    return true;
  } catch (e) {
    if (e?.code === 'ERR_MODULE_NOT_FOUND') return false;
    throw e;
  }
}
