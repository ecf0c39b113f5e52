/**
 * Finding and loading Fashion-MNIST on Node (Xiao, Rasul & Vollgraf 2017, MIT license).
 *
 * Search order (first that yields a valid set wins; each attempt is logged in one line):
 *   1. opts.dir, else env FEDISTILL_DATA_DIR — a directory the user named. If it lacks a valid set this is an
 *      error (no silent fallback to other data). `fedistill server` and `simulate` read the variable through the
 *      settings table's --data-dir row (so --help lists it) and pass it as opts.dir; library callers and
 *      `fedistill client --fashion-mnist-part` that name no dir get it here.
 *   2. the cache directory (opts.cacheDir, default $XDG_CACHE_HOME/fedistill/fashion-mnist or
 *      ~/.cache/fedistill/fashion-mnist)
 *   3. the Debian package dataset-fashion-mnist: /usr/share/datasets/fashion-mnist
 *   4. download from the dataset's own mirror into the cache (unless download === false)
 *   5. the compact committed subset data/fashion-mnist-subset (unless allowSubset === false), reported as such
 * Files may be gzip-compressed (.gz) or not.
 *
 * Two environment variables make "no copy anywhere, no network" quick to reach (and to test) on any machine:
 *   FEDISTILL_OFFLINE=1            never try the mirror (as download: false)
 *   FEDISTILL_SYSTEM_DATA_DIRS     the system directories to look in, ':'-separated; empty = none (as systemDirs)
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzip as gunzipCb } from 'node:zlib';
import { promisify } from 'node:util';
import type { Dataset } from '../shared/data/dataset.ts';
import { datasetFromIdx, isGzip } from '../shared/data/idx.ts';

const gunzipAsync = promisify(gunzipCb);

export const FASHION_MNIST_MIRROR = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/';
export const DEBIAN_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const FASHION_MNIST_FILES = [
  'train-images-idx3-ubyte',
  'train-labels-idx1-ubyte',
  't10k-images-idx3-ubyte',
  't10k-labels-idx1-ubyte',
] as const;
export const FASHION_MNIST_CLASSES = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
] as const;
export const FULL_TRAIN = 60000;
export const FULL_TEST = 10000;

export interface LoadFashionMnistOptions {
  /** A directory holding the 4 files (.gz or not). Also env FEDISTILL_DATA_DIR. Must be valid when given. */
  dir?: string;
  /** Where downloads go and are looked for. Default ~/.cache/fedistill/fashion-mnist (honours XDG_CACHE_HOME). */
  cacheDir?: string;
  /** Try the mirror when no local copy is found. Default true. */
  download?: boolean;
  /** Fall back to the committed subset when all else fails. Default true. */
  allowSubset?: boolean;
  /** One line per attempt; default console.error. */
  log?: (m: string) => void;
  /** System directories to look in after the cache. Default [/usr/share/datasets/fashion-mnist]. */
  systemDirs?: string[];
  /** Mirror base URL. Default FASHION_MNIST_MIRROR. */
  mirror?: string;
  /** Abort a download that receives nothing for this long (ms). Default 20000. */
  timeoutMs?: number;
}

export interface FashionMnist {
  train: Dataset;
  test: Dataset;
  /** Where it came from, e.g. "debian:/usr/share/datasets/fashion-mnist" or "subset:/…/data/fashion-mnist-subset". */
  source: string;
  /** True when this is the committed subset, not the full 60000/10000 set. */
  isSubset: boolean;
  /** The directory the files were read from (other processes of a simulation load the same files with loadFromDir). */
  dir: string;
}

/** Absolute path inside the repository (found by walking up from this file to fedistill's package.json). */
export function resolveRepoPath(...segments: string[]): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if (JSON.parse(readFileSync(pkg, 'utf8')).name === 'fedistill') return join(dir, ...segments);
      } catch {
        /* keep walking */
      }
    }
    const up = dirname(dir);
    if (up === dir) {
      // Fall back to the layout assumption datasets/ → repo root.
      return join(dirname(fileURLToPath(import.meta.url)), '..', ...segments);
    }
    dir = up;
  }
}

export function defaultCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'fedistill', 'fashion-mnist');
}

export const SUBSET_DIR = (): string => resolveRepoPath('data', 'fashion-mnist-subset');

/** Path of `name` in `dir`, trying name.gz, name, and the dotted variant (train-images.idx3-ubyte). */
export function findFile(dir: string, name: string): string | null {
  const dotted = name.replace(/-(idx\d)/, '.$1');
  for (const c of [`${name}.gz`, name, `${dotted}.gz`, dotted]) {
    const p = join(dir, c);
    if (existsSync(p)) return p;
  }
  return null;
}

