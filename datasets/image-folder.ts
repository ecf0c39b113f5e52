/**
 * Image folders on Node, decoded by sharp and turned into input rows by prepareImage — the join page's letterbox, grey
 * and invert rule, so a picture gives the same row in a browser and here.
 *
 *   labelled:   DIR/<class>/…/*.png|jpg|webp…   one sub-folder per class (images may sit deeper inside it)
 *   unlabelled: DIR/…/*.png|jpg|webp…           every image under DIR (a proxy set)
 *
 * Order is the files' relative paths sorted by code unit (not locale), so a folder always gives the same rows in the
 * same order (a proxy set's hash depends on it). An optional DIR/classes.json says what the folder holds: either
 * ["name", …] or { "classes": ["name", …], "invert": false, "shape": [28, 28, 1] } (`fedistill split` writes the
 * object form: its images are already in the model's form, so they must not be inverted again).
 */
import { existsSync, statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { basename, extname, join, relative, sep } from 'node:path';
import sharp from 'sharp';
import type { Dataset } from '../shared/data/dataset.ts';
import { classOfFolder } from '../shared/data/class-folders.ts';
import { prepareImage, type InvertMode } from '../shared/data/image-prep.ts';

/** Extensions sharp decodes out of the box (BMP is not among them). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.gif', '.avif', '.tif', '.tiff'] as const;
export const DEFAULT_IMAGE_SHAPE: [number, number, number] = [28, 28, 1];
export const CLASSES_FILE = 'classes.json';
/** Labels are bytes (Dataset.labels is a Uint8Array). */
export const MAX_CLASSES = 256;

export interface ImageFolderOptions {
  /** [height, width, channels] of the rows; default classes.json's shape, else 28×28×1. */
  shape?: [number, number, number];
  /** Class names (e.g. --classes); default classes.json's, else the sub-folders' names. */
  classes?: string[];
  /** Default classes.json's, else 'auto' (the join page's rule). */
  invert?: InvertMode;
  /** Files decoded at once (sharp runs them on its own threads). Default 8. */
  concurrency?: number;
  log?: (m: string) => void;
}

export interface FolderMeta {
  classes?: string[];
  invert?: InvertMode;
  shape?: [number, number, number];
}

export interface ImageFolderData {
  dataset: Dataset;
  classNames: string[];
  /** Relative path of each row's file, in row order. */
  files: string[];
}

const isImage = (name: string) => (IMAGE_EXTENSIONS as readonly string[]).includes(extname(name).toLowerCase());
const hidden = (name: string) => name.startsWith('.');

/** Throws "<what>: folder not found" / "is not a folder" unless `dir` is a directory. */
export function requireFolder(dir: string, what: string): void {
  if (!existsSync(dir)) throw new Error(`${what}: folder not found`);
  if (!statSync(dir).isDirectory()) throw new Error(`${what}: not a folder`);
}

/** DIR/classes.json, checked; null when there is none. */
export async function readFolderMeta(dir: string): Promise<FolderMeta | null> {
  const p = join(dir, CLASSES_FILE);
  if (!existsSync(p)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(p, 'utf8'));
  } catch (e) {
    throw new Error(`${p}: not valid JSON (${(e as Error).message})`);
  }
  const meta: FolderMeta = Array.isArray(raw) ? { classes: raw } : (raw as FolderMeta);
  if (typeof meta !== 'object' || meta === null) throw new Error(`${p}: expected ["class", …] or { "classes": [...] }`);
  if (meta.classes !== undefined && !(Array.isArray(meta.classes) && meta.classes.length > 0 && meta.classes.every((c) => typeof c === 'string' && c !== ''))) {
    throw new Error(`${p}: "classes" must be a non-empty list of names`);
  }
  const dup = meta.classes?.find((c, i) => meta.classes!.indexOf(c) !== i);
  if (dup !== undefined) throw new Error(`${p}: "classes" names '${dup}' twice`);
  if (meta.invert !== undefined && meta.invert !== true && meta.invert !== false && meta.invert !== 'auto') {
    throw new Error(`${p}: "invert" must be true, false or "auto"`);
  }
  if (meta.shape !== undefined) checkShape(meta.shape, p);
  return meta;
}

export function checkShape(shape: unknown, what: string): asserts shape is [number, number, number] {
  const ok = Array.isArray(shape) && shape.length === 3 && shape.every((d) => Number.isInteger(d) && d > 0) && (shape[2] === 1 || shape[2] === 3);
  if (!ok) throw new Error(`${what}: shape must be [height, width, 1 or 3], got ${JSON.stringify(shape)}`);
}

/** Image files under `dir` (recursive), relative paths sorted by code unit; non-image files are counted apart. */
export async function listImages(dir: string): Promise<{ images: string[]; skipped: string[] }> {
  const images: string[] = [];
  const skipped: string[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (hidden(e.name)) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() || e.isSymbolicLink()) {
        const rel = relative(dir, p).split(sep).join('/');
        if (isImage(e.name)) images.push(rel);
        else if (!(d === dir && e.name === CLASSES_FILE)) skipped.push(rel);
      }
    }
  };
  await walk(dir);
  const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return { images: images.sort(byCodeUnit), skipped: skipped.sort(byCodeUnit) };
}

/** One file → its input row (sharp decodes, applies the EXIF orientation and converts to 8-bit sRGB + alpha). */
export async function decodeImageFile(path: string, shape: [number, number, number], invert: InvertMode): Promise<Uint8Array> {
  let raw: { data: Buffer; info: sharp.OutputInfo };
  try {
    raw = await sharp(path).rotate().toColourspace('srgb').ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new Error(`${path}: cannot decode (${(e as Error).message})`);
  }
  if (raw.info.channels !== 4) throw new Error(`${path}: decoded to ${raw.info.channels} channels, expected RGBA`);
  const data = new Uint8Array(raw.data.buffer, raw.data.byteOffset, raw.data.byteLength);
  return prepareImage({ data, width: raw.info.width, height: raw.info.height }, shape, invert).pixels;
}

