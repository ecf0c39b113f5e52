/**
 * Label-preserving image augmentation for distillation batches (FedDF distills on augmented proxy images): a random
 * translation by up to `maxShift` pixels in each direction (the uncovered border is zero, Fashion-MNIST's background)
 * and, with probability ½, a horizontal flip. A garment or a shoe mirrored left-right is still the same class, and a
 * shift of 2 px on 28×28 keeps it whole, so the teacher's probabilities for the original image stay valid targets.
 * The student then matches the teacher on a neighbourhood of each proxy row instead of the row alone, which is what
 * lets it take several epochs over a 10,000-row proxy set without memorising it.
 *
 * Operates in place on a batch of NHWC float images (row-major), one random draw per image. Isomorphic.
 */
export interface AugmentOptions {
  /** Largest translation in pixels, per axis (0 = none). */
  maxShift: number;
  /** Mirror half of the images left-right. */
  flip: boolean;
}

export const DISTILL_AUGMENT: AugmentOptions = { maxShift: 2, flip: true };

export function augmentBatch(batch: Float32Array, count: number, shape: readonly [number, number, number], random: () => number, o: AugmentOptions): void {
  const [h, w, ch] = shape;
  const size = h * w * ch;
  if (batch.length !== count * size) throw new Error(`augmentBatch: ${batch.length} values are not ${count} images of [${shape}]`);
  const tmp = new Float32Array(size);
  for (let n = 0; n < count; n++) {
    const dy = o.maxShift > 0 ? Math.floor(random() * (2 * o.maxShift + 1)) - o.maxShift : 0;
    const dx = o.maxShift > 0 ? Math.floor(random() * (2 * o.maxShift + 1)) - o.maxShift : 0;
    const flip = o.flip && random() < 0.5;
    if (dy === 0 && dx === 0 && !flip) continue;
    const img = batch.subarray(n * size, (n + 1) * size);
    tmp.fill(0);
    for (let y = 0; y < h; y++) {
      const sy = y - dy;
      if (sy < 0 || sy >= h) continue;
      for (let x = 0; x < w; x++) {
        // Output pixel x shows source pixel sx of the (optionally mirrored) image shifted by dx.
        const mx = x - dx;
        if (mx < 0 || mx >= w) continue;
        const sx = flip ? w - 1 - mx : mx;
        const src = (sy * w + sx) * ch;
        const dst = (y * w + x) * ch;
        for (let c = 0; c < ch; c++) tmp[dst + c] = img[src + c];
      }
    }
    img.set(tmp);
  }
}