export async function readMaybeGz(path: string): Promise<Uint8Array> {
  const raw = new Uint8Array(await readFile(path));
  if (!isGzip(raw)) return raw;
  const out = await gunzipAsync(raw);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

function checkShape(ds: Dataset, what: string) {
  if (ds.shape[0] !== 28 || ds.shape[1] !== 28 || ds.shape[2] !== 1) {
    throw new Error(`${what}: expected 28×28×1 images, got ${ds.shape.join('×')}`);
  }
  if (!ds.labels) throw new Error(`${what}: no labels`);
}

/** Loads the 4 files from `dir`. Throws (with the missing files / parse problem) when they are not there or bad. */
export async function loadFromDir(
  dir: string,
  expect?: { train: number; test: number },
): Promise<{ train: Dataset; test: Dataset }> {
  const paths = FASHION_MNIST_FILES.map((f) => findFile(dir, f));
  const missing = FASHION_MNIST_FILES.filter((_, i) => !paths[i]);
  if (missing.length) throw new Error(`missing ${missing.map((m) => `${m}(.gz)`).join(', ')}`);
  const [trI, trL, teI, teL] = await Promise.all(paths.map((p) => readMaybeGz(p!)));
  let train: Dataset;
  let test: Dataset;
  try {
    train = datasetFromIdx(trI, trL, 10);
  } catch (e) {
    throw new Error(`training files: ${(e as Error).message}`);
  }
  try {
    test = datasetFromIdx(teI, teL, 10);
  } catch (e) {
    throw new Error(`test files: ${(e as Error).message}`);
  }
  checkShape(train, 'training set');
  checkShape(test, 'test set');
  if (expect && (train.count !== expect.train || test.count !== expect.test)) {
    throw new Error(`expected ${expect.train}/${expect.test} train/test images, found ${train.count}/${test.count}`);
  }
  return { train, test };
}

/** The committed subset (data/fashion-mnist-subset): 6000 train / 2000 test images, class-balanced. */
export async function loadSubset(dir: string = SUBSET_DIR()): Promise<{ train: Dataset; test: Dataset }> {
  return loadFromDir(dir);
}

async function fetchWithStallTimeout(url: string, timeoutMs: number): Promise<Uint8Array> {
  const ctrl = new AbortController();
  let timer = setTimeout(() => ctrl.abort(), timeoutMs);
  const poke = () => {
    clearTimeout(timer);
    timer = setTimeout(() => ctrl.abort(), timeoutMs);
  };
  try {
    const res = await fetch(url, { signal: ctrl.signal });
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status} ${res.statusText}`);
    const chunks: Uint8Array[] = [];
    let total = 0;
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      poke();
      chunks.push(value);
      total += value.length;
    }
    const out = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  } catch (e) {
    if (ctrl.signal.aborted) throw new Error(`no data for ${timeoutMs / 1000} s (timed out)`);
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(cause?.code || cause?.message || (e as Error).message);
  } finally {
    clearTimeout(timer);
  }
}

/** Downloads the 4 files into `cacheDir` (via a temporary folder), verifying them before moving them in place. */
async function downloadInto(cacheDir: string, mirror: string, timeoutMs: number, log: (m: string) => void) {
  const base = mirror.endsWith('/') ? mirror : `${mirror}/`;
  const tmp = join(cacheDir, `.download-${process.pid}-${Date.now()}`);
  await mkdir(tmp, { recursive: true });
  try {
    for (const f of FASHION_MNIST_FILES) {
      const url = `${base}${f}.gz`;
      const t0 = Date.now();
      const bytes = await fetchWithStallTimeout(url, timeoutMs).catch((e: Error) => {
        throw new Error(`${url}: ${e.message}`);
      });
      await writeFile(join(tmp, `${f}.gz`), bytes);
      log(`data: downloaded ${url} (${(bytes.length / 1e6).toFixed(1)} MB, ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    }
    const ds = await loadFromDir(tmp, { train: FULL_TRAIN, test: FULL_TEST });
    for (const f of FASHION_MNIST_FILES) await rename(join(tmp, `${f}.gz`), join(cacheDir, `${f}.gz`));
    return ds;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export function helpMessage(cacheDir: string): string {
  return (
    'Fashion-MNIST not found. To fix, do one of:\n' +
    '  - sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu; installs /usr/share/datasets/fashion-mnist)\n' +
    `  - download the 4 files ${FASHION_MNIST_FILES.map((f) => `${f}.gz`).join(', ')}\n` +
    `    from ${FASHION_MNIST_MIRROR} into ${cacheDir}\n` +
    '  - or pass --data-dir <dir> (or set FEDISTILL_DATA_DIR) pointing at a directory that holds them (.gz or not)'
  );
}

/** Finds and loads Fashion-MNIST; see the module comment for the search order. */
export async function loadFashionMnist(opts: LoadFashionMnistOptions = {}): Promise<FashionMnist> {
  const log = opts.log ?? ((m: string) => console.error(m));
  const cacheDir = resolve(opts.cacheDir ?? defaultCacheDir());
  const full = { train: FULL_TRAIN, test: FULL_TEST };
  const errors: string[] = [];
  /** Short names of the places looked in, for the subset banner. */
  const tried: string[] = [];

  const userDir = opts.dir ?? (process.env.FEDISTILL_DATA_DIR || undefined);
  if (userDir !== undefined) {
    const dir = resolve(userDir);
    const via = opts.dir !== undefined ? 'data dir' : 'FEDISTILL_DATA_DIR';
    try {
      const ds = await loadFromDir(dir);
      const isSubset = ds.train.count !== FULL_TRAIN || ds.test.count !== FULL_TEST;
      log(`data: using ${via} ${dir} (${ds.train.count} train / ${ds.test.count} test)`);
      if (isSubset) log(subsetBanner(ds.train.count, ds.test.count));
      return { ...ds, source: `dir:${dir}`, isSubset, dir };
    } catch (e) {
      const msg = `${via} ${dir}: ${(e as Error).message}`;
      log(`data: ${msg}`);
      throw new Error(`${msg}\n${helpMessage(cacheDir)}`);
    }
  }

  const tryDir = async (kind: string, dir: string) => {
    try {
      const ds = await loadFromDir(dir, full);
      log(`data: using ${kind} ${dir}`);
      return { ...ds, source: `${kind}:${dir}`, isSubset: false, dir } satisfies FashionMnist;
    } catch (e) {
      const msg = `${kind} ${dir}: ${(e as Error).message}`;
      errors.push(msg);
      tried.push(`${kind} ${dir}`);
      log(`data: ${msg}`);
      return null;
    }
  };

  const fromCache = await tryDir('cache', cacheDir);
  if (fromCache) return fromCache;
  for (const sys of opts.systemDirs ?? systemDirsFromEnv() ?? [DEBIAN_FASHION_MNIST_DIR]) {
    const got = await tryDir(sys === DEBIAN_FASHION_MNIST_DIR ? 'debian' : 'system', sys);
    if (got) return got;
  }

  const offline = ['1', 'true', 'yes'].includes((process.env.FEDISTILL_OFFLINE ?? '').toLowerCase());
  if (opts.download !== false && !(opts.download === undefined && offline)) {
    const mirror = opts.mirror ?? FASHION_MNIST_MIRROR;
    log(`data: downloading from ${mirror} into ${cacheDir} …`);
    try {
      await mkdir(cacheDir, { recursive: true });
      const ds = await downloadInto(cacheDir, mirror, opts.timeoutMs ?? 20000, log);
      log(`data: using cache ${cacheDir} (downloaded)`);
      return { ...ds, source: `download:${mirror} -> ${cacheDir}`, isSubset: false, dir: cacheDir };
    } catch (e) {
      const msg = `download from ${mirror} failed: ${(e as Error).message}`;
      errors.push(msg);
      tried.push('download (failed)');
      log(`data: ${msg}`);
    }
  } else {
    log(`data: download disabled${opts.download === false ? '' : ' (FEDISTILL_OFFLINE)'}`);
    tried.push('download (disabled)');
  }

  if (opts.allowSubset !== false) {
    const dir = SUBSET_DIR();
    try {
      const ds = await loadSubset(dir);
      const rule = 'data: ' + '='.repeat(100);
      log(
        `${rule}\n${subsetBanner(ds.train.count, ds.test.count)}\n` +
          `data: no full Fashion-MNIST on this machine (tried: ${tried.join('; ')}): running on the committed subset ${dir}.\n` +
          `data: For the full set: sudo apt-get install dataset-fashion-mnist, or put the 4 files in ${cacheDir}\n` +
          `data: (from ${FASHION_MNIST_MIRROR}), or pass --data-dir.\n${rule}`,
      );
      return { ...ds, source: `subset:${dir}`, isSubset: true, dir };
    } catch (e) {
      const msg = `subset ${dir}: ${(e as Error).message}`;
      errors.push(msg);
      log(`data: ${msg}`);
    }
  }

  throw new Error(`${helpMessage(cacheDir)}\nTried:\n${errors.map((m) => `  - ${m}`).join('\n')}`);
}

function systemDirsFromEnv(): string[] | undefined {
  const v = process.env.FEDISTILL_SYSTEM_DATA_DIRS;
  return v === undefined ? undefined : v.split(':').filter(Boolean);
}

function subsetBanner(train: number, test: number): string {
  return `data: SUBSET: ${train} train / ${test} test images — accuracy not comparable to the full set`;
}

/** Size in bytes of the files of the committed subset (for reports). */
export async function subsetSizeBytes(dir: string = SUBSET_DIR()): Promise<number> {
  let total = 0;
  for (const f of FASHION_MNIST_FILES) {
    const p = findFile(dir, f);
    if (p) total += (await stat(p)).size;
  }
  return total;
}
