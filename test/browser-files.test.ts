/**
 * A person's own image files in real Chromium (Debian's, driven by playwright-core): PNG and JPEG files made in the
 * browser are picked on /join with the "Files…" input (one chosen class) and the folder input (one sub-folder per
 * class), decoded in the page, trained on next to a Node client for a real round, and only logits leave the page.
 * Then datasetFromImages and labelFromPath from the served bundle, on images with known pixels.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, recordWire } from './chromium.ts';
import type { Dataset } from '../shared/data/dataset.ts';
import { FASHION_MNIST_CLASSES } from '../datasets/fashion-mnist.ts';
import { makeClient, roundsDone, startBench, TOKEN } from './helpers.ts';
import { assertOnlyLogitsOnWire } from './wire.ts';

let browser: Browser;

before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

/** Console errors and uncaught exceptions of a page, to report (and to fail on the uncaught ones). */
function watch(page: Page): { console: string[]; uncaught: string[] } {
  const seen = { console: [] as string[], uncaught: [] as string[] };
  page.on('console', (m) => m.type() === 'error' && seen.console.push(m.text()));
  page.on('pageerror', (e) => seen.uncaught.push(e.message));
  return seen;
}

// Page code is passed as strings: the test's own transpiler would add helpers (__name) the page does not have.
const B64 = `const b64 = (u) => { let s = ''; for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode(...u.subarray(i, i + 0x8000)); return btoa(s); };`;

interface Spec { cls: number; w: number; h: number; light: boolean; type: 'image/png' | 'image/jpeg' }

/** Draw each spec's shape (1: vertical bar, 3: disc, 7: an X) on an OffscreenCanvas and encode it: the files' bytes. */
const drawImages = (specs: Spec[]) => `(async () => {
  ${B64}
  const out = [];
  for (const s of ${JSON.stringify(specs)}) {
    const c = new OffscreenCanvas(s.w, s.h);
    const g = c.getContext('2d');
    g.fillStyle = s.light ? '#f4f4f4' : '#0c0c0c';
    g.fillRect(0, 0, s.w, s.h);
    g.fillStyle = g.strokeStyle = s.light ? '#1a1a1a' : '#e6e6e6';
    const m = Math.min(s.w, s.h), cx = s.w / 2, cy = s.h / 2;
    if (s.cls === 1) g.fillRect(cx - m * 0.13, cy - m * 0.42, m * 0.26, m * 0.84);
    else if (s.cls === 3) { g.beginPath(); g.arc(cx, cy, m * 0.36, 0, 2 * Math.PI); g.fill(); }
    else {
      g.lineWidth = m * 0.16; g.lineCap = 'round'; g.beginPath();
      g.moveTo(cx - m * 0.36, cy - m * 0.36); g.lineTo(cx + m * 0.36, cy + m * 0.36);
      g.moveTo(cx + m * 0.36, cy - m * 0.36); g.lineTo(cx - m * 0.36, cy + m * 0.36); g.stroke();
    }
    const blob = await c.convertToBlob({ type: s.type });
    out.push({ type: blob.type, b64: b64(new Uint8Array(await blob.arrayBuffer())) });
  }
  return out;
})()`;

const SIZES: [number, number][] = [[64, 48], [40, 40], [48, 64], [33, 33], [80, 36]];
const specsFor = (cls: number, n: number): Spec[] =>
  Array.from({ length: n }, (_, i) => ({ cls, w: SIZES[i % 5][0], h: SIZES[i % 5][1], light: (i >> 1) % 2 === 0, type: i % 2 ? 'image/jpeg' : 'image/png' }));

