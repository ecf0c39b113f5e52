import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile, mkdir, readdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parseIdx, encodeIdx, datasetFromIdx, datasetToIdx, gunzip, isGzip } from '../shared/data/idx.ts';
import { Rng } from '../shared/data/rng.ts';
import { classFolderNames, classOfFolder, folderOfClass } from '../shared/data/class-folders.ts';
import {
  dirichletPartition,
  shardPartition,
  iidPartition,
  classHistogram,
  histogramEntropy,
  partitionStats,
} from '../shared/data/partition.ts';
import {
  loadFashionMnist,
  loadSubset,
  resolveRepoPath,
  DEBIAN_FASHION_MNIST_DIR,
  FASHION_MNIST_FILES,
} from '../datasets/fashion-mnist.ts';

delete process.env.FEDISTILL_DATA_DIR;
const quiet = () => {};

function assertDisjointCover(parts: number[][], n: number) {
  const seen = new Uint8Array(n);
  let total = 0;
  for (const p of parts) {
    for (const i of p) {
      assert.ok(Number.isInteger(i) && i >= 0 && i < n, `index ${i} out of range`);
      assert.equal(seen[i], 0, `index ${i} used twice`);
      seen[i] = 1;
      total++;
    }
  }
  assert.equal(total, n, 'not every index used');
}

describe('idx', () => {
  test('round-trips 1-d, 3-d and 4-d arrays', () => {
    for (const dims of [[5], [2, 3, 4], [2, 2, 2, 3]]) {
      const size = dims.reduce((a, b) => a * b, 1);
      const data = Uint8Array.from({ length: size }, (_, i) => (i * 37) & 255);
      const enc = encodeIdx(dims, data);
      assert.deepEqual([...enc.subarray(0, 4)], [0, 0, 8, dims.length]);
      const { dims: d2, data: x2 } = parseIdx(enc);
      assert.deepEqual(d2, dims);
      assert.deepEqual([...x2], [...data]);
    }
  });

  test('big-endian dims', () => {
    const enc = encodeIdx([60000], new Uint8Array(60000));
    assert.deepEqual([...enc.subarray(4, 8)], [0x00, 0x00, 0xea, 0x60]);
  });

  test('clear errors on bad input', () => {
    const good = encodeIdx([2, 2, 2], new Uint8Array(8));
    const bad = good.slice();
    bad[0] = 7;
    assert.throws(() => parseIdx(bad), /bad magic/);
    const dt = good.slice();
    dt[2] = 0x0d;
    assert.throws(() => parseIdx(dt), /unsupported dtype 0xd \(float\)/);
    assert.throws(() => parseIdx(good.subarray(0, good.length - 1)), /truncated data/);
    assert.throws(() => parseIdx(good.subarray(0, 6)), /truncated header/);
    assert.throws(() => parseIdx(new Uint8Array([0, 0])), /truncated header/);
    const extra = new Uint8Array(good.length + 3);
    extra.set(good);
    assert.throws(() => parseIdx(extra), /trailing bytes/);
    assert.throws(() => parseIdx(gzipSync(good)), /gzip/);
    assert.throws(() => encodeIdx([2, 2], new Uint8Array(3)), /need 4 bytes/);
  });

  test('datasetFromIdx checks counts and labels', async () => {
    const images = encodeIdx([3, 2, 2], Uint8Array.from({ length: 12 }, (_, i) => i));
    const ds = datasetFromIdx(images, encodeIdx([3], Uint8Array.from([0, 9, 4])));
    assert.equal(ds.count, 3);
    assert.deepEqual(ds.shape, [2, 2, 1]);
    assert.deepEqual([...ds.labels!], [0, 9, 4]);
    assert.equal(ds.numClasses, 10);
    assert.equal(datasetFromIdx(images, null).labels, null);
    assert.throws(() => datasetFromIdx(images, encodeIdx([2], new Uint8Array(2))), /count mismatch: 3 images but 2 labels/);
    assert.throws(() => datasetFromIdx(images, encodeIdx([3], Uint8Array.from([0, 1, 10]))), /out of range/);
    assert.throws(() => datasetFromIdx(encodeIdx([12], new Uint8Array(12)), null), /3 or 4 dimensions/);
    const back = datasetToIdx(ds);
    assert.deepEqual([...back.images], [...images]);
    // isomorphic gunzip via DecompressionStream
    const z = gzipSync(images);
    assert.ok(isGzip(z));
    assert.deepEqual([...(await gunzip(z))], [...images]);
  });
});

