import { UsageError, type Command, type ListSetting, type Range, type Setting } from './types.ts';

/** "(0, 1]", "[1, ∞)", "[0, 65535]": how a range reads in messages and --help. */
export function formatRange(r: Range): string {
  const lo = r.min === undefined ? '(−∞' : `${r.minOpen ? '(' : '['}${r.min}`;
  const hi = r.max === undefined ? '∞)' : `${r.max}${r.maxOpen ? ')' : ']'}`;
  return `${lo}, ${hi}`;
}

export function inRange(x: number, r: Range): boolean {
  if (r.min !== undefined && (r.minOpen ? x <= r.min : x < r.min)) return false;
  if (r.max !== undefined && (r.maxOpen ? x >= r.max : x > r.max)) return false;
  return true;
}

/** One number: what is wrong with `raw` (as given under `name`), or the number. */
function parseNumber(raw: string, type: 'int' | 'float', range: Range | undefined, name: string): number {
  const s = raw.trim();
  const x = s === '' ? NaN : Number(s);
  if (type === 'int' && !(/^[+-]?\d+$/.test(s) && Number.isSafeInteger(x))) throw new UsageError(`${name}: '${raw}' is not an integer`);
  if (!Number.isFinite(x)) throw new UsageError(`${name}: '${raw}' is not a number`);
  if (range && !inRange(x, range)) throw new UsageError(`${name}: ${s} is not in ${formatRange(range)}`);
  return x;
}

function parseEnum(raw: string, values: readonly string[], name: string): string {
  const s = raw.trim();
  if (!values.includes(s)) throw new UsageError(`${name}: '${raw}' is not one of ${values.join(', ')}`);
  return s;
}

function parseList(raw: string, s: ListSetting, name: string): (number | string)[] {
  const parts = raw.split(',').map((p) => p.trim()).filter((p) => p !== '');
  const min = s.minItems ?? 1;
  if (parts.length < min) throw new UsageError(`${name}: '${raw}' needs at least ${min} comma-separated value${min === 1 ? '' : 's'}`);
  const it = s.item;
  return parts.map((p) => (it.type === 'enum' ? parseEnum(p, it.values, name) : it.type === 'string' ? p : parseNumber(p, it.type, it.range, name)));
}

/**
 * The typed value of a setting given as text on a command line (`name` = '--flag') or in the environment
 * (`name` = the variable). Throws UsageError naming `name`, the value and what is allowed.
 */
export function parseValue(s: Setting, raw: string, name: string): unknown {
  switch (s.type) {
    case 'int':
    case 'float':
      return parseNumber(raw, s.type, s.range, name);
    case 'enum':
      return parseEnum(raw, s.values, name);
    case 'string':
      if (s.pattern && !s.pattern.test(raw)) throw new UsageError(`${name}: '${raw}' is not ${s.patternText ?? `of the form ${s.pattern.source}`}`);
      return raw;
    case 'boolean': {
      // Only from the environment: flags are --x / --no-x.
      const v = raw.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'false', 'no', 'off', ''].includes(v)) return false;
      throw new UsageError(`${name}: '${raw}' is not a boolean (true/false, 1/0, yes/no)`);
    }
    case 'list':
      return parseList(raw, s, name);
    case 'custom':
      try {
        return s.parse(raw);
      } catch (e) {
        throw new UsageError(`${name}: ${(e as Error).message}`);
      }
  }
}

/** Whether an already-typed value (e.g. from a config object an embedder passes) is allowed; null when it is. */
export function valueProblem(s: Setting, v: unknown): string | null {
  const show = typeof v === 'string' ? `'${v}'` : JSON.stringify(v);
  switch (s.type) {
    case 'int':
    case 'float':
      if (typeof v !== 'number' || !Number.isFinite(v) || (s.type === 'int' && !Number.isInteger(v))) return `${show} is not ${s.type === 'int' ? 'an integer' : 'a number'}`;
      return s.range && !inRange(v, s.range) ? `${v} is not in ${formatRange(s.range)}` : null;
    case 'enum':
      return typeof v === 'string' && s.values.includes(v) ? null : `${show} is not one of ${s.values.join(', ')}`;
    case 'string':
      return typeof v === 'string' ? null : `${show} is not a string`;
    case 'boolean':
      return typeof v === 'boolean' ? null : `${show} is not true or false`;
    case 'list':
      return Array.isArray(v) ? null : `${show} is not a list`;
    case 'custom':
      return null;
  }
}

/** The environment variable a command reads for the setting, if any. */
export function envOf(s: Setting, command: Command): string | undefined {
  return typeof s.env === 'string' ? s.env : s.env?.[command];
}

/** The setting's default for a command (a command's own default wins). */
export function defaultOf(s: Setting, command: Command): unknown {
  const own = s.defaults?.[command];
  return own !== undefined ? own : s.default;
}

/** How a value reads back in --help: the form a user would type. */
export function formatValue(s: Setting, v: unknown): string {
  if (v === undefined) return '';
  if (s.type === 'custom' && s.format) return s.format(v);
  if (Array.isArray(v)) return v.join(',');
  if (v === '') return "''";
  return String(v);
}

/** `obj.a.b = v` for key 'a.b', creating the inner object (a copy, so shared defaults are never mutated). */
export function setPath(obj: Record<string, unknown>, key: string, v: unknown): void {
  const parts = key.split('.');
  let o = obj;
  for (const p of parts.slice(0, -1)) {
    o[p] = { ...((o[p] as Record<string, unknown> | undefined) ?? {}) };
    o = o[p] as Record<string, unknown>;
  }
  o[parts.at(-1)!] = v;
}

export function getPath(obj: Readonly<Record<string, unknown>>, key: string): unknown {
  let o: unknown = obj;
  for (const p of key.split('.')) o = o === null || typeof o !== 'object' ? undefined : (o as Record<string, unknown>)[p];
  return o;
}