/** Decodes `files` (absolute paths) into one images buffer, at most `concurrency` at a time, rows in `files` order. */
async function decodeAll(files: string[], shape: [number, number, number], invert: InvertMode, concurrency: number): Promise<Uint8Array> {
  const size = shape[0] * shape[1] * shape[2];
  const out = new Uint8Array(files.length * size);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < files.length; i = next++) out.set(await decodeImageFile(files[i], shape, invert), i * size);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, files.length)) }, worker));
  return out;
}

function skippedNote(skipped: string[]): string {
  return skipped.length ? `; skipped ${skipped.length} non-image file(s), e.g. ${skipped[0]} (images: ${IMAGE_EXTENSIONS.join(' ')})` : '';
}

/**
 * A labelled folder: one sub-folder per class. Class names come from `o.classes`, else classes.json, else the
 * sub-folders' names sorted (all-numeric names: sorted as numbers, and the name is the class number). A sub-folder
 * matches a class by name (exactly, else ignoring case, else also punctuation: classOfFolder) or by number; one that
 * matches none, or two classes equally, or holds no image, is an error.
 */
export async function readLabelledImageFolder(dir: string, o: ImageFolderOptions = {}): Promise<ImageFolderData> {
  requireFolder(dir, dir);
  const meta = await readFolderMeta(dir);
  const shape = o.shape ?? meta?.shape ?? DEFAULT_IMAGE_SHAPE;
  checkShape(shape, dir);
  const subdirs = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory() && !hidden(e.name)).map((e) => e.name);
  if (subdirs.length === 0) throw new Error(`${dir}: no class sub-folders (a labelled image folder holds one sub-folder of images per class)`);
  const tooMany = (n: number | string) => new Error(`${dir}: ${n} classes; at most ${MAX_CLASSES} are supported`);
  let classNames = o.classes ?? meta?.classes;
  if (!classNames) {
    if (subdirs.every((d) => /^\d+$/.test(d))) {
      // Checked before the names are made: a folder `100000000` must not allocate 10⁸ of them.
      const largest = subdirs.reduce((m, d) => Math.max(m, Number(d)), 0);
      if (largest >= MAX_CLASSES) throw tooMany(`folder '${subdirs.find((d) => Number(d) === largest)}' names class ${largest}, so ${largest + 1}`);
      classNames = Array.from({ length: largest + 1 }, (_, i) => String(i));
    } else classNames = [...subdirs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }
  if (classNames.length > MAX_CLASSES) throw tooMany(classNames.length);
  const files: string[] = [];
  const labels: number[] = [];
  const skipped: string[] = [];
  for (const sub of [...subdirs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    let cls: number | null;
    try {
      cls = classOfFolder(sub, classNames);
    } catch (e) {
      throw new Error(`${join(dir, sub)}: ${(e as Error).message}`);
    }
    if (cls === null) throw new Error(`${join(dir, sub)}: folder '${sub}' is not one of the classes (${classNames.join(', ')})`);
    const found = await listImages(join(dir, sub));
    if (found.images.length === 0) throw new Error(`${join(dir, sub)}: class '${classNames[cls]}' holds no images${skippedNote(found.skipped)}`);
    for (const f of found.images) {
      files.push(`${sub}/${f}`);
      labels.push(cls);
    }
    skipped.push(...found.skipped.map((f) => `${sub}/${f}`));
  }
  const looseFiles = (await listImages(dir)).images.filter((f) => !f.includes('/'));
  if (looseFiles.length) o.log?.(`data: ${dir}: ${looseFiles.length} image(s) outside any class folder ignored, e.g. ${looseFiles[0]}`);
  const images = await decodeAll(files.map((f) => join(dir, f)), shape, o.invert ?? meta?.invert ?? 'auto', o.concurrency ?? 8);
  o.log?.(`data: ${dir}: ${files.length} images in ${new Set(labels).size} class folders${skippedNote(skipped)}`);
  return {
    dataset: { images, labels: Uint8Array.from(labels), count: files.length, shape, numClasses: classNames.length },
    classNames: [...classNames],
    files,
  };
}

/** An unlabelled folder: every image under `dir`, in sorted path order; `numClasses` is the federation's. */
export async function readUnlabelledImageFolder(
  dir: string,
  numClasses: number,
  o: Omit<ImageFolderOptions, 'classes'> = {},
): Promise<{ dataset: Dataset; files: string[] }> {
  requireFolder(dir, dir);
  const meta = await readFolderMeta(dir);
  const shape = o.shape ?? meta?.shape ?? DEFAULT_IMAGE_SHAPE;
  checkShape(shape, dir);
  const { images: files, skipped } = await listImages(dir);
  if (files.length === 0) throw new Error(`${dir}: no images (looked for ${IMAGE_EXTENSIONS.join(' ')})${skippedNote(skipped)}`);
  const images = await decodeAll(files.map((f) => join(dir, f)), shape, o.invert ?? meta?.invert ?? 'auto', o.concurrency ?? 8);
  o.log?.(`data: ${dir}: ${files.length} unlabelled images${skippedNote(skipped)}`);
  return { dataset: { images, labels: null, count: files.length, shape, numClasses }, files };
}

/** A name safe in a proxy id / URL, from a folder or file path. */
export function idPart(path: string): string {
  return basename(path).replace(/\.gz$/, '').replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'data';
}
