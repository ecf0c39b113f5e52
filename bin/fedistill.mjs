#!/usr/bin/env node
// fedistill CLI: `fedistill server|client|simulate [flags]` (each takes --help).
// The sources are TypeScript run through tsx, so no build step stands between a checkout and a run.
import { register } from 'tsx/esm/api';

register();
const [cmd, ...rest] = process.argv.slice(2);
const commands = {
  server: '../server/cli.ts',
  client: '../client/node/cli.ts',
  simulate: '../simulations/cli.ts',
};
if (!commands[cmd]) {
  console.log('usage: fedistill <server|client|simulate> [flags]   (fedistill <command> --help for flags)');
  process.exit(cmd && cmd !== '--help' && cmd !== '-h' ? 2 : 0);
}
try {
  const mod = await import(new URL(commands[cmd], import.meta.url).href);
  await mod.main(rest);
  if (cmd === 'simulate') process.exit(0);
} catch (e) {
  console.error(`fedistill ${cmd}: ${e instanceof Error ? e.message : e}`);
  if (process.env.FEDISTILL_DEBUG) console.error(e);
  process.exit(1);
}
