import { datasetFromIdx } from '../../shared/data/idx.ts';
import type { Dataset } from '../../shared/data/dataset.ts';
import { findFile, readMaybeGz } from '../../server/data/fashion-mnist.ts';

/**
 * A client's private data from a directory of idx files (.gz or not): train-images-idx3-ubyte + train-labels-idx1-ubyte,
 * and, if present, t10k-* as a local evaluation set. This stays on the client's machine.
 */
export async function loadPrivateData(dir: string): Promise<{ train: Dataset; eval: Dataset | null }> {
  const read = async (prefix: string): Promise<Dataset | null> => {
    const img = findFile(dir, `${prefix}-images-idx3-ubyte`);
    const lab = findFile(dir, `${prefix}-labels-idx1-ubyte`);
    if (!img || !lab) return null;
    return datasetFromIdx(await readMaybeGz(img), await readMaybeGz(lab));
  };
  const train = await read('train');
  if (!train) throw new Error(`${dir} must hold train-images-idx3-ubyte(.gz) and train-labels-idx1-ubyte(.gz): the client's private, labelled data`);
  return { train, eval: await read('t10k') };
}
