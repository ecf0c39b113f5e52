/**
 * One decoded picture → one row of a federation's input (browser-safe: the join page and the Node image-folder reader
 * both call this, so the same picture gives the same bytes whichever side decoded it).
 *
 * The steps, in the input's [h, w] frame:
 *   1. Letterbox: scale s = min(w / srcW, h / srcH) keeps the aspect ratio; the scaled picture (srcW·s × srcH·s) is
 *      centred, offsets ((w − srcW·s) / 2, (h − srcH·s) / 2), possibly fractional.
 *   2. Resample by area (a box filter): a target pixel is the coverage-weighted mean of the source pixels under its
 *      unit square mapped back into the source. This is exact averaging when shrinking (the usual case: a photo down
 *      to 28×28) and, when enlarging, nearest-neighbour with blended seams. Done separably (rows, then columns);
 *      colours are alpha-premultiplied, so transparent pixels and the letterbox take the background colour.
 *   3. Invert rule: Fashion-MNIST-style data is a light object on black. With invert 'auto' the picture is inverted
 *      when the mean luminance of the outermost ring of target pixels fully inside the drawn area, over a black
 *      background, is above 127 (a photo of an object on a white table).
 *   4. Background = white when inverting (so the letterbox ends black like the rest), else black; composite
 *      value = premultiplied colour + (1 − coverage)·background.
 *   5. One channel: grey = round(0.299·R + 0.587·G + 0.114·B) (ITU-R BT.601), inverted as 255 − grey; three channels:
 *      each rounded, inverted as 255 − v.
 */

/** Decoded pixels, 4 bytes a pixel (R, G, B, A), row-major, not premultiplied (what canvas getImageData gives). */
export interface RgbaImage {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
}

export type InvertMode = boolean | 'auto';

/** The rows of one axis a target pixel covers: source index and its weight (overlap length in target units). */
type Taps = { index: Int32Array; weight: Float64Array; start: Int32Array };

/**
 * For each of `dst` target pixels along an axis: the source pixels [0, src) under [t, t+1) mapped back through
 * x_src = (t − offset) / scale, with their overlap (in target pixels; sums to 1 inside the drawn area, less at its
 * edges, 0 in the letterbox).
 */
function axisTaps(src: number, dst: number, scale: number, offset: number): Taps {
  const index: number[] = [];
  const weight: number[] = [];
  const start = new Int32Array(dst + 1);
  for (let t = 0; t < dst; t++) {
    start[t] = index.length;
    const a = Math.max(0, (t - offset) / scale);
    const b = Math.min(src, (t + 1 - offset) / scale);
    for (let s = Math.floor(a); s < b; s++) {
      const overlap = Math.min(b, s + 1) - Math.max(a, s);
      if (overlap > 0) {
        index.push(s);
        weight.push(overlap * scale);
      }
    }
  }
  start[dst] = index.length;
  return { index: Int32Array.from(index), weight: Float64Array.from(weight), start };
}

