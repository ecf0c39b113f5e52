/**
 * The shape of one operator setting: where it lives in a config object, how a command line and the environment spell
 * it, what values it takes and what it means. Plain data (and a few pure functions), so a browser page can read it too.
 */

export type Command = 'server' | 'client' | 'simulate';
export const COMMANDS: readonly Command[] = ['server', 'client', 'simulate'];

/** A numeric interval; an absent bound is unbounded. `minOpen`/`maxOpen` exclude the bound itself. */
export interface Range {
  min?: number;
  max?: number;
  minOpen?: boolean;
  maxOpen?: boolean;
}

interface Common<T> {
  /** Key in the config object the command builds; dots reach into nested objects (`frameLimits.logits`). */
  key: string;
  /** Long flag without the dashes. */
  flag: string;
  /** The commands that take this flag. */
  commands: readonly Command[];
  /** One line for --help (per command where the meaning differs). */
  help: string | Partial<Record<Command, string>>;
  /** Placeholder for the value in --help (N, F, DIR …). */
  arg?: string;
  /** Environment variable read when the flag is absent (per command where only some read it). */
  env?: string | Partial<Record<Command, string>>;
  /** Undefined: no value unless given (the setting is optional). */
  default: T | undefined;
  /** A command whose default differs from `default`. */
  defaults?: Partial<Record<Command, T>>;
  /** How --help shows a default that is only known at run time (e.g. "one per core"). */
  defaultText?: string;
  /** --help section. */
  group?: string;
}

export interface NumberSetting extends Common<number> {
  type: 'int' | 'float';
  range?: Range;
}

export interface StringSetting extends Common<string> {
  type: 'string';
  /** A value must match (whole string); `patternText` says what it should look like. */
  pattern?: RegExp;
  patternText?: string;
}

export interface EnumSetting extends Common<string> {
  type: 'enum';
  values: readonly string[];
}

/** `--x` sets it, `--no-x` clears it; the last one given wins. */
export interface BooleanSetting extends Common<boolean> {
  type: 'boolean';
}

/** A comma list of numbers, enum members or strings; `minItems` defaults to 1 when the flag is given. */
export interface ListSetting extends Common<(number | string)[]> {
  type: 'list';
  item: { type: 'int' | 'float'; range?: Range } | { type: 'enum'; values: readonly string[] } | { type: 'string' };
  minItems?: number;
}

/** Anything with its own syntax: `parse` returns the value or throws an Error whose message says what is wrong. */
export interface CustomSetting extends Common<unknown> {
  type: 'custom';
  parse: (raw: string) => unknown;
  format?: (value: unknown) => string;
}

export type Setting = NumberSetting | StringSetting | EnumSetting | BooleanSetting | ListSetting | CustomSetting;

/** A check across settings, run after each has been parsed on its own; returns what is wrong, or null. */
export interface Relation {
  commands: readonly Command[];
  /** Flags it involves (for --help's notes and the tests). */
  flags: readonly string[];
  /** The rule, for --help. */
  help: string;
  /** `given`: the keys the user set (flag or env); a rule about defaults that the loader scales may skip the others. */
  check: (values: Readonly<Record<string, unknown>>, given: ReadonlySet<string>) => string | null;
}

/** A refusal of the command line or environment: the CLI prints the message and exits 2 before anything starts. */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