test('a person joins with their own image files', { timeout: 90_000 }, async () => {
  const t0 = Date.now();
  const b = await startBench(2, { rounds: 1, minClients: 2, localEpochs: 1, proxySubset: 200 });
  after(() => b.agg.close());
  const uploads: { clientId: string; round: number }[] = [];
  b.agg.coordinator.on('upload', (u: { clientId: string; round: number }) => uploads.push(u));
  const ctx = await browser.newContext();
  after(() => ctx.close());
  const wire = new Map<string, (string | Uint8Array)[]>();
  await recordWire(ctx, wire);

  // Real PNG and JPEG files, made by Chromium's encoders: 10 per class, sizes and polarity varying.
  const maker = await ctx.newPage();
  await maker.goto(`${b.url}/federation`);
  const PER = 10;
  const made = (await maker.evaluate(drawImages([...specsFor(1, PER), ...specsFor(3, PER), ...specsFor(7, PER)]))) as { type: string; b64: string }[];
  await maker.close();
  const files = made.map((m, i) => ({ cls: [1, 3, 7][Math.floor(i / PER)], ext: m.type === 'image/png' ? 'png' : 'jpg', mimeType: m.type, buffer: Buffer.from(m.b64, 'base64') }));
  for (const f of files) {
    if (f.ext === 'png') assert.equal(f.buffer.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'a real PNG');
    else assert.equal(f.buffer.subarray(0, 3).toString('hex'), 'ffd8ff', 'a real JPEG');
  }
  assert.deepEqual(new Set(files.map((f) => f.ext)), new Set(['png', 'jpg']));

  // Class 1 as loose files; classes 3 and 7 as a folder with a sub-folder per class (numeric names: the bench's
  // classes are '0'..'9'), plus a text file (ignored: not an image) and an image in no class folder (skipped).
  const dir = mkdtempSync(join(tmpdir(), 'fedistill-files-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const root = join(dir, 'photos');
  for (const c of ['3', '7', 'misc']) mkdirSync(join(root, c), { recursive: true });
  files.forEach((f, i) => f.cls !== 1 && writeFileSync(join(root, String(f.cls), `img-${i}.${f.ext}`), f.buffer));
  writeFileSync(join(root, 'notes.txt'), 'my photos\n');
  writeFileSync(join(root, 'misc', `stray.${files[0].ext}`), files[0].buffer);

  const node = makeClient(b, 0);
  after(() => node.stop());
  await node.start();

  const page = await ctx.newPage();
  const seen = watch(page);
  await page.goto(`${b.url}/join?id=web-files&model=mlp#token=${TOKEN}`);
  await page.waitForSelector('#files-class option[value="9"]', { state: 'attached', timeout: 10_000 });
  await page.selectOption('#files-class', '1');
  const loose = files.filter((f) => f.cls === 1);
  await page.setInputFiles('#pick-files', loose.map((f, i) => ({ name: `shirt-${i}.${f.ext}`, mimeType: f.mimeType, buffer: f.buffer })));
  assert.equal(await page.textContent('#files-summary'), `${PER} images: 1 ${PER}`);
  // Class 1 is still chosen: a folder pick ignores it, its folders name the classes.
  await page.setInputFiles('#pick-folder', root); // playwright ≥ 1.45 uploads a directory into a webkitdirectory input
  const paths = await page.$eval('#pick-folder', (el) => Array.from((el as HTMLInputElement).files!).map((f) => `${f.webkitRelativePath} ${f.type}`).sort());
  assert.ok(paths.includes('photos/3/img-10.png image/png') && paths.includes('photos/notes.txt text/plain'), `folder pick kept relative paths: ${paths.join(', ')}`);
  const total = 3 * PER;
  assert.equal(await page.textContent('#files-summary'), `${total} images: 1 ${PER}, 3 ${PER}, 7 ${PER} (1 skipped: no folder in their path names a class)`);

  await page.click('#start');
  await roundsDone(b, 1, 45_000).catch(async (e) => {
    console.log(await page.evaluate(() => `${document.body.dataset.state}: ${document.getElementById('log')!.textContent}`));
    throw e;
  });
  const h = b.agg.coordinator.history[0];
  assert.equal(h.status, 'completed');
  assert.equal(h.participants, 2, 'the page and the Node client both uploaded');
  assert.deepEqual(new Set(uploads.filter((u) => u.round === 1).map((u) => u.clientId)), new Set(['c0', 'web-files']));
  await page.waitForFunction(() => Number(document.body.dataset.uploads ?? 0) >= 1, null, { timeout: 10_000 });
  const held = total - Math.min(total - 1, Math.round(total * 0.15));
  assert.equal(await page.textContent('#samples'), `${held} (+${total - held} held out to measure)`);

  // What the page decoded, read back from its private IndexedDB store (it never left the page).
  const kept = (await page.evaluate(`new Promise((resolve, reject) => {
    ${B64}
    const r = indexedDB.open('fedistill-private', 1);
    r.onerror = () => reject(r.error);
    r.onsuccess = () => {
      const g = r.result.transaction('data').objectStore('data').get('current');
      g.onerror = () => reject(g.error);
      g.onsuccess = () => { const d = g.result; resolve({ images: b64(d.images), labels: Array.from(d.labels), count: d.count, shape: d.shape, numClasses: d.numClasses }); };
    };
  })`)) as { images: string; labels: number[]; count: number; shape: [number, number, number]; numClasses: number };
  const priv: Dataset = { images: new Uint8Array(Buffer.from(kept.images, 'base64')), labels: Uint8Array.from(kept.labels), count: kept.count, shape: kept.shape, numClasses: kept.numClasses };
  assert.equal(priv.count, total);
  assert.deepEqual(priv.shape, [28, 28, 1]);
  assert.equal(priv.images.length, total * 784);
  assert.deepEqual([1, 3, 7].map((c) => kept.labels.filter((l) => l === c).length), [PER, PER, PER]);
  // Every image, light or dark background, letterboxed or not, ends a light object on black (Fashion-MNIST's look).
  for (let i = 0; i < total; i++) {
    const px = priv.images.subarray(i * 784, (i + 1) * 784);
    const corners = [px[0], px[27], px[27 * 28], px[783]];
    assert.ok(corners.every((v) => v < 40), `image ${i} (class ${priv.labels![i]}): corners ${corners} should be dark`);
    assert.ok(px[14 * 28 + 14] > 150, `image ${i} (class ${priv.labels![i]}): centre ${px[14 * 28 + 14]} should be light`);
  }

  const frames = assertOnlyLogitsOnWire(wire.get('web-files') ?? [], priv, { proxyRows: 200 });
  const hello = frames.find((f) => f.type === 'hello')!;
  assert.ok(hello, 'the page said hello');
  assert.equal(hello.numSamples, held, 'hello counts the picked images less the 15% hold-out');
  const counts = Array.from(hello.classCounts as ArrayLike<number>);
  assert.equal(counts.reduce((a, c) => a + c, 0), held);
  assert.deepEqual(counts.map((c, i) => (c > 0 ? i : -1)).filter((i) => i >= 0), [1, 3, 7]);
  const logits = frames.filter((f) => f.type === 'logits');
  assert.equal(logits.length, 1);
  assert.equal(typeof logits[0].stats.evalAccuracy, 'number', 'the held-out images measured the local model');
  if (seen.console.length) console.log(`# join page console errors: ${seen.console.join(' | ')}`);
  assert.deepEqual(seen.uncaught, [], 'no uncaught errors in the page');
  console.log(`# own files: ${total} images picked, ${held} trained on, round 1 with the Node client in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

test('datasetFromImages decodes, letterboxes and inverts as documented; labelFromPath finds the class folder', { timeout: 30_000 }, async () => {
  const b = await startBench(1, { rounds: 1, minClients: 1 });
  after(() => b.agg.close());
  const ctx = await browser.newContext();
  after(() => ctx.close());
  const page = await ctx.newPage();
  const seen = watch(page);
  await page.goto(`${b.url}/federation`);
  const r = (await page.evaluate(`(async () => {
    const sdk = await import(${JSON.stringify(`${b.url}/sdk/fedistill.js`)});
    const png = async (w, h, bg, fg, x, y, fw, fh) => {
      const c = new OffscreenCanvas(w, h);
      const g = c.getContext('2d');
      g.fillStyle = bg; g.fillRect(0, 0, w, h);
      g.fillStyle = fg; g.fillRect(x, y, fw, fh);
      return c.convertToBlob({ type: 'image/png' });
    };
    // A: white 56×28 with a black 20×20 square (light background: inverted, letterboxed top and bottom).
    const a = await png(56, 28, '#fff', '#000', 18, 4, 20, 20);
    // B: black 10×10 with a white 4×4 centre (dark background: kept; upscaled, no letterbox).
    const bb = await png(10, 10, '#000', '#fff', 3, 3, 4, 4);
    // C: black 28×28 with an rgb(200,100,50) square: grey 0.299·200 + 0.587·100 + 0.114·50 = 124.2.
    const c = await png(28, 28, '#000', 'rgb(200,100,50)', 8, 8, 12, 12);
    const junk = new Blob(['not an image at all'], { type: 'text/plain' });
    const progress = [];
    const ds = await sdk.datasetFromImages([{ image: a, label: 0 }, { image: junk, label: 5 }, { image: bb, label: 1 }, { image: c, label: 2 }],
      { shape: [28, 28, 1], numClasses: 10, onProgress: (d, t) => progress.push(d + '/' + t) });
    const forced = await sdk.datasetFromImages([{ image: a, label: 0 }], { shape: [28, 28, 1], numClasses: 10, invert: false });
    const rgb = await sdk.datasetFromImages([{ image: c, label: 2 }], { shape: [28, 28, 3], numClasses: 10 });
    const err = async (p) => { try { await p; return null; } catch (e) { return e.message; } };
    const garbage = await err(sdk.datasetFromImages([{ image: junk, label: 0 }, { image: new Blob([new Uint8Array([137, 80, 78, 71, 1, 2, 3])], { type: 'image/png' }), label: 1 }], { shape: [28, 28, 1], numClasses: 10 }));
    const badLabel = await err(sdk.datasetFromImages([{ image: a, label: 10 }], { shape: [28, 28, 1], numClasses: 10 }));
    const badChannels = await err(sdk.datasetFromImages([{ image: a, label: 0 }], { shape: [28, 28, 2], numClasses: 10 }));
    const names = ${JSON.stringify(FASHION_MNIST_CLASSES)};
    const digits = Array.from({ length: 10 }, (_, i) => String(i));
    const paths = ['photos/Sneaker/1.jpg', 'photos/sneaker/1.jpg', 'PHOTOS/SNEAKER/x.png', 'Bag/Sneaker/1.jpg', 'Sneaker/misc/1.jpg', ' coat /a.png', '2/a.png', 'photos/9/a.png', 'photos/12/a.png', 'photos/a.png', 'a.png', 'Sneaker.jpg', 'shots/T-shirt_top/1.png'];
    return {
      ds: { images: Array.from(ds.images), labels: Array.from(ds.labels), count: ds.count, shape: ds.shape, numClasses: ds.numClasses },
      forced: Array.from(forced.images), rgb: Array.from(rgb.images), progress, garbage, badLabel, badChannels,
      named: paths.map((p) => sdk.labelFromPath(p, names)), numbered: paths.map((p) => sdk.labelFromPath(p, digits)),
    };
  })()`)) as {
    ds: { images: number[]; labels: number[]; count: number; shape: number[]; numClasses: number };
    forced: number[]; rgb: number[]; progress: string[]; garbage: string | null; badLabel: string | null; badChannels: string | null;
    named: (number | null)[]; numbered: (number | null)[];
  };
  const px = (img: number, y: number, x: number) => r.ds.images[img * 784 + y * 28 + x];

  assert.equal(r.ds.count, 3, 'the non-image blob is skipped');
  assert.deepEqual(r.ds.shape, [28, 28, 1]);
  assert.equal(r.ds.numClasses, 10);
  assert.equal(r.ds.images.length, 3 * 784);
  assert.deepEqual(r.ds.labels, [0, 1, 2]);
  assert.deepEqual(r.progress, ['1/4', '2/4', '3/4', '4/4'], 'progress counts every file, the skipped one too');

  // A: scaled ×0.5 to 28×14 at rows 7..20; white background inverted to 0, the black square (rows 9..18, cols 9..18) to 255.
  assert.equal(px(0, 14, 14), 255, 'A: the dark object became light');
  assert.equal(px(0, 8, 1), 0, 'A: its light background became black');
  assert.equal(px(0, 19, 26), 0, 'A: its light background became black');
  for (const [y, x] of [[0, 0], [3, 14], [6, 27], [21, 5], [27, 27]]) assert.equal(px(0, y, x), 0, `A: letterbox padding at (${y},${x}) is black`);
  // B: ×2.8, no letterbox, not inverted.
  for (const [y, x] of [[0, 0], [0, 27], [27, 0], [27, 27], [14, 1]]) assert.ok(px(1, y, x) < 10, `B: dark border kept dark at (${y},${x}): ${px(1, y, x)}`);
  assert.ok(px(1, 14, 14) > 245, `B: light centre kept light: ${px(1, 14, 14)}`);
  // C: 1:1, grey conversion by ITU-R BT.601 weights.
  assert.equal(px(2, 14, 14), 124, 'C: rgb(200,100,50) → grey 124');
  assert.equal(px(2, 2, 2), 0);
  // invert: false keeps A as drawn (white background, black square) and the padding black.
  assert.equal(r.forced[14 * 28 + 14], 0);
  assert.equal(r.forced[8 * 28 + 1], 255);
  assert.equal(r.forced[3 * 28 + 14], 0, 'padding stays black when not inverting');
  // Three channels keep the colour.
  assert.equal(r.rgb.length, 784 * 3);
  assert.deepEqual(r.rgb.slice(3 * (14 * 28 + 14), 3 * (14 * 28 + 14) + 3), [200, 100, 50]);
  assert.deepEqual(r.rgb.slice(0, 3), [0, 0, 0]);

  assert.match(r.garbage ?? '', /^images: none of the 2 files could be decoded \(.+\)$/, `all-garbage error: ${r.garbage}`);
  assert.match(r.badLabel ?? '', /label 10 is not a class index in \[0, 10\)/);
  assert.match(r.badChannels ?? '', /2 channels are not supported/);

  // Nearest enclosing folder that is a class name (case-insensitive, trimmed, punctuation ignored so `T-shirt_top` is
  // `T-shirt/top`) or a class index; the file name is no folder.
  assert.deepEqual(r.named, [7, 7, 7, 7, 7, 4, 2, 9, null, null, null, null, 0]);
  assert.deepEqual(r.numbered, [null, null, null, null, null, null, 2, 9, null, null, null, null, null]);
  if (seen.console.length) console.log(`# datasetFromImages page console errors: ${seen.console.join(' | ')}`);
  assert.deepEqual(seen.uncaught, []);
});
