/**
 * Users' own data: image folders (decoded by sharp, prepared like the join page), idx files, format detection, the
 * server's proxy/validation specs, `fedistill split`, and the fall-back to the committed subset when the full
 * Fashion-MNIST is nowhere and there is no network.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import sharp from 'sharp';
import type { Browser } from 'playwright-core';
import { prepareImage } from '../shared/data/image-prep.ts';
import { sampleSize, subset, type Dataset } from '../shared/data/dataset.ts';
import { proxyRows } from '../shared/data/federated-split.ts';
import { decodeImageFile, readLabelledImageFolder, readUnlabelledImageFolder } from '../datasets/image-folder.ts';
import { FASHION_MNIST_CLASSES, loadSubset, resolveRepoPath, SUBSET_DIR } from '../datasets/fashion-mnist.ts';
import { loadServerData, parseProxySpec, parseValidationSpec } from '../datasets/sources.ts';
import { fitProxySize } from '../datasets/proxy-size.ts';
import { splitToFolders, type SplitOptions } from '../datasets/split.ts';
import { writeIdx } from '../datasets/idx-files.ts';
import { detectDataFormat, loadPrivateData } from '../client/node/private-data.ts';
import { launchChromium } from './chromium.ts';
import { runSimulation, type SimulationOptions } from '../simulations/simulate.ts';
import { startBench } from './helpers.ts';

delete process.env.FEDISTILL_DATA_DIR;
const quiet = () => {};
let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fedistill-datasets-'));
});
after(() => rm(tmp, { recursive: true, force: true }));

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** RGBA pixels of a w×h picture: background `bg`, a filled rectangle `fg` at (x, y, fw, fh). */
function picture(w: number, h: number, bg: number[], fg: number[], x: number, y: number, fw: number, fh: number): Uint8Array {
  const px = new Uint8Array(w * h * 4);
  for (let j = 0; j < h; j++) {
    for (let i = 0; i < w; i++) {
      const c = i >= x && i < x + fw && j >= y && j < y + fh ? fg : bg;
      px.set(c.length === 4 ? c : [...c, 255], 4 * (j * w + i));
    }
  }
  return px;
}
const png = (rgba: Uint8Array, w: number, h: number) => sharp(Buffer.from(rgba), { raw: { width: w, height: h, channels: 4 } }).png().toBuffer();

/** Pictures with known pixels: letterboxed and inverted, enlarged, coloured, with transparency, a light noisy one. */
const PICTURES = [
  { name: 'wide-light', w: 56, h: 28, rgba: picture(56, 28, [255, 255, 255], [0, 0, 0], 18, 4, 20, 20) },
  { name: 'small-dark', w: 10, h: 10, rgba: picture(10, 10, [0, 0, 0], [255, 255, 255], 3, 3, 4, 4) },
  { name: 'colour', w: 28, h: 28, rgba: picture(28, 28, [0, 0, 0], [200, 100, 50], 8, 8, 12, 12) },
  { name: 'tall-transparent', w: 31, h: 67, rgba: picture(31, 67, [0, 0, 0, 0], [90, 200, 30], 5, 10, 17, 40) },
  {
    name: 'noise',
    w: 45,
    h: 33,
    rgba: Uint8Array.from({ length: 45 * 33 * 4 }, (_, i) => (i % 4 === 3 ? 255 : 128 + ((i * 2654435761) >>> 25))),
  },
];

