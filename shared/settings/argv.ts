import { settingsFor } from './table.ts';
import type { Command } from './types.ts';
import type { RawFlags } from './read.ts';

/** Options for node:util parseArgs (plain data): every flag of the command as a string, booleans also as --no-x. */
export function parseArgsOptions(command: Command): Record<string, { type: 'string' | 'boolean'; short?: string }> {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const s of settingsFor(command)) {
    if (s.type === 'boolean') {
      options[s.flag] = { type: 'boolean' };
      options[`no-${s.flag}`] = { type: 'boolean' };
    } else options[s.flag] = { type: 'string' };
  }
  return options;
}

/** parseArgs' tokens (in order) → flag → text or true/false; a later --x / --no-x overrides an earlier one. */
export function flagsFromTokens(command: Command, tokens: readonly { kind: string; name?: string; value?: string }[]): RawFlags {
  const booleans = new Set(settingsFor(command).filter((s) => s.type === 'boolean').map((s) => s.flag));
  const flags: Record<string, string | boolean> = {};
  for (const t of tokens) {
    if (t.kind !== 'option' || !t.name || t.name === 'help') continue;
    if (booleans.has(t.name)) flags[t.name] = true;
    else if (t.name.startsWith('no-') && booleans.has(t.name.slice(3))) flags[t.name.slice(3)] = false;
    else flags[t.name] = t.value ?? '';
  }
  return flags;
}
