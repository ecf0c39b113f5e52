import { RELATIONS, SETTINGS, settingByKey, settingsFor } from './table.ts';
import { UsageError, type Command, type Setting } from './types.ts';
import { defaultOf, envOf, setPath, valueProblem, parseValue, getPath } from './values.ts';

/** What a command line parser produced: flag name (no dashes) → its text, or true/false for a boolean. */
export type RawFlags = Readonly<Record<string, string | boolean | undefined>>;
export type Env = Readonly<Record<string, string | undefined>>;

export interface ReadSettings {
  /** Setting key → value (flag, else env var, else default); keys with no value are absent. */
  values: Record<string, unknown>;
  /** Keys given by flag or environment (not defaulted). */
  given: Set<string>;
}

/**
 * One command's settings from its flags and the environment, each parsed, range-checked and then checked against
 * the others. Throws UsageError naming the flag (or env var), the value and what is allowed.
 */
export function readSettings(command: Command, flags: RawFlags, env: Env = {}): ReadSettings {
  const values: Record<string, unknown> = {};
  const given = new Set<string>();
  for (const s of settingsFor(command)) {
    const f = flags[s.flag];
    const name = envOf(s, command);
    let v: unknown;
    if (f !== undefined) {
      v = s.type === 'boolean' ? f === true || f === 'true' : parseValue(s, typeof f === 'string' ? f : String(f), `--${s.flag}`);
      given.add(s.key);
    } else if (name && env[name] !== undefined && env[name] !== '') {
      v = parseValue(s, env[name]!, name);
      given.add(s.key);
    } else {
      v = defaultOf(s, command);
    }
    if (v !== undefined) values[s.key] = v;
  }
  checkRelations(command, values, given);
  return { values, given };
}

export function checkRelations(command: Command, values: Readonly<Record<string, unknown>>, given: ReadonlySet<string>): void {
  for (const r of RELATIONS) {
    if (!r.commands.includes(command)) continue;
    const problem = r.check(values, given);
    if (problem) throw new UsageError(problem);
  }
}

/** Flat `{ 'frameLimits.logits': x }` → nested `{ frameLimits: { logits: x } }`, for the keys of `settings`. */
export function nest(values: Readonly<Record<string, unknown>>, settings: readonly Setting[] = SETTINGS): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of settings) if (values[s.key] !== undefined) setPath(out, s.key, values[s.key]);
  return out;
}

/** A command's defaults, nested (e.g. DEFAULT_CONFIG is built from the server's). */
export function defaultsFor(command: Command, keys?: readonly string[]): Record<string, unknown> {
  const settings = keys ? keys.map(settingByKey) : settingsFor(command);
  const flat: Record<string, unknown> = {};
  for (const s of settings) flat[s.key] = defaultOf(s, command);
  return nest(flat, settings);
}

/**
 * For embedders that build a config object in code (createAggregator, runSimulation): the same ranges and relations
 * as the flags, named by config key. Keys absent from `config` are not checked.
 */
export function checkConfig(command: Command, config: Readonly<Record<string, unknown>>): void {
  const flat: Record<string, unknown> = {};
  for (const s of settingsFor(command)) {
    const v = getPath(config, s.key);
    if (v === undefined) continue;
    const problem = valueProblem(s, v);
    if (problem) throw new RangeError(`${command} setting ${s.key} (--${s.flag}): ${problem}`);
    flat[s.key] = v;
  }
  for (const r of RELATIONS) {
    if (!r.commands.includes(command) || !r.flags.every((f) => settingsFor(command).some((s) => s.flag === f && flat[s.key] !== undefined))) continue;
    const problem = r.check(flat, new Set(Object.keys(flat)));
    if (problem) throw new RangeError(`${command} settings: ${problem}`);
  }
}
