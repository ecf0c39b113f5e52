/**
 * `fedistill split`: one labelled data set → N client folders, a public proxy folder and (when the source has a test
 * set) a validation folder, ready for `fedistill server --proxy images:OUT/proxy` and
 * `fedistill client --data-dir OUT/client-<i>`.
 *
 * The split is splitForFederation's (shared/data/federated-split.ts): the proxy rows are the ones the server's
 * `--proxy fashion-mnist:N` and `fedistill simulate` hold out for the same seed, the rest is partitioned
 * (Dirichlet / shards / IID) — so every row is in exactly one place and the output is the same for the same seed.
 *
 *   OUT/federation.json                        classes, shape, seed, partition, counts per client
 *   OUT/client-<i>/<class>/<n>.png             format images (n: the row's number within the client, zero-padded)
 *   OUT/client-<i>/train-{images,labels}-…gz   format idx
 *   OUT/proxy/<n>.png | proxy/proxy-images-idx3-ubyte.gz          unlabelled, in row order
 *   OUT/validation/<class>/<n>.png | validation/t10k-…gz          the source's test set, labelled
 * Every folder also gets a classes.json ({ classes, shape, invert: false }): the images are already in the model's
 * form (letterboxed, grey, inverted where needed), so readers must not invert them again.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { sampleSize, subset, type Dataset } from '../shared/data/dataset.ts';
import { splitForFederation, type PartitionKind } from '../shared/data/federated-split.ts';
import { classHistogram } from '../shared/data/partition.ts';
import { classFolderNames } from '../shared/data/class-folders.ts';
import { FASHION_MNIST_CLASSES, loadFashionMnist, type LoadFashionMnistOptions } from './fashion-mnist.ts';
import { readIdxLabelled, writeIdx } from './idx-files.ts';
import { CLASSES_FILE, readLabelledImageFolder } from './image-folder.ts';
import { fitProxySize } from './proxy-size.ts';
import { encodePng } from './png.ts';

export type SplitFormat = 'images' | 'idx';
export type SplitSource = { kind: 'fashion-mnist' } | { kind: 'images'; dir: string } | { kind: 'idx'; images: string; labels: string };

export const SOURCE_SPEC_HELP = 'fashion-mnist | images:DIR | idx:IMAGES,LABELS';

export function parseSourceSpec(spec: string): SplitSource {
  if (spec === 'fashion-mnist') return { kind: 'fashion-mnist' };
  if (spec.startsWith('images:') && spec.length > 7) return { kind: 'images', dir: spec.slice(7) };
  if (spec.startsWith('idx:')) {
    const parts = spec.slice(4).split(',');
    if (parts.length === 2 && parts[0] && parts[1]) return { kind: 'idx', images: parts[0], labels: parts[1] };
    throw new Error(`--dataset ${spec}: idx needs two files, IMAGES,LABELS`);
  }
  throw new Error(`--dataset must be ${SOURCE_SPEC_HELP} (got '${spec}')`);
}

export interface SplitOptions {
  source: SplitSource;
  out: string;
  clients: number;
  partition: PartitionKind;
  alpha: number;
  shardsPerClient: number;
  seed: number;
  /** Rows held out as the proxy set; undefined = the default (10,000, or a sixth of a smaller set); 0 = none. */
  proxySize?: number;
  format: SplitFormat;
  /** Class names (--classes); default the source's. */
  classes?: string[];
  /** Input shape images are read at (images source); default classes.json's or 28×28×1. */
  shape?: [number, number, number];
  /** Where Fashion-MNIST is (as the other commands' --data-dir). */
  dataDir?: string;
  /** Replace what an earlier split wrote in `out`. */
  force?: boolean;
  /** Files encoded at once. Default 8. */
  concurrency?: number;
  fashionMnist?: Omit<LoadFashionMnistOptions, 'dir' | 'log'>;
  log: (m: string) => void;
}

export interface ClientSummary {
  name: string;
  count: number;
  /** Rows per class, in class order. */
  classCounts: number[];
}

/** What federation.json holds. */
export interface FederationManifest {
  createdBy: 'fedistill split';
  source: string;
  isSubset: boolean;
  format: SplitFormat;
  classes: string[];
  shape: [number, number, number];
  seed: number;
  partition: { kind: PartitionKind; alpha?: number; shardsPerClient?: number };
  proxy: { count: number; path: string | null };
  validation: { count: number; path: string | null };
  clients: ClientSummary[];
}