describe('rng', () => {
  test('deterministic per seed, different across seeds', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const xa = Array.from({ length: 20 }, () => a.next());
    assert.deepEqual(xa, Array.from({ length: 20 }, () => b.next()));
    assert.notDeepEqual(xa, Array.from({ length: 20 }, () => c.next()));
    assert.ok(xa.every((x) => x >= 0 && x < 1));
    assert.deepEqual(new Rng('abc').permutation(10), new Rng('abc').permutation(10));
  });

  test('int, permutation, shuffle', () => {
    const r = new Rng(1);
    const counts = new Array(7).fill(0);
    for (let i = 0; i < 7000; i++) counts[r.int(7)]++;
    assert.ok(counts.every((c) => c > 850 && c < 1150), `int(7) counts ${counts}`);
    const p = r.permutation(100);
    assert.deepEqual([...p].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
    const arr = Uint8Array.from([1, 2, 3, 4, 5]);
    assert.equal(r.shuffle(arr), arr);
    assert.deepEqual([...arr].sort(), [1, 2, 3, 4, 5]);
  });

  test('normal and gamma moments (incl. shape < 1)', () => {
    const r = new Rng(7);
    const n = 20000;
    const xs = Array.from({ length: n }, () => r.normal());
    const mean = xs.reduce((a, b) => a + b, 0) / n;
    const v = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / n;
    assert.ok(Math.abs(mean) < 0.03 && Math.abs(v - 1) < 0.05, `normal mean ${mean} var ${v}`);
    for (const shape of [0.1, 0.5, 1, 3.5]) {
      const g = Array.from({ length: n }, () => r.gamma(shape));
      assert.ok(g.every((x) => x >= 0 && Number.isFinite(x)));
      const m = g.reduce((a, b) => a + b, 0) / n;
      assert.ok(Math.abs(m - shape) < 0.06 * Math.max(1, shape), `gamma(${shape}) mean ${m}`);
    }
    const d = r.dirichlet(0.001, 50);
    assert.ok(Math.abs(d.reduce((a, b) => a + b, 0) - 1) < 1e-9 && d.every(Number.isFinite), 'tiny-alpha dirichlet');
  });
});

describe('partition', () => {
  let labels: Uint8Array;
  before(async () => {
    labels = (await loadSubset()).train.labels!;
  });

  test('dirichlet: disjoint cover, deterministic per seed, min size', () => {
    for (const alpha of [0.05, 0.5, 100]) {
      const parts = dirichletPartition(labels, 20, alpha, 3);
      assertDisjointCover(parts, labels.length);
      assert.ok(parts.every((p) => p.length >= 10));
      assert.deepEqual(parts, dirichletPartition(labels, 20, alpha, 3));
      assert.deepEqual(parts, dirichletPartition(labels, 20, alpha, new Rng(3)));
    }
    assert.notDeepEqual(dirichletPartition(labels, 20, 0.5, 3), dirichletPartition(labels, 20, 0.5, 4));
    const big = dirichletPartition(labels, 10, 0.5, 1, { minPerClient: 100 });
    assert.ok(big.every((p) => p.length >= 100));
    assert.throws(() => dirichletPartition(labels, 10, 0.5, 1, { minPerClient: 700 }), /cannot give/);
    assert.throws(() => dirichletPartition(labels, 10, 0, 1), /alpha/);
  });

  test('dirichlet: skew grows as alpha shrinks', () => {
    const ent = (alpha: number) => partitionStats(labels, dirichletPartition(labels, 20, alpha, 11), 10).meanEntropy;
    const e01 = ent(0.1);
    const e1 = ent(1);
    const e100 = ent(100);
    assert.ok(e01 < e1 && e1 < e100, `entropies ${e01} ${e1} ${e100}`);
    assert.ok(e100 > 0.95 * Math.log(10), `alpha=100 should be near-uniform: ${e100}`);
    assert.ok(e01 < 0.6 * Math.log(10), `alpha=0.1 should be skewed: ${e01}`);
  });

  test('shards: disjoint cover, about shardsPerClient classes each', () => {
    const parts = shardPartition(labels, 100, 2, 5);
    assertDisjointCover(parts, labels.length);
    assert.ok(parts.every((p) => p.length === 60));
    const stats = partitionStats(labels, parts, 10);
    assert.ok(stats.classesPerClient.every((c) => c >= 1 && c <= 2), `classes ${stats.classesPerClient}`);
    // shards that straddle class boundaries: still at most 2 per shard
    const odd = shardPartition(labels, 7, 3, 5);
    assertDisjointCover(odd, labels.length);
    assert.ok(partitionStats(labels, odd, 10).classesPerClient.every((c) => c <= 6));
    assert.deepEqual(odd, shardPartition(labels, 7, 3, 5));
  });

  test('iid and classHistogram', () => {
    const parts = iidPartition(1003, 10, 9);
    assertDisjointCover(parts, 1003);
    assert.ok(parts.every((p) => p.length === 100 || p.length === 101));
    assert.deepEqual(parts, iidPartition(1003, 10, 9));
    assert.deepEqual(classHistogram(Uint8Array.from([0, 1, 1, 2, 2, 2]), [1, 2, 3, 5], 4), [0, 2, 2, 0]);
    assert.equal(histogramEntropy([5, 0, 0]), 0);
    assert.ok(Math.abs(histogramEntropy([1, 1, 1, 1]) - Math.log(4)) < 1e-12);
  });
});

