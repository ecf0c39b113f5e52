/**
 * A client's private, labelled data from a folder (it stays on the client's machine). Two formats, detected:
 *   idx     train-images-idx3-ubyte(.gz) + train-labels-idx1-ubyte(.gz), and, if present, t10k-* as a local
 *           evaluation set
 *   images  one sub-folder of images per class (PNG, JPEG, WebP …), decoded like the browser join page does
 * The class names: --classes, else the folder's classes.json (`fedistill split` writes one), else the server's class
 * names (GET /federation), else — idx — 0 … the largest label, or — images — the sorted folder names. For images the
 * class of a sub-folder is found among them by name (or number). The count must be the server's: hello's per-class
 * counts have one entry per class.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Dataset } from '../../shared/data/dataset.ts';
import { findFile } from '../../datasets/fashion-mnist.ts';
import { readIdxLabelled } from '../../datasets/idx-files.ts';
import { readFolderMeta, readLabelledImageFolder } from '../../datasets/image-folder.ts';

export type PrivateDataFormat = 'idx' | 'images';

export interface PrivateData {
  train: Dataset;
  eval: Dataset | null;
  format: PrivateDataFormat;
  /** The class names the labels index (images: as matched; idx: --classes, classes.json or the server's, else null). */
  classNames: string[] | null;
}

export interface PrivateDataOptions {
  /** --classes. */
  classes?: string[];
  /** The aggregator's URL: where an image folder without classes.json learns the class names and input shape. */
  serverUrl?: string;
  /** How long to keep asking a server that is not up yet (ms). Default 30000. */
  serverWaitMs?: number;
  /** The fetch to ask it with (an https server with a private CA: `fetchWithCa(pem)`). Default: the global fetch. */
  fetch?: (input: string | URL, init?: RequestInit) => Promise<Response>;
  log?: (m: string) => void;
}

const IDX_TRAIN = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte'] as const;

/** Which format `dir` holds; throws a message naming both when it is neither. */
export function detectDataFormat(dir: string): PrivateDataFormat {
  if (!existsSync(dir)) throw new Error(`--data-dir ${dir}: folder not found`);
  if (!statSync(dir).isDirectory()) throw new Error(`--data-dir ${dir}: not a folder`);
  if (findFile(dir, IDX_TRAIN[0]) || findFile(dir, IDX_TRAIN[1])) return 'idx';
  const subdirs = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.'));
  if (subdirs.length > 0) return 'images';
  throw new Error(
    `--data-dir ${dir} holds neither idx files (${IDX_TRAIN.map((f) => `${f}(.gz)`).join(' + ')}) ` +
      'nor class sub-folders of images (DIR/<class>/*.png|jpg|webp…)',
  );
}

/** The server's class names and input shape from GET /federation, retried while it starts; null if it never answers. */
export async function fetchFederation(
  url: string,
  waitMs: number,
  log: (m: string) => void,
  fetchImpl: NonNullable<PrivateDataOptions['fetch']> = fetch,
): Promise<{ classNames: string[]; inputShape: [number, number, number] } | null> {
  const deadline = Date.now() + waitMs;
  let said = false;
  for (;;) {
    try {
      const res = await fetchImpl(new URL('/federation', url), { signal: AbortSignal.timeout(5000) });
      if (res.ok) {
        const f = (await res.json()) as { classNames?: string[]; student?: { inputShape?: [number, number, number] } };
        if (Array.isArray(f.classNames) && f.student?.inputShape) return { classNames: f.classNames, inputShape: f.student.inputShape };
        return null;
      }
    } catch (e) {
      // Not up yet — unless its certificate is not trusted, which waiting does not fix.
      const code = String((e as { code?: string; cause?: { code?: string } }).cause?.code ?? (e as { code?: string }).code ?? '');
      if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code)) throw new Error(`${url}/federation: the server's TLS certificate is not trusted (${code}): pass the CA that signed it (--ca FILE)`);
    }
    if (Date.now() >= deadline) return null;
    if (!said) log(`data: waiting for ${url}/federation to learn the class names …`);
    said = true;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/**
 * The class names the labels index, in this order: --classes, the folder's classes.json, the server's (GET
 * /federation, when a URL is given); null when none of them says (idx: the largest label + 1 classes; images: the
 * sorted folder names).
 */
async function settleClassNames(
  given: string[] | undefined,
  o: PrivateDataOptions,
  log: (m: string) => void,
  fallback: string,
): Promise<{ classes: string[] | undefined; shape?: [number, number, number]; from: string }> {
  if (given) return { classes: given, from: o.classes ? '--classes' : 'classes.json' };
  if (o.serverUrl) {
    const fed = await fetchFederation(o.serverUrl, o.serverWaitMs ?? 30000, log, o.fetch);
    if (fed) {
      log(`data: class names from ${o.serverUrl}/federation: ${fed.classNames.join(', ')}`);
      return { classes: fed.classNames, shape: fed.inputShape, from: `${o.serverUrl}/federation` };
    }
    log(`data: ${o.serverUrl}/federation did not answer; ${fallback}`);
  }
  return { classes: undefined, from: '' };
}

export async function loadPrivateData(dirArg: string, o: PrivateDataOptions = {}): Promise<PrivateData> {
  const log = o.log ?? (() => {});
  const dir = resolve(dirArg);
  const format = detectDataFormat(dir);
  const meta = await readFolderMeta(dir);
  const given = o.classes ?? meta?.classes;
  if (format === 'idx') {
    const { classes, from } = await settleClassNames(given, o, log, 'the classes are 0 … the largest label');
    const read = async (prefix: string): Promise<Dataset | null> => {
      const img = findFile(dir, `${prefix}-images-idx3-ubyte`);
      const lab = findFile(dir, `${prefix}-labels-idx1-ubyte`);
      if (!img || !lab) return null;
      try {
        // No class names known: readIdxLabelled counts the largest label + 1.
        return await readIdxLabelled(img, lab, classes?.length, img);
      } catch (e) {
        throw new Error(classes ? `${(e as Error).message} (the ${classes.length} classes of ${from})` : (e as Error).message);
      }
    };
    const train = await read('train');
    if (!train) throw new Error(`${dir} must hold train-images-idx3-ubyte(.gz) and train-labels-idx1-ubyte(.gz): the client's private, labelled data`);
    const evalSet = await read('t10k');
    if (!classes) {
      // The two files agree on the class count (hello's per-class counts have one entry per class).
      const numClasses = Math.max(train.numClasses, evalSet?.numClasses ?? 0);
      train.numClasses = numClasses;
      if (evalSet) evalSet.numClasses = numClasses;
      log(`data: no class names (--classes, classes.json or the server's); ${numClasses} classes from the largest label`);
    }
    log(`data: ${dir}: idx files, ${train.count} labelled images${evalSet ? ` (+ ${evalSet.count} t10k images to measure on)` : ''}`);
    return { train, eval: evalSet, format, classNames: classes ?? null };
  }
  const settled = await settleClassNames(given, o, log, 'the classes are the sorted folder names');
  log(`data: ${dir}: class sub-folders of images`);
  const got = await readLabelledImageFolder(dir, { classes: settled.classes, shape: meta?.shape ?? settled.shape, log });
  const counts = got.classNames.map((_, i) => got.dataset.labels!.filter((y) => y === i).length);
  const perClass = got.classNames.flatMap((c, i) => (counts[i] > 0 ? [`${c} ${counts[i]}`] : []));
  log(`data: ${got.dataset.count} labelled images: ${perClass.join(', ')}`);
  return { train: got.dataset, eval: null, format, classNames: got.classNames };
}
