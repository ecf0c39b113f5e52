/** An image-classification dataset held as raw pixels (0..255, NHWC) so it stays small in memory and on the wire. */
export interface Dataset {
  /** count × height × width × channels bytes, row-major. */
  images: Uint8Array;
  /** One class index per image, or null when labels are withheld (a proxy set on the server). */
  labels: Uint8Array | null;
  count: number;
  /** [height, width, channels] */
  shape: [number, number, number];
  numClasses: number;
}

export function sampleSize(ds: Pick<Dataset, 'shape'>): number {
  return ds.shape[0] * ds.shape[1] * ds.shape[2];
}

/** A dataset of the rows `indices` of `ds` (copies). */
export function subset(ds: Dataset, indices: ArrayLike<number>): Dataset {
  const size = sampleSize(ds);
  const images = new Uint8Array(indices.length * size);
  const labels = ds.labels ? new Uint8Array(indices.length) : null;
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i];
    images.set(ds.images.subarray(j * size, (j + 1) * size), i * size);
    if (labels) labels[i] = ds.labels![j];
  }
  return { images, labels, count: indices.length, shape: ds.shape, numClasses: ds.numClasses };
}