describe('class folders', () => {
  test('classOfFolder: exactly, then ignoring case, then ignoring punctuation, then a number; ties refused', () => {
    assert.equal(classOfFolder('ab', ['a-b', 'ab']), 1, "an exact match beats an earlier class's loose one");
    assert.equal(classOfFolder('AB', ['a-b', 'ab']), 1, 'ignoring case beats ignoring punctuation');
    assert.equal(classOfFolder('tshirt-top', ['T-shirt/top', 'Trouser']), 0);
    assert.equal(classOfFolder('1', ['x', 'y']), 1);
    assert.equal(classOfFolder('0', ['1', '0']), 1, 'a class named by a number is matched by name first');
    assert.equal(classOfFolder('7', ['x', 'y']), null);
    assert.throws(() => classOfFolder('ab', ['a-b', 'a_b']), /folder 'ab' matches the classes 'a-b' and 'a_b' ignoring case and punctuation; name it exactly/);
    assert.throws(() => classOfFolder('CAT', ['Cat', 'cat']), /matches the classes 'Cat' and 'cat' ignoring case/);
  });

  test('classFolderNames: one folder per class that reads back as that class, else an error', () => {
    const names = ['T-shirt/top', 'a:b', 'Bag'];
    assert.deepEqual(classFolderNames(names), ['T-shirt_top', 'a_b', 'Bag']);
    for (const [i, f] of classFolderNames(names).entries()) assert.equal(classOfFolder(f, names), i);
    assert.throws(() => classFolderNames(['x', '..']), /class '\.\.' would be written to folder '_\.\.', which reads back as no class/);
    assert.equal(folderOfClass('a/b'), folderOfClass('a_b'));
    assert.throws(() => classFolderNames(['a/b', 'a_b']), /classes 'a\/b' and 'a_b' would be written to the same folder \('a_b'\)/);
    assert.throws(() => classFolderNames(['x', 'Cat', 'cat']), /'Cat' and 'cat' .*equal ignoring case/);
    assert.throws(() => classFolderNames(['a/b', 'ab']), /reads back ambiguously/);
  });
});