describe('shared image prep', () => {
  test('letterbox, area resampling, grey and the invert rule', () => {
    const [a, b, c, t] = PICTURES;
    const A = prepareImage({ data: a.rgba, width: a.w, height: a.h }, [28, 28, 1]);
    // ×0.5 into rows 7..20; white background → inverted to 0, the black square (rows 9..18, cols 9..18) → 255.
    assert.equal(A.inverted, true);
    assert.equal(A.pixels[14 * 28 + 14], 255);
    for (const [y, x] of [[0, 0], [3, 14], [6, 27], [8, 1], [21, 5], [27, 27]]) assert.equal(A.pixels[y * 28 + x], 0, `A (${y},${x})`);
    // Area averaging: target row 9 covers source rows 4..5 (the square starts at row 4): fully dark → 255 inverted.
    assert.equal(A.pixels[9 * 28 + 9], 255);
    const forced = prepareImage({ data: a.rgba, width: a.w, height: a.h }, [28, 28, 1], false);
    assert.equal(forced.pixels[14 * 28 + 14], 0);
    assert.equal(forced.pixels[8 * 28 + 1], 255);
    assert.equal(forced.pixels[3 * 28 + 14], 0, 'the letterbox stays black when not inverting');
    const B = prepareImage({ data: b.rgba, width: b.w, height: b.h }, [28, 28, 1]);
    assert.equal(B.inverted, false);
    assert.equal(B.pixels[14 * 28 + 14], 255);
    assert.equal(B.pixels[0], 0);
    const C = prepareImage({ data: c.rgba, width: c.w, height: c.h }, [28, 28, 1]);
    assert.equal(C.pixels[14 * 28 + 14], 124, 'grey 0.299·200 + 0.587·100 + 0.114·50 = 124.2');
    const C3 = prepareImage({ data: c.rgba, width: c.w, height: c.h }, [28, 28, 3]);
    assert.deepEqual([...C3.pixels.subarray(3 * (14 * 28 + 14), 3 * (14 * 28 + 14) + 3)], [200, 100, 50]);
    // Transparent pixels take the background: black here (dark border → not inverted).
    const T = prepareImage({ data: t.rgba, width: t.w, height: t.h }, [28, 28, 3]);
    assert.equal(T.inverted, false);
    assert.deepEqual([...T.pixels.subarray(0, 3)], [0, 0, 0]);
    assert.throws(() => prepareImage({ data: a.rgba, width: a.w, height: a.h }, [28, 28, 2]), /2 channels are not supported/);
    assert.throws(() => prepareImage({ data: a.rgba.subarray(1), width: a.w, height: a.h }, [28, 28, 1]), /needs 6272 bytes/);
  });

  test('a 28×28 grey picture comes back exactly (no resampling, no inversion)', () => {
    const grey = Uint8Array.from({ length: 784 }, (_, i) => (i * 7) & 255);
    const rgba = new Uint8Array(784 * 4);
    for (let i = 0; i < 784; i++) rgba.set([grey[i], grey[i], grey[i], 255], 4 * i);
    assert.deepEqual(prepareImage({ data: rgba, width: 28, height: 28 }, [28, 28, 1], false).pixels, grey);
  });
});

describe('image files: Node (sharp) and the join page (Chromium) give the same rows', () => {
  let browser: Browser;
  before(async () => {
    browser = await launchChromium();
  });
  after(() => browser?.close());

  test('same PNG → same tensor through both paths', { timeout: 60_000 }, async () => {
    const dir = join(tmp, 'both-paths');
    await mkdir(dir, { recursive: true });
    const files: { name: string; bytes: Buffer }[] = [];
    for (const p of PICTURES) {
      const bytes = await png(p.rgba, p.w, p.h);
      await writeFile(join(dir, `${p.name}.png`), bytes);
      files.push({ name: p.name, bytes });
    }
    // The join page's code (client/browser-data.ts) bundled as the SDK bundles it, run in a blank page.
    const bundle = await build({ entryPoints: [resolveRepoPath('client', 'browser-data.ts')], bundle: true, write: false, format: 'iife', globalName: 'browserData', platform: 'browser', logLevel: 'silent' });
    const page = await browser.newPage();
    after(() => page.close());
    await page.addScriptTag({ content: bundle.outputFiles[0].text });
    for (const shape of [[28, 28, 1], [28, 28, 3], [20, 12, 1]] as [number, number, number][]) {
      const inPage = (await page.evaluate(
        `(async () => {
          const files = ${JSON.stringify(files.map((f) => f.bytes.toString('base64')))};
          const items = files.map((b, i) => ({ image: new Blob([Uint8Array.from(atob(b), (c) => c.charCodeAt(0))], { type: 'image/png' }), label: i }));
          const ds = await browserData.datasetFromImages(items, { shape: ${JSON.stringify(shape)}, numClasses: ${files.length} });
          return Array.from(ds.images);
        })()`,
      )) as number[];
      const size = shape[0] * shape[1] * shape[2];
      for (const [i, p] of PICTURES.entries()) {
        const node = await decodeImageFile(join(dir, `${p.name}.png`), shape, 'auto');
        const direct = prepareImage({ data: p.rgba, width: p.w, height: p.h }, shape).pixels;
        assert.deepEqual([...node], [...direct], `${p.name} ${shape}: sharp's decode + prepareImage = prepareImage on the known pixels`);
        assert.deepEqual(inPage.slice(i * size, (i + 1) * size), [...node], `${p.name} ${shape}: Chromium's rows = Node's rows`);
      }
    }
  });
});

