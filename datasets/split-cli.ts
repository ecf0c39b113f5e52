/** `fedistill split`: writes client folders, a proxy folder and federation.json from one labelled data set. */
import { parseArgs } from 'node:util';
import { parseClassNames } from '../shared/settings/server.ts';
import { parseSourceSpec, SOURCE_SPEC_HELP, splitSummary, splitToFolders, type SplitFormat } from './split.ts';
import type { PartitionKind } from '../shared/data/federated-split.ts';

const HELP = `fedistill split — one labelled data set → N client folders + a public proxy folder (+ validation)

  --dataset SPEC         ${SOURCE_SPEC_HELP}                  [fashion-mnist]
                         fashion-mnist is found as the other commands find it (else the committed subset)
  --data-dir DIR         where the Fashion-MNIST files are (env FEDISTILL_DATA_DIR)
  --clients N            client folders to write                                [10]
  --partition P          dirichlet | shards | iid                               [dirichlet]
  --alpha A              Dirichlet concentration (smaller = more skewed)        [0.5]
  --shards-per-client N  with --partition shards                                [2]
  --proxy-size N         rows held out, unlabelled, as the public proxy set (0 = none)
                         [10000; a sixth of a smaller data set]
  --seed N               the same seed gives the same folders                   [1]
  --out DIR              where to write (must be empty, or an earlier split with --force) [./fl-data]
  --format F             images (PNG files in class sub-folders) | idx (idx files)   [images]
  --classes a,b,c        class names in label order                             [the data set's]
  --shape HxWxC          size images:DIR pictures are read at (letterboxed)     [classes.json's, else 28x28x1]
  --force                replace an earlier split in --out

Writes OUT/client-<i>/ (private data for 'fedistill client --data-dir'), OUT/proxy/ (for 'fedistill server --proxy
images:OUT/proxy' or idx:OUT/proxy/proxy-images-idx3-ubyte.gz), OUT/validation/ when the data set has a test set, and
OUT/federation.json (classes, shape, seed, partition, rows per client and class).
`;

function int(x: string, flag: string, min: number): number {
  const n = Number(x);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${flag} must be an integer ≥ ${min}, got '${x}'`);
  return n;
}

/** `parse()`, its error prefixed with the flag (as the other commands' settings table does). */
function flag<T>(name: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw new Error(`--${name}: ${(e as Error).message}`);
  }
}

function parseShape(x: string): [number, number, number] {
  const m = /^(\d+)x(\d+)x([13])$/.exec(x);
  if (!m) throw new Error(`--shape must look like 28x28x1 or 32x32x3 (height x width x 1 or 3 channels), got '${x}'`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

export async function main(argv: string[]): Promise<void> {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      dataset: { type: 'string', default: 'fashion-mnist' },
      'data-dir': { type: 'string' },
      clients: { type: 'string', default: '10' },
      partition: { type: 'string', default: 'dirichlet' },
      alpha: { type: 'string', default: '0.5' },
      'shards-per-client': { type: 'string', default: '2' },
      'proxy-size': { type: 'string' },
      seed: { type: 'string', default: '1' },
      out: { type: 'string', default: './fl-data' },
      format: { type: 'string', default: 'images' },
      classes: { type: 'string' },
      shape: { type: 'string' },
      force: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) return void console.log(HELP);
  const partitions = ['dirichlet', 'shards', 'iid'];
  if (!partitions.includes(v.partition)) throw new Error(`--partition must be one of ${partitions.join(', ')}, got '${v.partition}'`);
  if (v.format !== 'images' && v.format !== 'idx') throw new Error(`--format must be images or idx, got '${v.format}'`);
  const alpha = Number(v.alpha);
  if (!(alpha > 0) || !Number.isFinite(alpha)) throw new Error(`--alpha must be a positive number, got '${v.alpha}'`);
  const manifest = await splitToFolders({
    source: parseSourceSpec(v.dataset),
    out: v.out,
    clients: int(v.clients, 'clients', 1),
    partition: v.partition as PartitionKind,
    alpha,
    shardsPerClient: int(v['shards-per-client'], 'shards-per-client', 1),
    seed: int(v.seed, 'seed', 0),
    proxySize: v['proxy-size'] === undefined ? undefined : int(v['proxy-size'], 'proxy-size', 0),
    format: v.format as SplitFormat,
    classes: v.classes === undefined ? undefined : flag('classes', () => parseClassNames(v.classes!)),
    shape: v.shape === undefined ? undefined : parseShape(v.shape),
    dataDir: v['data-dir'],
    force: v.force,
    log: (m) => console.error(m),
  });
  console.log(splitSummary(manifest, v.out));
}