async function loadSource(o: SplitOptions): Promise<{ train: Dataset; test: Dataset | null; classNames: string[]; source: string; isSubset: boolean }> {
  const s = o.source;
  if (s.kind === 'fashion-mnist') {
    if (o.classes && o.classes.length !== FASHION_MNIST_CLASSES.length) throw new Error(`--classes names ${o.classes.length} classes but Fashion-MNIST has 10`);
    const fm = await loadFashionMnist({ ...o.fashionMnist, dir: o.dataDir, log: o.log });
    return { train: fm.train, test: fm.test, classNames: o.classes ?? [...FASHION_MNIST_CLASSES], source: fm.source, isSubset: fm.isSubset };
  }
  if (s.kind === 'images') {
    const dir = resolve(s.dir);
    if (!existsSync(dir)) throw new Error(`--dataset images:${s.dir}: folder not found`);
    const got = await readLabelledImageFolder(dir, { classes: o.classes, shape: o.shape, log: o.log });
    return { train: got.dataset, test: null, classNames: got.classNames, source: `images:${dir}`, isSubset: false };
  }
  const ds = await readIdxLabelled(resolve(s.images), resolve(s.labels), o.classes?.length, `--dataset idx:${s.images},${s.labels}`);
  return { train: ds, test: null, classNames: o.classes ?? Array.from({ length: ds.numClasses }, (_, i) => String(i)), source: `idx:${resolve(s.images)},${resolve(s.labels)}`, isSubset: false };
}

/** Runs `tasks` with at most `limit` in flight. */
async function bounded(tasks: (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < tasks.length; i = next++) await tasks[i]();
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, tasks.length)) }, worker));
}

const pad = (n: number, count: number) => String(n).padStart(Math.max(5, String(Math.max(0, count - 1)).length), '0');

/** Writes `ds` as PNGs: in class sub-folders when labelled, flat when not. Row k is file number k. */
async function writePngs(dir: string, ds: Dataset, classNames: string[], concurrency: number): Promise<void> {
  const [h, w, c] = ds.shape;
  const size = sampleSize(ds);
  const folders = classFolderNames(classNames);
  if (ds.labels) for (const y of new Set(ds.labels)) await mkdir(join(dir, folders[y]), { recursive: true });
  else await mkdir(dir, { recursive: true });
  const tasks = Array.from({ length: ds.count }, (_, k) => async () => {
    const png = encodePng(ds.images.subarray(k * size, (k + 1) * size), w, h, c as 1 | 3);
    await writeFile(join(dir, ...(ds.labels ? [folders[ds.labels[k]]] : []), `${pad(k, ds.count)}.png`), png);
  });
  await bounded(tasks, concurrency);
}

async function writeSet(dir: string, ds: Dataset, prefix: string, classNames: string[], o: SplitOptions): Promise<void> {
  await mkdir(dir, { recursive: true });
  if (o.format === 'images') await writePngs(dir, ds, classNames, o.concurrency ?? 8);
  else await writeIdx(dir, prefix, ds);
  await writeFile(join(dir, CLASSES_FILE), `${JSON.stringify({ classes: classNames, shape: ds.shape, invert: false })}\n`);
}

/**
 * What an earlier split left in `out` (to remove with force); throws when `out` holds anything without force, or
 * anything a split did not write even with it.
 */
async function checkOut(out: string, force: boolean): Promise<string[]> {
  if (!existsSync(out)) return [];
  const entries = (await readdir(out)).filter((e) => !e.startsWith('.'));
  if (entries.length === 0) return [];
  if (!force) throw new Error(`--out ${out} is not empty; choose another folder or pass --force to replace an earlier split`);
  const ours = (e: string) => e === 'federation.json' || e === 'proxy' || e === 'validation' || /^client-\d+$/.test(e);
  const foreign = entries.filter((e) => !ours(e));
  if (foreign.length) throw new Error(`--out ${out} holds ${foreign.slice(0, 3).join(', ')}, which fedistill split did not write; not replacing it`);
  return entries;
}

