import { RELATIONS, settingsFor } from './table.ts';
import type { Command, Setting } from './types.ts';
import { defaultOf, envOf, formatRange, formatValue } from './values.ts';

/** Sections of --help, in this order. */
const GROUP_TITLES: Record<string, string | Partial<Record<Command, string>>> = {
  simulation: 'the simulated federation',
  access: { server: 'listening and access', client: 'the server and access' },
  rounds: 'rounds',
  data: 'data',
  training: 'local training',
  'local training': 'local training (sent to the clients with each round)',
  distillation: "the server's distillation",
  online: 'online (asynchronous) distillation',
  continual: 'continual learning',
  attacks: 'attacks and robustness',
  privacy: 'privacy: differential privacy and secure aggregation',
  limits: 'limits',
  runtime: 'runtime',
};

const WIDTH = 118;
const FLAG_COLUMN = 30;

/** How a flag reads in --help: `--fraction F`, `--[no-]logit-adjust`. */
export function flagUsage(s: Setting): string {
  return s.type === 'boolean' ? `--[no-]${s.flag}` : `--${s.flag}${s.arg ? ` ${s.arg}` : ''}`;
}

function helpText(s: Setting, command: Command): string {
  return typeof s.help === 'string' ? s.help : (s.help[command] ?? Object.values(s.help)[0] ?? '');
}

/** What values it takes, where the help line does not already say: an enum's members or a number's range. */
function allowed(s: Setting): string {
  if (s.type === 'enum') return s.values.join(' | ');
  if ((s.type === 'int' || s.type === 'float') && s.range) return `${s.type === 'int' ? 'integer' : 'number'} in ${formatRange(s.range)}`;
  if (s.type === 'list' && s.item.type === 'enum') return `of ${s.item.values.join(' | ')}`;
  if (s.type === 'list' && (s.item.type === 'int' || s.item.type === 'float') && s.item.range) return `each in ${formatRange(s.item.range)}`;
  return '';
}

function shownDefault(s: Setting, command: Command): string {
  const d = defaultOf(s, command);
  if (s.defaultText !== undefined && d === undefined) return s.defaultText;
  if (s.type === 'boolean') return d ? 'on' : 'off';
  return formatValue(s, d);
}

function wrap(text: string, indent: number, first: number): string[] {
  const lines: string[] = [];
  let line = '';
  let room = WIDTH - first;
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > room) {
      lines.push(line);
      line = word;
      room = WIDTH - indent;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

/** A command's --help: every flag it takes, grouped, with its values, env var and default. */
export function renderHelp(command: Command, title: string, notes: string[] = []): string {
  const out = [title, ''];
  const settings = settingsFor(command);
  const order = Object.keys(GROUP_TITLES);
  const rank = (g: string) => (order.includes(g) ? order.indexOf(g) : order.length);
  const groups = [...new Set(settings.map((s) => s.group ?? 'other'))].sort((a, b) => rank(a) - rank(b));
  for (const g of groups) {
    const t = GROUP_TITLES[g] ?? g;
    out.push(` ${typeof t === 'string' ? t : (t[command] ?? g)}:`);
    for (const s of settings.filter((x) => (x.group ?? 'other') === g)) {
      const head = `  ${flagUsage(s)}`;
      const parts = [helpText(s, command)];
      const a = allowed(s);
      if (a) parts.push(`(${a})`);
      const env = envOf(s, command);
      if (env) parts.push(`(env ${env})`);
      const d = shownDefault(s, command);
      if (d) parts.push(`[${d}]`);
      const pad = head.length + 1 > FLAG_COLUMN ? `${head}\n${' '.repeat(FLAG_COLUMN)}` : head.padEnd(FLAG_COLUMN);
      const body = wrap(parts.join(' '), FLAG_COLUMN, FLAG_COLUMN);
      out.push(pad + body[0], ...body.slice(1).map((l) => ' '.repeat(FLAG_COLUMN) + l));
    }
    out.push('');
  }
  const rel = RELATIONS.filter((r) => r.commands.includes(command));
  if (rel.length || notes.length) {
    out.push(' also checked before anything starts:');
    for (const r of rel) out.push(`  ${r.help}`);
    for (const n of notes) out.push(`  ${n}`);
    out.push('');
  }
  out.push(' A flag wins over its env var, which wins over the default. A value out of range exits with status 2.');
  return out.join('\n');
}