/** The picture resampled into [h, w]: premultiplied R, G, B (0..255) and coverage (0..1) per target pixel. */
function resample(img: RgbaImage, h: number, w: number): { rgb: Float64Array; cover: Float64Array; padX: number; padY: number } {
  const { data, width: sw, height: sh } = img;
  const scale = Math.min(w / sw, h / sh);
  const padX = (w - sw * scale) / 2;
  const padY = (h - sh * scale) / 2;
  const xs = axisTaps(sw, w, scale, padX);
  const ys = axisTaps(sh, h, scale, padY);
  // Pass 1: every source row → w target columns (premultiplied R, G, B, A/255).
  const rows = new Float64Array(sh * w * 4);
  for (let y = 0; y < sh; y++) {
    for (let t = 0; t < w; t++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let k = xs.start[t]; k < xs.start[t + 1]; k++) {
        const i = 4 * (y * sw + xs.index[k]);
        const wa = (xs.weight[k] * data[i + 3]) / 255;
        r += wa * data[i];
        g += wa * data[i + 1];
        b += wa * data[i + 2];
        a += wa;
      }
      const o = 4 * (y * w + t);
      rows[o] = r;
      rows[o + 1] = g;
      rows[o + 2] = b;
      rows[o + 3] = a;
    }
  }
  // Pass 2: columns → h target rows.
  const rgb = new Float64Array(h * w * 3);
  const cover = new Float64Array(h * w);
  for (let u = 0; u < h; u++) {
    for (let t = 0; t < w; t++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let k = ys.start[u]; k < ys.start[u + 1]; k++) {
        const i = 4 * (ys.index[k] * w + t);
        const wy = ys.weight[k];
        r += wy * rows[i];
        g += wy * rows[i + 1];
        b += wy * rows[i + 2];
        a += wy * rows[i + 3];
      }
      const p = u * w + t;
      rgb[3 * p] = r;
      rgb[3 * p + 1] = g;
      rgb[3 * p + 2] = b;
      cover[p] = a;
    }
  }
  return { rgb, cover, padX, padY };
}

const luminance = (r: number, g: number, b: number) => 0.299 * r + 0.587 * g + 0.114 * b;
const byte = (v: number) => Math.min(255, Math.max(0, Math.round(v)));

/** Mean luminance (over black) of the outermost ring of target pixels fully inside the drawn area, above 127. */
function borderIsLight(rgb: Float64Array, h: number, w: number, padX: number, padY: number): boolean {
  const x0 = Math.ceil(padX);
  const y0 = Math.ceil(padY);
  const x1 = w - 1 - x0;
  const y1 = h - 1 - y0;
  let sum = 0;
  let cnt = 0;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      if (y !== y0 && y !== y1 && x !== x0 && x !== x1) continue;
      const p = 3 * (y * w + x);
      sum += luminance(rgb[p], rgb[p + 1], rgb[p + 2]);
      cnt++;
    }
  }
  return cnt > 0 && sum / cnt > 127;
}

/**
 * The input row for `img` at `shape` ([h, w, 1 or 3]): letterboxed, area-resampled, grey (one channel) and inverted
 * per `invert` (see the module comment). `inverted` says what 'auto' decided.
 */
export function prepareImage(img: RgbaImage, shape: readonly [number, number, number], invert: InvertMode = 'auto'): { pixels: Uint8Array; inverted: boolean } {
  const [h, w, c] = shape;
  if (c !== 1 && c !== 3) throw new Error(`images: ${c} channels are not supported (1 or 3)`);
  if (!(Number.isInteger(h) && h > 0 && Number.isInteger(w) && w > 0)) throw new Error(`images: bad input shape ${shape.join('×')}`);
  if (!(img.width > 0 && img.height > 0)) throw new Error(`images: empty picture (${img.width}×${img.height})`);
  if (img.data.length !== img.width * img.height * 4) {
    throw new Error(`images: ${img.width}×${img.height} RGBA needs ${img.width * img.height * 4} bytes, got ${img.data.length}`);
  }
  const { rgb, cover, padX, padY } = resample(img, h, w);
  const inverted = invert === 'auto' ? borderIsLight(rgb, h, w, padX, padY) : invert;
  const bg = inverted ? 255 : 0;
  const pixels = new Uint8Array(h * w * c);
  for (let p = 0; p < h * w; p++) {
    const fill = (1 - cover[p]) * bg;
    const r = rgb[3 * p] + fill;
    const g = rgb[3 * p + 1] + fill;
    const b = rgb[3 * p + 2] + fill;
    if (c === 1) {
      const grey = byte(luminance(r, g, b));
      pixels[p] = inverted ? 255 - grey : grey;
    } else {
      const o = 3 * p;
      pixels[o] = inverted ? 255 - byte(r) : byte(r);
      pixels[o + 1] = inverted ? 255 - byte(g) : byte(g);
      pixels[o + 2] = inverted ? 255 - byte(b) : byte(b);
    }
  }
  return { pixels, inverted };
}
