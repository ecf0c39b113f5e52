/**
 * Private data in a browser: the user's own image files, decoded and resized in the page (nothing is uploaded), or,
 * for demonstrations, a seeded shard of the public Fashion-MNIST subset the aggregator serves.
 */
import { subset, type Dataset } from '../shared/data/dataset.ts';
import { splitForFederation } from '../shared/data/federated-split.ts';
import { datasetFromIdx, gunzip } from '../shared/data/idx.ts';
import { prepareImage } from '../shared/data/image-prep.ts';
import { classOfFolder } from '../shared/data/class-folders.ts';
import { Rng } from '../shared/data/rng.ts';

export interface LabelledImage {
  /** Anything createImageBitmap decodes: PNG, JPEG, WebP, GIF, BMP files or blobs. */
  image: Blob;
  label: number;
}

export interface ImageDecodeOptions {
  /** [height, width, channels] of the federation's input (the welcome's or /federation's inputShape). */
  shape: [number, number, number];
  numClasses: number;
  /**
   * Fashion-MNIST-style data is a light object on a black background. 'auto' (default) inverts an image whose border
   * is mostly light (a photo of an object on a white table) so it matches; true/false force it. The rule and the
   * letterbox are prepareImage's (shared/data/image-prep.ts), the same in Node's image-folder reader.
   */
  invert?: boolean | 'auto';
  /** Called after each file (decoded or skipped). */
  onProgress?: (done: number, total: number) => void;
}

/** Decode, resize (aspect kept, centred, padded) and convert image files into a Dataset of the federation's shape. */
export async function datasetFromImages(items: LabelledImage[], o: ImageDecodeOptions): Promise<Dataset> {
  const [h, w, c] = o.shape;
  if (c !== 1 && c !== 3) throw new Error(`images: ${c} channels are not supported (1 or 3)`);
  for (const it of items) if (!Number.isInteger(it.label) || it.label < 0 || it.label >= o.numClasses) throw new Error(`images: label ${it.label} is not a class index in [0, ${o.numClasses})`);
  // Decoded at its own size; the letterbox, resampling, grey and invert rule are prepareImage's (shared with Node).
  const canvas = new OffscreenCanvas(1, 1);
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  const images = new Uint8Array(items.length * h * w * c);
  const labels = new Uint8Array(items.length);
  let n = 0;
  const failed: string[] = [];
  for (const [k, it] of items.entries()) {
    let bmp: ImageBitmap;
    try {
      bmp = await createImageBitmap(it.image);
    } catch (e) {
      failed.push(`${(it.image as File).name ?? 'image'}: ${(e as Error).message}`);
      o.onProgress?.(k + 1, items.length);
      continue;
    }
    canvas.width = bmp.width;
    canvas.height = bmp.height;
    ctx.clearRect(0, 0, bmp.width, bmp.height);
    ctx.drawImage(bmp, 0, 0);
    const rgba = ctx.getImageData(0, 0, bmp.width, bmp.height);
    bmp.close();
    images.set(prepareImage(rgba, o.shape, o.invert ?? 'auto').pixels, n * h * w * c);
    labels[n++] = it.label;
    o.onProgress?.(k + 1, items.length);
  }
  if (n === 0) throw new Error(`images: none of the ${items.length} files could be decoded${failed.length ? ` (${failed[0]})` : ''}`);
  return { images: images.subarray(0, n * h * w * c), labels: labels.subarray(0, n), count: n, shape: o.shape, numClasses: o.numClasses };
}

/**
 * The class of a file from its folder (`webkitRelativePath` of a folder pick, e.g. `photos/sneaker/1.jpg`): the
 * nearest enclosing folder whose name is a class name or a class index. Names match ignoring case and everything but
 * letters and digits, so a folder `tshirt-top` or `T-shirt_top` is the class `T-shirt/top` (a folder name cannot hold
 * a '/'). Null when no folder names a class.
 */
export function labelFromPath(path: string, classNames: readonly string[]): number | null {
  for (const d of path.split('/').slice(0, -1).reverse()) {
    const i = classOfFolder(d, classNames);
    if (i !== null) return i;
  }
  return null;
}

export interface DemoShardOptions {
  /** The aggregator's base URL (it serves the committed Fashion-MNIST subset under /demo-data/). */
  baseUrl: string;
  /** Which shard (0-based) of `of`. */
  shard: number;
  of: number;
  /** Dirichlet concentration of the label skew across shards (smaller = more skewed). Default 0.5. */
  alpha?: number;
  seed?: number;
  fetchInit?: RequestInit;
}

/**
 * Shard `shard` of `of` of the 6,000-image Fashion-MNIST subset, split Dirichlet(α) by label with `seed`: the same
 * rows in every browser and in Node for the same arguments, so a demo federation is reproducible.
 */
export async function fetchDemoShard(o: DemoShardOptions): Promise<Dataset> {
  if (!(Number.isInteger(o.of) && o.of >= 1 && Number.isInteger(o.shard) && o.shard >= 0 && o.shard < o.of)) throw new Error(`demo shard: need 0 ≤ shard < of (got ${o.shard} of ${o.of})`);
  const get = async (file: string) => {
    const res = await fetch(new URL(`/demo-data/fashion-mnist-subset/${file}`, o.baseUrl), o.fetchInit);
    if (!res.ok) throw new Error(`GET /demo-data/fashion-mnist-subset/${file}: HTTP ${res.status}`);
    return gunzip(new Uint8Array(await res.arrayBuffer()));
  };
  const [images, labels] = await Promise.all([get('train-images-idx3-ubyte.gz'), get('train-labels-idx1-ubyte.gz')]);
  return demoShard(datasetFromIdx(images, labels), o);
}

/** The shard of an already-loaded dataset (what fetchDemoShard computes after the download). */
export function demoShard(all: Dataset, o: Pick<DemoShardOptions, 'shard' | 'of' | 'alpha' | 'seed'>): Dataset {
  const split = splitForFederation(all, { proxySize: 0, numClients: o.of, partition: 'dirichlet', alpha: o.alpha ?? 0.5, shardsPerClient: 2, seed: o.seed ?? 1 });
  return subset(all, split.clients[o.shard]);
}

/** Split off a seeded fraction of the private data to measure the local model on (only the accuracy is reported). */
export function holdOut(ds: Dataset, fraction: number, seed = 1): { train: Dataset; evalSet: Dataset } {
  const order = new Rng(`holdout/${seed}`).permutation(ds.count);
  const k = Math.min(ds.count - 1, Math.round(ds.count * fraction));
  return { evalSet: subset(ds, order.slice(0, k)), train: subset(ds, order.slice(k)) };
}