/** Splits, writes every folder and federation.json; returns the manifest. */
export async function splitToFolders(o: SplitOptions): Promise<FederationManifest> {
  if (!Number.isInteger(o.clients) || o.clients < 1) throw new Error(`--clients must be a positive integer, got ${o.clients}`);
  const out = resolve(o.out);
  // The destination is checked before anything is loaded (a typo should not cost a full decode).
  const stale = await checkOut(out, o.force ?? false);
  const src = await loadSource(o);
  const { train, classNames } = src;
  // Refused before anything is written: two classes in one folder (`a/b` and `a_b` are both `a_b`) would merge them.
  if (o.format === 'images') {
    try {
      classFolderNames(classNames);
    } catch (e) {
      throw new Error(`--format images: ${(e as Error).message} (or use --format idx, which has no class folders)`);
    }
  }
  const proxySize = o.proxySize === 0 ? 0 : fitProxySize({ requested: o.proxySize, trainCount: train.count, isSubset: src.isSubset, log: o.log, flag: '--proxy-size' });
  const split = splitForFederation(train, { proxySize, numClients: o.clients, partition: o.partition, alpha: o.alpha, shardsPerClient: o.shardsPerClient, seed: o.seed });
  for (const e of stale) await rm(join(out, e), { recursive: true, force: true });
  await mkdir(out, { recursive: true });

  const clients: ClientSummary[] = [];
  for (const [i, rows] of split.clients.entries()) {
    const name = `client-${i}`;
    const ds = subset(train, rows);
    await writeSet(join(out, name), ds, 'train', classNames, o);
    clients.push({ name, count: ds.count, classCounts: classHistogram(ds.labels!, Uint32Array.from({ length: ds.count }, (_, k) => k), classNames.length) });
  }
  let proxyPath: string | null = null;
  if (proxySize > 0) {
    await writeSet(join(out, 'proxy'), { ...subset(train, split.proxy), labels: null }, 'proxy', classNames, o);
    proxyPath = o.format === 'images' ? 'proxy' : 'proxy/proxy-images-idx3-ubyte.gz';
  }
  let validationPath: string | null = null;
  if (src.test) {
    await writeSet(join(out, 'validation'), src.test, 't10k', classNames, o);
    validationPath = o.format === 'images' ? 'validation' : 'validation/t10k-images-idx3-ubyte.gz,validation/t10k-labels-idx1-ubyte.gz';
  }
  const manifest: FederationManifest = {
    createdBy: 'fedistill split',
    source: src.source,
    isSubset: src.isSubset,
    format: o.format,
    classes: classNames,
    shape: train.shape,
    seed: o.seed,
    partition: {
      kind: o.partition,
      ...(o.partition === 'dirichlet' ? { alpha: o.alpha } : {}),
      ...(o.partition === 'shards' ? { shardsPerClient: o.shardsPerClient } : {}),
    },
    proxy: { count: proxySize, path: proxyPath },
    validation: { count: src.test?.count ?? 0, path: validationPath },
    clients,
  };
  await writeFile(join(out, 'federation.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** The summary `fedistill split` prints: where things went, a line per client, and the commands to run next. */
export function splitSummary(m: FederationManifest, out: string): string {
  const lines = [
    `split: ${m.source}${m.isSubset ? ' (SUBSET)' : ''} → ${out} (${m.format}, seed ${m.seed}, ${m.partition.kind}` +
      `${m.partition.alpha !== undefined ? ` α=${m.partition.alpha}` : ''}${m.partition.shardsPerClient !== undefined ? ` ${m.partition.shardsPerClient} shards each` : ''})`,
    `  classes (${m.classes.length}): ${m.classes.join(', ')}; images ${m.shape.join('×')}`,
    `  proxy:      ${m.proxy.count} unlabelled rows${m.proxy.path ? ` in ${join(out, m.proxy.path.split(',')[0])}` : ''}`,
    ...(m.validation.path ? [`  validation: ${m.validation.count} labelled rows in ${join(out, 'validation')}`] : []),
  ];
  const width = Math.max(...m.clients.map((c) => c.name.length));
  for (const c of m.clients) {
    const present = c.classCounts.flatMap((n, j) => (n > 0 ? [`${j}:${n}`] : []));
    lines.push(`  ${c.name.padEnd(width)}  ${String(c.count).padStart(6)} rows, ${present.length} classes (${present.join(' ')})`);
  }
  const proxySpec = m.format === 'images' ? `images:${join(out, 'proxy')}` : `idx:${join(out, 'proxy', 'proxy-images-idx3-ubyte.gz')}`;
  const valSpec = m.validation.path
    ? m.format === 'images'
      ? ` --validation images:${join(out, 'validation')}`
      : ` --validation idx:${m.validation.path.split(',').map((p) => join(out, p)).join(',')}`
    : '';
  lines.push('next:');
  if (m.proxy.path) lines.push(`  fedistill server --proxy ${proxySpec}${valSpec} ...`);
  lines.push(`  fedistill client --data-dir ${join(out, 'client-0')} ...   (one per client folder)`);
  return lines.join('\n');
}
