import { parseArgs } from 'node:util';
import { flagsFromTokens, parseArgsOptions, readSettings, UsageError, type Command, type ReadSettings } from '../shared/settings/index.ts';

/**
 * A command's flags and environment read through the settings table (parseArgs for the syntax, the table for types,
 * ranges and relations). Unknown flags, missing values and bad values throw UsageError (exit status 2).
 */
export function readCommandLine(command: Command, argv: string[], env: NodeJS.ProcessEnv = process.env): ReadSettings & { help: boolean } {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: parseArgsOptions(command), strict: true, allowPositionals: false, tokens: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (parsed.values.help) return { help: true, values: {}, given: new Set() };
  return { help: false, ...readSettings(command, flagsFromTokens(command, parsed.tokens), env) };
}