describe('image folders', () => {
  /** DIR/<class>/<n>.png from the subset's first images of each class, plus a text file. */
  async function classFolder(dir: string, names: Record<number, string>, perClass: number): Promise<Dataset> {
    const { train } = await loadSubset();
    const rows: number[] = [];
    for (const [cls, name] of Object.entries(names)) {
      await mkdir(join(dir, name), { recursive: true });
      let n = 0;
      for (let i = 0; i < train.count && n < perClass; i++) {
        if (train.labels![i] !== Number(cls)) continue;
        const px = train.images.subarray(i * 784, (i + 1) * 784);
        await writeFile(join(dir, name, `${String(n).padStart(3, '0')}.png`), await sharp(Buffer.from(px), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer());
        rows.push(i);
        n++;
      }
    }
    await writeFile(join(dir, 'notes.txt'), 'not an image');
    return subset(train, rows);
  }

  test('labelled folder → tensor: classes from sorted names, numbers, classes.json or --classes', async () => {
    const dir = join(tmp, 'labelled');
    const expected = await classFolder(dir, { 7: 'sneaker', 1: 'trouser', 8: 'bag' }, 5);
    const got = await readLabelledImageFolder(dir, { invert: false });
    assert.deepEqual(got.classNames, ['bag', 'sneaker', 'trouser'], 'sorted folder names');
    assert.equal(got.dataset.count, 15);
    assert.deepEqual(got.dataset.shape, [28, 28, 1]);
    assert.deepEqual([...got.dataset.labels!], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
    // Rows are the PNGs' pixels exactly (bag rows first: folders in sorted order, files in sorted order).
    const bag = expected.labels!.indexOf(8);
    assert.deepEqual(got.dataset.images.subarray(0, 784), expected.images.subarray(bag * 784, bag * 784 + 784));
    assert.equal(got.files[0], 'bag/000.png');

    const named = await readLabelledImageFolder(dir, { classes: [...FASHION_MNIST_CLASSES], invert: false });
    assert.equal(named.dataset.numClasses, 10);
    assert.deepEqual([...new Set(named.dataset.labels)], [8, 7, 1], 'folder names matched to Fashion-MNIST class names');
    await writeFile(join(dir, 'classes.json'), JSON.stringify(['x', 'trouser', 'y', 'bag', 'sneaker']));
    const fromJson = await readLabelledImageFolder(dir, { invert: false });
    assert.deepEqual(fromJson.classNames, ['x', 'trouser', 'y', 'bag', 'sneaker']);
    assert.deepEqual([...new Set(fromJson.dataset.labels)], [3, 4, 1]);

    const numeric = join(tmp, 'numeric');
    await classFolder(numeric, { 2: '2', 5: '5' }, 2);
    const num = await readLabelledImageFolder(numeric);
    assert.deepEqual(num.classNames, ['0', '1', '2', '3', '4', '5'], 'numeric names are class numbers');
    assert.deepEqual([...num.dataset.labels!], [2, 2, 5, 5]);
  });

  test('clear errors: missing folder, unreadable file (named), empty class, unknown class folder', async () => {
    await assert.rejects(readLabelledImageFolder(join(tmp, 'nope')), /nope: folder not found/);
    const dir = join(tmp, 'bad');
    await classFolder(dir, { 0: 'a', 1: 'b' }, 2);
    await writeFile(join(dir, 'b', 'broken.png'), 'not a png at all');
    await assert.rejects(readLabelledImageFolder(dir), (e: Error) => e.message.includes(join(dir, 'b', 'broken.png')) && /cannot decode/.test(e.message));
    await rm(join(dir, 'b', 'broken.png'));
    await mkdir(join(dir, 'c'));
    await writeFile(join(dir, 'c', 'readme.md'), '#');
    await assert.rejects(readLabelledImageFolder(dir), /class 'c' holds no images; skipped 1 non-image file\(s\), e\.g\. readme\.md/);
    await assert.rejects(readLabelledImageFolder(dir, { classes: ['a', 'b'] }), /folder 'c' is not one of the classes \(a, b\)/);
    await rm(join(dir, 'c'), { recursive: true });
    await mkdir(join(tmp, 'flat'), { recursive: true });
    await assert.rejects(readUnlabelledImageFolder(join(tmp, 'flat'), 10), /no images/);
  });

  test('folder names: an exact match beats an earlier loose one; an ambiguous one and a huge class number are refused', async () => {
    const dir = join(tmp, 'exact-first');
    await classFolder(dir, { 0: 'ab', 1: 'A-B' }, 2);
    // Sorted by code unit: 'A-B' (→ 'a-b' ignoring case) then 'ab' (→ 'ab' exactly, though 'a-b' comes first).
    const got = await readLabelledImageFolder(dir, { classes: ['a-b', 'ab'], invert: false });
    assert.deepEqual([...got.dataset.labels!], [0, 0, 1, 1]);
    await assert.rejects(
      readLabelledImageFolder(dir, { classes: ['a_b', 'a.b'] }),
      (e: Error) => e.message.startsWith(join(dir, 'A-B')) && /matches the classes 'a_b' and 'a\.b' ignoring case and punctuation/.test(e.message),
    );
    await writeFile(join(dir, 'classes.json'), JSON.stringify(['ab', 'x', 'ab']));
    await assert.rejects(readLabelledImageFolder(dir), /classes\.json: "classes" names 'ab' twice/);

    // All-numeric folders: the bound is checked before 10⁸ class names would be made.
    const huge = join(tmp, 'huge-number');
    await classFolder(huge, { 0: '3', 1: '100000000' }, 1);
    await assert.rejects(readLabelledImageFolder(huge), /folder '100000000' names class 100000000, so 100000001 classes; at most 256 are supported/);
  });

  test('idx private data: the class count from --classes, classes.json, the server, else the largest label', { timeout: 60_000 }, async () => {
    const { train } = await loadSubset();
    /** DIR/train-*.gz (+ t10k-*.gz) of 30 subset images whose labels are `label(i)`. */
    const idxFolder = async (name: string, label: (i: number) => number, evalLabel?: (i: number) => number) => {
      const dir = join(tmp, name);
      const rows = subset(train, Uint32Array.from({ length: 30 }, (_, i) => i));
      await writeIdx(dir, 'train', { ...rows, labels: Uint8Array.from({ length: 30 }, (_, i) => label(i)) });
      if (evalLabel) await writeIdx(dir, 't10k', { ...rows, labels: Uint8Array.from({ length: 30 }, (_, i) => evalLabel(i)) });
      return dir;
    };
    const fifteen = await idxFolder('idx-15', (i) => i % 15);
    const five = await idxFolder('idx-5', (i) => i % 5);
    const a = await loadPrivateData(fifteen);
    assert.equal(a.train.numClasses, 15, 'no names anywhere: the largest label + 1 (not a fixed 10)');
    assert.equal(a.classNames, null);
    assert.equal((await loadPrivateData(five)).train.numClasses, 5);
    const withEval = await loadPrivateData(await idxFolder('idx-5-eval7', (i) => i % 5, (i) => i % 7));
    assert.deepEqual([withEval.train.numClasses, withEval.eval!.numClasses], [7, 7], 'train and t10k agree on the count');

    await writeFile(join(five, 'classes.json'), JSON.stringify(['a', 'b', 'c', 'd', 'e', 'f']));
    const named = await loadPrivateData(five);
    assert.deepEqual([named.train.numClasses, named.classNames], [6, ['a', 'b', 'c', 'd', 'e', 'f']]);
    await assert.rejects(loadPrivateData(five, { classes: ['x', 'y', 'z'] }), /label [34] at index \d+ is out of range for 3 classes \(the 3 classes of --classes\)/);
    await rm(join(five, 'classes.json'));

    // No names given: the server's (GET /federation), so hello's per-class counts have the server's length.
    const bench = await startBench(1);
    try {
      const fromServer = await loadPrivateData(five, { serverUrl: bench.url });
      assert.equal(fromServer.train.numClasses, 10);
      assert.equal(fromServer.classNames?.length, 10, "the server's names");
      await assert.rejects(
        loadPrivateData(fifteen, { serverUrl: bench.url }),
        /label 1[0-4] at index \d+ is out of range for 10 classes \(the 10 classes of http:\/\/127\.0\.0\.1:\d+\/federation\)/,
      );
    } finally {
      await bench.agg.close();
    }
  });

  test('format detection: idx files, class folders, neither', async () => {
    const idxDir = join(tmp, 'idx-client');
    const { train } = await loadSubset();
    await writeIdx(idxDir, 'train', subset(train, Uint32Array.from({ length: 50 }, (_, i) => i)));
    assert.equal(detectDataFormat(idxDir), 'idx');
    const lines: string[] = [];
    const a = await loadPrivateData(idxDir, { log: (m) => lines.push(m) });
    assert.equal(a.format, 'idx');
    assert.equal(a.train.count, 50);
    assert.match(lines.join('\n'), /idx files, 50 labelled images/);

    const imgDir = join(tmp, 'img-client');
    await classFolder(imgDir, { 3: 'Dress', 9: 'Ankle boot' }, 3);
    await writeFile(join(imgDir, 'classes.json'), JSON.stringify({ classes: FASHION_MNIST_CLASSES, invert: false }));
    assert.equal(detectDataFormat(imgDir), 'images');
    lines.length = 0;
    const b = await loadPrivateData(imgDir, { log: (m) => lines.push(m) });
    assert.equal(b.format, 'images');
    assert.equal(b.train.numClasses, 10);
    assert.deepEqual([...new Set(b.train.labels)], [9, 3]);
    assert.match(lines.join('\n'), /class sub-folders of images/);
    assert.match(lines.join('\n'), /6 labelled images: Dress 3, Ankle boot 3/);

    // Without classes.json the client asks the aggregator (GET /federation) what the classes are.
    const numbered = join(tmp, 'numbered-client');
    await classFolder(numbered, { 2: '2', 7: '7' }, 2);
    const bench = await startBench(1);
    try {
      lines.length = 0;
      const c = await loadPrivateData(numbered, { serverUrl: bench.url, log: (m) => lines.push(m) });
      assert.equal(c.train.numClasses, 10, "the server's 10 classes, not the 8 the folder names imply");
      assert.deepEqual([...c.train.labels!], [2, 2, 7, 7]);
      assert.match(lines.join('\n'), /class names from http:\/\/127\.0\.0\.1:\d+\/federation/);
    } finally {
      await bench.agg.close();
    }
    lines.length = 0;
    const alone = await loadPrivateData(numbered, { serverUrl: bench.url, serverWaitMs: 1200, log: (m) => lines.push(m) });
    assert.equal(alone.train.numClasses, 8, 'no server: the folder names');
    assert.match(lines.join('\n'), /did not answer; the classes are the sorted folder names/);

    const empty = join(tmp, 'empty-client');
    await mkdir(empty);
    assert.throws(() => detectDataFormat(empty), /holds neither idx files .* nor class sub-folders of images/);
    assert.throws(() => detectDataFormat(join(tmp, 'absent')), /folder not found/);
  });
});

/** Loader options that find nothing but the committed subset (no cache, no system copy, no download). */
const subsetOnly = () => ({ download: false, systemDirs: [], cacheDir: join(tmp, 'empty-cache') });

describe('fedistill split', () => {
  const base = (out: string, o: Partial<SplitOptions> = {}): SplitOptions => ({
    source: { kind: 'fashion-mnist' },
    out,
    clients: 3,
    partition: 'dirichlet',
    alpha: 0.5,
    shardsPerClient: 2,
    seed: 4,
    proxySize: 300,
    format: 'images',
    fashionMnist: subsetOnly(),
    log: quiet,
    ...o,
  });
  const listing = (dir: string): string[] =>
    readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name).slice(dir.length))
      .sort();
  /** The multiset of rows, as hashes, of a dataset. */
  const rowHashes = (ds: Dataset) => Array.from({ length: ds.count }, (_, i) => sha256(ds.images.subarray(i * sampleSize(ds), (i + 1) * sampleSize(ds))) + (ds.labels ? `/${ds.labels[i]}` : ''));

  test('deterministic per seed; clients and proxy are disjoint and cover the training set', { timeout: 120_000 }, async () => {
    // Source: 1,500 rows of the subset as idx files (small enough to split three times).
    const full = (await loadSubset()).train;
    const train = subset(full, Uint32Array.from({ length: 1500 }, (_, i) => i));
    const src = await writeIdx(join(tmp, 'split-src'), 'train', train);
    const o: Partial<SplitOptions> = { source: { kind: 'idx', images: src.images, labels: src.labels! }, classes: [...FASHION_MNIST_CLASSES] };
    const [a, b, c] = [join(tmp, 'split-a'), join(tmp, 'split-b'), join(tmp, 'split-c')];
    const ma = await splitToFolders(base(a, o));
    await splitToFolders(base(b, o));
    const mc = await splitToFolders(base(c, { ...o, seed: 5 }));
    assert.deepEqual(listing(a), listing(b), 'same files for the same seed');
    assert.equal(readFileSync(join(a, 'federation.json'), 'utf8'), readFileSync(join(b, 'federation.json'), 'utf8'));
    for (const f of listing(a).filter((f) => f.endsWith('.png')).slice(0, 200)) assert.deepEqual(readFileSync(join(a, f)), readFileSync(join(b, f)), f);
    assert.notDeepEqual(mc.clients.map((x) => x.count), ma.clients.map((x) => x.count), 'another seed, another split');

    assert.equal(ma.proxy.count, 300);
    assert.equal(ma.clients.reduce((s, x) => s + x.count, 0) + 300, 1500);
    assert.deepEqual(ma.classes, [...FASHION_MNIST_CLASSES]);
    assert.equal(ma.validation.count, 0, 'an idx source has no test set');
    const manifest = JSON.parse(readFileSync(join(a, 'federation.json'), 'utf8'));
    assert.deepEqual(manifest.partition, { kind: 'dirichlet', alpha: 0.5 });
    assert.deepEqual(manifest.clients.map((x: { count: number }) => x.count), ma.clients.map((x) => x.count));
    assert.ok(existsSync(join(a, 'client-0', 'T-shirt_top')), 'class folders named after the classes, made file-safe');

    // Read back as the client and the server would: every training row is in exactly one place.
    const parts: Dataset[] = [];
    for (const [i, cl] of ma.clients.entries()) {
      const got = await loadPrivateData(join(a, `client-${i}`));
      assert.equal(got.train.count, cl.count);
      assert.deepEqual(got.train.numClasses, 10);
      parts.push(got.train);
    }
    const proxy = (await readUnlabelledImageFolder(join(a, 'proxy'), 10)).dataset;
    const labelled = parts.flatMap(rowHashes);
    const all = rowHashes(train);
    const proxyRowsHashes = rowHashes(proxy);
    const trainUnlabelled = rowHashes({ ...train, labels: null });
    assert.deepEqual([...labelled, ...proxyRowsHashes.map((h) => `${h}/proxy`)].length, all.length);
    // Clients' (image, label) pairs plus the proxy's images are exactly the training set's, counted with multiplicity.
    const count = (xs: string[]) => xs.reduce((m, x) => m.set(x, (m.get(x) ?? 0) + 1), new Map<string, number>());
    const proxyIdx = proxyRows(1500, 300, 4);
    const expectedClients = count(all.filter((_, i) => !proxyIdx.includes(i)));
    assert.deepEqual(count(labelled), expectedClients);
    assert.deepEqual(proxyRowsHashes, Array.from(proxyIdx, (i) => trainUnlabelled[i]), 'the proxy rows, in row order');
  });

  test('the proxy hash is the same via an image folder, an idx file and fashion-mnist:N; and stable', { timeout: 120_000 }, async () => {
    const [imgOut, idxOut] = [join(tmp, 'hash-img'), join(tmp, 'hash-idx')];
    await splitToFolders(base(imgOut, { seed: 1, clients: 2, proxySize: 500 }));
    await splitToFolders(base(idxOut, { seed: 1, clients: 2, proxySize: 500, format: 'idx' }));
    const opts = { seed: 1, log: quiet, fashionMnist: subsetOnly() };
    const viaFolder = await loadServerData({ ...opts, proxy: `images:${join(imgOut, 'proxy')}`, validation: `images:${join(imgOut, 'validation')}` });
    const viaIdx = await loadServerData({
      ...opts,
      proxy: `idx:${join(idxOut, 'proxy', 'proxy-images-idx3-ubyte.gz')}`,
      validation: `idx:${join(idxOut, 'validation', 't10k-images-idx3-ubyte.gz')},${join(idxOut, 'validation', 't10k-labels-idx1-ubyte.gz')}`,
    });
    const viaFm = await loadServerData({ ...opts, proxy: 'fashion-mnist:500' });
    const hashes = [viaFolder, viaIdx, viaFm].map((d) => sha256(d.proxy.dataset.images));
    assert.equal(new Set(hashes).size, 1, `one hash: ${hashes.join(' ')}`);
    // sha256 of the decoded bytes of rows proxyRows(6000, 500, seed 1) of the committed subset: changes only if the
    // proxy definition, the split or the subset changes.
    assert.equal(hashes[0], sha256(subset((await loadSubset()).train, proxyRows(6000, 500, 1)).images));
    for (const d of [viaFolder, viaIdx, viaFm]) {
      assert.deepEqual(d.classNames, [...FASHION_MNIST_CLASSES]);
      assert.equal(d.proxy.dataset.numClasses, 10);
      assert.equal(d.proxy.dataset.labels, null);
      assert.equal(d.validation!.dataset.count, 2000);
    }
    // The validation folder's rows come class folder by class folder; the same (image, label) pairs as the idx files.
    assert.deepEqual(rowHashes(viaFolder.validation!.dataset).sort(), rowHashes(viaIdx.validation!.dataset).sort());
    assert.match(viaFolder.proxy.id, /^images-proxy-500$/);
    assert.match(viaIdx.proxy.id, /^idx-proxy-images-idx3-ubyte-500$/);
    assert.equal(viaFm.proxy.id, 'fashion-mnist-500');
  });

  test('class names that would share a folder (or read back ambiguously) are refused before anything is written', async () => {
    const { train } = await loadSubset();
    const rows = Uint32Array.from([...train.labels!].flatMap((y, i) => (y < 2 ? [i] : [])).slice(0, 60));
    const src = await writeIdx(join(tmp, 'two-class-src'), 'train', { ...subset(train, rows), numClasses: 2 });
    const o = (classes: string[], out: string, format: 'images' | 'idx' = 'images') =>
      base(out, { source: { kind: 'idx', images: src.images, labels: src.labels! }, classes, clients: 2, proxySize: 10, format });
    const cases: [string[], RegExp][] = [
      [['a/b', 'a_b'], /--format images: classes 'a\/b' and 'a_b' would be written to the same folder \('a_b'\); rename one of them/],
      [['Cat', 'cat'], /classes 'Cat' and 'cat' would be written to the same folder \('Cat' \/ 'cat', equal ignoring case\)/],
      [['a/b', 'ab'], /class 'a\/b' would be written to a folder that reads back ambiguously: folder 'a_b' matches the classes 'a\/b' and 'ab'/],
    ];
    for (const [i, [classes, refusal]] of cases.entries()) {
      const out = join(tmp, `clash-${i}`);
      await assert.rejects(splitToFolders(o(classes, out)), refusal);
      assert.equal(existsSync(out), false, 'nothing written');
    }
    // idx files have no class folders: the same names are fine there.
    const m = await splitToFolders(o(['a/b', 'a_b'], join(tmp, 'clash-idx'), 'idx'));
    assert.deepEqual(m.classes, ['a/b', 'a_b']);
  });

  test('from a user image folder: classes from its folders, refusal of a non-empty --out', { timeout: 60_000 }, async () => {
    const src = join(tmp, 'user-src');
    const { train } = await loadSubset();
    for (const [cls, name] of [[0, 'cat'], [1, 'dog']] as const) {
      await mkdir(join(src, name), { recursive: true });
      let n = 0;
      for (let i = 0; i < train.count && n < 40; i++) {
        if (train.labels![i] !== cls) continue;
        await writeFile(join(src, name, `${n++}.png`), await sharp(Buffer.from(train.images.subarray(i * 784, i * 784 + 784)), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer());
      }
    }
    const out = join(tmp, 'user-split');
    const user = { source: { kind: 'images', dir: src }, clients: 2, partition: 'iid', proxySize: undefined } as const;
    const m = await splitToFolders(base(out, user));
    assert.deepEqual(m.classes, ['cat', 'dog']);
    assert.equal(m.proxy.count, 13, 'default proxy size on a small set: a sixth of 80 rows');
    assert.equal(m.validation.path, null);
    assert.deepEqual(m.clients.map((c) => c.count), [33, 34]);
    const got = await loadPrivateData(join(out, 'client-1'));
    assert.deepEqual(got.classNames, ['cat', 'dog']);
    await assert.rejects(splitToFolders(base(out, user)), /is not empty; choose another folder or pass --force/);
    const again = await splitToFolders(base(out, { ...user, seed: 9, force: true }));
    assert.notDeepEqual(again.clients.map((c) => c.classCounts), m.clients.map((c) => c.classCounts), '--force replaced the earlier split');
    await writeFile(join(out, 'mine.txt'), 'x');
    await assert.rejects(splitToFolders(base(out, { ...user, force: true })), /holds mine\.txt, which fedistill split did not write/);
  });
});

describe('specs and the subset fallback', () => {
  test('spec parsing: clear errors', () => {
    assert.deepEqual(parseProxySpec('fashion-mnist'), { kind: 'fashion-mnist' });
    assert.deepEqual(parseProxySpec('fashion-mnist:300'), { kind: 'fashion-mnist', size: 300 });
    assert.deepEqual(parseProxySpec('images:./x'), { kind: 'images', dir: './x' });
    assert.deepEqual(parseValidationSpec('idx:a.gz,b.gz'), { kind: 'idx', images: 'a.gz', labels: 'b.gz' });
    assert.throws(() => parseProxySpec('mnist:3'), /--proxy must be fashion-mnist\[:N\] \| images:DIR \| idx:FILE \(got 'mnist:3'\)/);
    assert.throws(() => parseProxySpec('fashion-mnist:x'), /N must be a positive integer/);
    assert.throws(() => parseValidationSpec('idx:a.gz'), /idx needs two files, IMAGES,LABELS/);
  });

  test('missing folders and files are named with their flag', async () => {
    const opts = { seed: 1, log: quiet, fashionMnist: subsetOnly() };
    await assert.rejects(loadServerData({ ...opts, proxy: 'images:./x-does-not-exist' }), /--proxy images:\.\/x-does-not-exist: folder not found/);
    await assert.rejects(loadServerData({ ...opts, proxy: 'idx:./nope.gz' }), /--proxy idx:\.\/nope\.gz: file not found/);
    await assert.rejects(loadServerData({ ...opts, proxy: 'fashion-mnist:100', validation: 'images:./v-nope' }), /--validation images:\.\/v-nope: folder not found/);
    const unlabelled = join(tmp, 'unlabelled');
    await mkdir(unlabelled, { recursive: true });
    await writeFile(join(unlabelled, 'a.png'), await png(PICTURES[0].rgba, PICTURES[0].w, PICTURES[0].h));
    await assert.rejects(loadServerData({ ...opts, proxy: `images:${unlabelled}`, validation: 'none' }), /the number of classes is unknown — give --classes/);
    const ok = await loadServerData({ ...opts, proxy: `images:${unlabelled}`, validation: 'none', classes: ['a', 'b', 'c'] });
    assert.equal(ok.proxy.dataset.numClasses, 3);
    assert.equal(ok.validation, null);
  });

  test('no full set and no network: the default proxy is scaled to the subset, loudly; an explicit one is refused', async () => {
    const lines: string[] = [];
    const opts = { seed: 1, log: (m: string) => lines.push(m), fashionMnist: subsetOnly() };
    const d = await loadServerData(opts);
    assert.equal(d.fashionMnist?.isSubset, true);
    assert.equal(d.proxy.dataset.count, 1000);
    assert.equal(d.validation!.dataset.count, 2000);
    assert.match(lines.join('\n'), /SUBSET: 6000 train \/ 2000 test images[^\n]*\ndata: no full Fashion-MNIST on this machine/);
    assert.match(lines.join('\n'), /SUBSET: proxy size scaled 10000 → 1000/);
    await assert.rejects(loadServerData({ ...opts, proxy: 'fashion-mnist:10000' }), /proxy size 10000 must be smaller than the training set \(6000\) — this is the committed Fashion-MNIST SUBSET/);
    assert.equal(fitProxySize({ trainCount: 60000, isSubset: false, log: quiet }), 10000);
    assert.equal(fitProxySize({ requested: 5999, trainCount: 6000, isSubset: true, log: quiet }), 5999);
  });

  /** Runs `fn` with the environment of a machine that has no Fashion-MNIST and no network. */
  async function offline<T>(fn: () => Promise<T>): Promise<T> {
    const keys = ['FEDISTILL_OFFLINE', 'FEDISTILL_SYSTEM_DATA_DIRS', 'XDG_CACHE_HOME'] as const;
    const saved = keys.map((k) => process.env[k]);
    Object.assign(process.env, { FEDISTILL_OFFLINE: '1', FEDISTILL_SYSTEM_DATA_DIRS: '', XDG_CACHE_HOME: join(tmp, 'xdg') });
    try {
      return await fn();
    } finally {
      keys.forEach((k, i) => (saved[i] === undefined ? delete process.env[k] : (process.env[k] = saved[i])));
    }
  }

  test('FEDISTILL_OFFLINE and FEDISTILL_SYSTEM_DATA_DIRS reach the subset with no options at all', async () => {
    const lines: string[] = [];
    const d = await offline(() => loadServerData({ seed: 1, log: (m) => lines.push(m) }));
    assert.equal(d.fashionMnist?.dir, SUBSET_DIR());
    assert.match(lines.join('\n'), /download disabled \(FEDISTILL_OFFLINE\)/);
    assert.ok(!lines.some((l) => l.includes('/usr/share/datasets')), 'no system directory was tried');
  });

  test('the simulator (npm run demo) runs to the end on the subset, its defaults scaled; an explicit size is refused', { timeout: 180_000 }, async () => {
    const lines: string[] = [];
    const small: Partial<SimulationOptions> = { rounds: 1, clients: 2, models: ['mlp'], student: 'mlp', workers: 1, localEpochs: 1, distillEpochs: 1, clientEvalSize: 0, log: (m) => lines.push(m) };
    const r = await offline(() => runSimulation(small));
    assert.equal(r.data.isSubset, true);
    assert.equal(r.data.train, 6000);
    assert.equal(r.data.proxy, 1000, 'proxy 10000 → a sixth of 6000');
    assert.equal(r.options.proxySubset, 1000, 'rows per round lowered to the whole proxy set');
    assert.equal(r.rounds.length, 1);
    assert.equal(typeof r.summary.finalStudentAccuracy, 'number');
    const text = lines.join('\n');
    assert.match(text, /SUBSET: 6000 train \/ 2000 test images[^\n]*\ndata: no full Fashion-MNIST on this machine/);
    assert.match(text, /SUBSET: proxy size scaled 10000 → 1000/);
    assert.match(text, /proxy rows per round scaled 4500 → 1000/);
    await assert.rejects(
      offline(() => runSimulation({ ...small, proxySize: 10000, log: quiet })),
      /proxy size 10000 must be smaller than the training set \(6000\) — this is the committed Fashion-MNIST SUBSET/,
    );
  });
});