describe('fashion-mnist loader', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'fedistill-data-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('resolveRepoPath finds the repo root', () => {
    assert.ok(existsSync(resolveRepoPath('package.json')));
    assert.ok(existsSync(resolveRepoPath('data', 'fashion-mnist-subset', 'README.md')));
  });

  test('loadSubset: 6000/2000, balanced, all 10 classes', async () => {
    const { train, test: t } = await loadSubset();
    assert.equal(train.count, 6000);
    assert.equal(t.count, 2000);
    assert.deepEqual(train.shape, [28, 28, 1]);
    assert.equal(train.images.length, 6000 * 784);
    assert.deepEqual(classHistogram(train.labels!, iidPartition(6000, 1, 0)[0], 10), new Array(10).fill(600));
    assert.deepEqual(classHistogram(t.labels!, iidPartition(2000, 1, 0)[0], 10), new Array(10).fill(200));
  });

  test('a data dir that lacks the files throws a helpful message', async () => {
    const empty = join(tmp, 'empty');
    await mkdir(empty);
    const cacheDir = join(tmp, 'cache-none');
    const lines: string[] = [];
    await assert.rejects(
      loadFashionMnist({ dir: empty, cacheDir, download: false, allowSubset: false, log: (m) => lines.push(m) }),
      (e: Error) => {
        assert.match(e.message, /missing train-images-idx3-ubyte/);
        assert.match(e.message, /apt-get install dataset-fashion-mnist/);
        assert.match(e.message, /fashion-mnist\.s3-website\.eu-central-1\.amazonaws\.com/);
        assert.ok(e.message.includes(cacheDir), 'names the cache dir');
        assert.match(e.message, /--data-dir/);
        return true;
      },
    );
    assert.ok(lines.length >= 1 && lines.every((l) => !l.includes('\n')));
  });

  test('nothing found anywhere: helpful message listing every attempt', async () => {
    const cacheDir = join(tmp, 'cache-none2');
    const lines: string[] = [];
    await assert.rejects(
      loadFashionMnist({ cacheDir, systemDirs: [join(tmp, 'nope')], download: false, allowSubset: false, log: (m) => lines.push(m) }),
      /apt-get install dataset-fashion-mnist[\s\S]*Tried:[\s\S]*cache[\s\S]*nope/,
    );
    assert.equal(lines.length, 3); // cache, system dir, download disabled
  });

  test('failed download falls back to the subset, loudly', async () => {
    const lines: string[] = [];
    const r = await loadFashionMnist({
      cacheDir: join(tmp, 'cache-dl-fail'),
      systemDirs: [],
      mirror: 'http://127.0.0.1:9/',
      timeoutMs: 2000,
      log: (m) => lines.push(m),
    });
    assert.equal(r.isSubset, true);
    assert.equal(r.train.count, 6000);
    assert.match(r.source, /^subset:/);
    assert.ok(lines.some((l) => /download from .* failed/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => l.includes('SUBSET: 6000 train / 2000 test images — accuracy not comparable to the full set')));
  });

  test('download from a (local) mirror: verified, cached, then found in the cache', async () => {
    // Serve a synthetic full-size set (all-zero images) so the 60000/10000 verification passes.
    const bodies = new Map<string, Buffer>();
    const mk = (n: number, labelsOnly: boolean) =>
      gzipSync(labelsOnly ? encodeIdx([n], Uint8Array.from({ length: n }, (_, i) => i % 10)) : encodeIdx([n, 28, 28], new Uint8Array(n * 784)));
    bodies.set('/train-images-idx3-ubyte.gz', mk(60000, false));
    bodies.set('/train-labels-idx1-ubyte.gz', mk(60000, true));
    bodies.set('/t10k-images-idx3-ubyte.gz', mk(10000, false));
    bodies.set('/t10k-labels-idx1-ubyte.gz', mk(10000, true));
    const server: Server = createServer((req, res) => {
      const b = bodies.get(req.url ?? '');
      if (!b) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(b);
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    try {
      const port = (server.address() as { port: number }).port;
      const cacheDir = join(tmp, 'cache-dl');
      const r = await loadFashionMnist({ cacheDir, systemDirs: [], mirror: `http://127.0.0.1:${port}`, allowSubset: false, log: quiet });
      assert.equal(r.isSubset, false);
      assert.equal(r.train.count, 60000);
      assert.equal(r.test.count, 10000);
      assert.match(r.source, /^download:/);
      assert.deepEqual((await readdir(cacheDir)).sort(), FASHION_MNIST_FILES.map((f) => `${f}.gz`).sort());
      const again = await loadFashionMnist({ cacheDir, systemDirs: [], download: false, allowSubset: false, log: quiet });
      assert.equal(again.source, `cache:${cacheDir}`);
    } finally {
      server.close();
    }
  });

  test('uncompressed files in a data dir are accepted', async () => {
    const dir = join(tmp, 'raw');
    await mkdir(dir);
    const ds = datasetToIdx({ images: new Uint8Array(20 * 784), labels: new Uint8Array(20), count: 20, shape: [28, 28, 1], numClasses: 10 });
    await writeFile(join(dir, 'train-images-idx3-ubyte'), ds.images);
    await writeFile(join(dir, 'train-labels-idx1-ubyte'), ds.labels!);
    await writeFile(join(dir, 't10k-images-idx3-ubyte'), ds.images);
    await writeFile(join(dir, 't10k-labels-idx1-ubyte.gz'), gzipSync(ds.labels!));
    const lines: string[] = [];
    const r = await loadFashionMnist({ dir, log: (m) => lines.push(m) });
    assert.equal(r.train.count, 20);
    assert.equal(r.isSubset, true); // not the full 60000/10000
    assert.ok(lines.some((l) => l.includes('SUBSET')));
  });

  test('finds the Debian files', { skip: !existsSync(DEBIAN_FASHION_MNIST_DIR) && 'dataset-fashion-mnist not installed' }, async () => {
    const r = await loadFashionMnist({ cacheDir: join(tmp, 'cache-deb'), download: false, log: quiet });
    assert.equal(r.isSubset, false);
    assert.equal(r.source, `debian:${DEBIAN_FASHION_MNIST_DIR}`);
    assert.equal(r.train.count, 60000);
    assert.equal(r.test.count, 10000);
    assert.deepEqual(r.train.shape, [28, 28, 1]);
    assert.deepEqual(classHistogram(r.test.labels!, iidPartition(10000, 1, 0)[0], 10), new Array(10).fill(1000));
  });
});
