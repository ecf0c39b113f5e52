/**
 * Field tables of docs/protocol.md, generated from the zod schemas (shared/protocol/schemas.ts) so the doc cannot
 * drift from the code. Each table sits between `<!-- fields:NAME -->` and `<!-- /fields:NAME -->`.
 *
 *   node --import tsx scripts/protocol-tables.mjs          rewrite the tables in docs/protocol.md
 *   node --import tsx scripts/protocol-tables.mjs --check  exit 1 if any table is missing or out of date
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import * as S from '../shared/protocol/schemas.ts';

export const DOC = fileURLToPath(new URL('../docs/protocol.md', import.meta.url));

/** Table name → schema. Messages by event name, then the shared parts. */
export const TABLES = {
  ...S.CLIENT_SCHEMAS,
  ...S.SERVER_SCHEMAS,
  EncodedMatrix: S.EncodedMatrixSchema,
  WireModel: S.WireModelSchema,
  WireTensor: S.EncodedTensorSchema,
  ClientRoundStats: S.ClientRoundStatsSchema,
  ProxyInfo: S.ProxyInfoSchema,
  RowSet: S.RowSetSchema,
};
/** Nested maps documented by their own table instead of being expanded in place. */
const NAMED = new Map([
  [S.EncodedMatrixSchema, 'EncodedMatrix'],
  [S.WireModelSchema, 'WireModel'],
  [S.WireTensorSchema, 'WireTensor'],
  // Uploads carry the fp32 form of the same map (no `encoding` but 'fp32'): one table documents both.
  [S.EncodedTensorSchema, 'WireTensor'],
  [S.ClientRoundStatsSchema, 'ClientRoundStats'],
  [S.ProxyInfoSchema, 'ProxyInfo'],
  [S.RowSetSchema, 'RowSet'],
]);

const def = (s) => s._zod.def;
const fmt = (n) => (n === Number.MAX_SAFE_INTEGER ? '2^53−1' : n >= 1e6 && Number.isInteger(Math.log10(n)) ? `1e${Math.log10(n)}` : String(n));

/** Peel optional/preprocess wrappers: the schema that decides the type, and whether the field may be absent. */
function unwrap(s) {
  let optional = false;
  for (;;) {
    const d = def(s);
    if (d.type === 'optional') (optional = true), (s = d.innerType);
    else if (d.type === 'pipe') s = d.out;
    else return { s, optional };
  }
}

/** "type" and "range / values" columns of one field. */
function describeType(schema) {
  const named = NAMED.get(schema) ?? [...NAMED].find(([k]) => unwrap(k).s === schema)?.[1];
  if (named) return [`map: ${named}`, ''];
  const d = def(schema);
  const checks = (d.checks ?? []).map((c) => def(c));
  switch (d.type) {
    case 'number': {
      const isInt = checks.some((c) => c.check === 'number_format');
      const lo = checks.find((c) => c.check === 'greater_than');
      const hi = checks.find((c) => c.check === 'less_than');
      const range = lo || hi ? `${lo ? (lo.inclusive ? '≥ ' : '> ') + fmt(lo.value) : ''}${lo && hi ? ', ' : ''}${hi ? (hi.inclusive ? '≤ ' : '< ') + fmt(hi.value) : ''}` : '';
      return [isInt ? 'int' : 'float (finite)', isInt && !hi ? range + (range ? ', ' : '') + '≤ 2^53−1' : range];
    }
    case 'string': {
      const max = checks.find((c) => c.check === 'max_length');
      const re = checks.find((c) => c.check === 'string_format');
      return ['str', [max ? `1–${max.maximum} chars` : '', re ? `\`${re.pattern.source}\`` : ''].filter(Boolean).join(', ')];
    }
    case 'boolean':
      return ['bool', ''];
    case 'literal': {
      // The literal's own msgpack type: `accepted: true` is a bool, `type: 'ack'` a str.
      const wire = (v) => (typeof v === 'boolean' ? 'bool' : typeof v === 'number' ? (Number.isInteger(v) ? 'int' : 'float') : 'str');
      return [[...new Set(d.values.map(wire))].join(' or '), `\`${d.values.map(String).join('`, `')}\``];
    }
    case 'enum':
      return ['str', Object.values(d.entries).map((v) => `\`${v}\``).join(', ')];
    case 'custom':
      return [schema.meta()?.wire ?? 'binary', ''];
    case 'tuple':
      return [`array of ${d.items.length} ${describeType(unwrap(d.items[0]).s)[0]}`, describeType(unwrap(d.items[0]).s)[1]];
    case 'array': {
      const [t, r] = describeType(unwrap(d.element).s);
      const max = checks.find((c) => c.check === 'max_length');
      const min = checks.find((c) => c.check === 'min_length');
      const len = [min ? `≥ ${min.minimum}` : '', max ? `≤ ${max.maximum}` : ''].filter(Boolean).join(', ');
      return [`array of ${t}`, [len && `length ${len}`, r && `each ${r}`].filter(Boolean).join('; ')];
    }
    case 'object':
      return ['map', ''];
    default:
      return [d.type, ''];
  }
}

/** Rows for every field of an object schema; nested anonymous maps are expanded with dotted names. */
function rows(objectSchema, prefix = '') {
  const out = [];
  for (const [key, field] of Object.entries(def(unwrap(objectSchema).s).shape)) {
    const { s, optional } = unwrap(field);
    const [type, range] = describeType(s);
    const doc = field.description ?? s.description ?? '';
    out.push(`| \`${prefix}${key}\` | ${type} | ${optional ? 'no' : 'yes'} | ${range} | ${doc.replace(/\|/g, '\\|')} |`);
    if (def(s).type === 'object' && !type.startsWith('map:')) out.push(...rows(s, `${prefix}${key}.`));
  }
  return out;
}

export function renderTable(name) {
  return ['| field | msgpack type | required | range / values | meaning |', '|---|---|---|---|---|', ...rows(TABLES[name])].join('\n');
}

/** The doc with every table regenerated; throws if a table's markers are missing. */
export function renderDoc(doc) {
  for (const name of Object.keys(TABLES)) {
    const open = `<!-- fields:${name} -->`;
    const close = `<!-- /fields:${name} -->`;
    const a = doc.indexOf(open);
    const b = doc.indexOf(close);
    if (a < 0 || b < a) throw new Error(`docs/protocol.md has no table markers for '${name}' (${open} … ${close})`);
    doc = doc.slice(0, a + open.length) + '\n' + renderTable(name) + '\n' + doc.slice(b);
  }
  return doc;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const doc = await readFile(DOC, 'utf8');
  const next = renderDoc(doc);
  if (process.argv.includes('--check')) {
    if (next !== doc) {
      console.error('docs/protocol.md field tables are out of date: run node --import tsx scripts/protocol-tables.mjs');
      process.exit(1);
    }
    console.log('docs/protocol.md field tables are up to date');
  } else {
    await writeFile(DOC, next);
    console.log(`wrote ${Object.keys(TABLES).length} field tables into docs/protocol.md`);
  }
}
