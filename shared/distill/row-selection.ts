/**
 * Which proxy rows a round asks the clients to label (uncertainty sampling, as in active learning).
 *
 * The uplink pays for `n` rows a round, not for the whole proxy set, and the teacher bank keeps every row's latest
 * label; so the question is which `n` rows most deserve a fresh one. Rows the student already separates with a wide
 * margin gain little from a new label; rows near its decision boundaries are where its copy of the teacher is worst.
 * So a share of the rows are those where the student's margin (top-1 minus top-2 probability, at T = 1) is smallest,
 * and the rest those whose bank label is oldest (never-labelled rows first), so that every row keeps being refreshed.
 *
 * Measured (README, "the levers tried"): with half or three quarters of 4,500 rows by margin, the student was 1.2–1.3
 * points higher after 6 rounds than with the fixed shuffle's windows, at the same bytes. Everything here is a function
 * of the student's weights, the bank and the proxy set; the round scheduler also journals the rows it asked for, so a
 * restarted server asks for the same ones whatever its backend rounds differently.
 */

/** Top-1 minus top-2 probability of each row of `probs` (rows × c): small = the student is unsure between two classes. */
export function margins(probs: Float32Array, rows: number, c: number): Float32Array {
  const out = new Float32Array(rows);
  for (let i = 0; i < rows; i++) {
    let a = -Infinity;
    let b = -Infinity;
    for (let j = 0; j < c; j++) {
      const v = probs[i * c + j];
      if (v > a) {
        b = a;
        a = v;
      } else if (v > b) b = v;
    }
    out[i] = c > 1 ? a - b : 1;
  }
  return out;
}

export interface RowSelection {
  /** The student's probabilities (at T = 1) on every proxy row: rows × c. */
  probs: Float32Array;
  /** Per proxy row, the round that last labelled it (0 = never). */
  labelledAt: Uint32Array;
  numClasses: number;
  /** How many rows to pick (at most the proxy set's size). */
  n: number;
  /** Share of `n` picked by smallest margin, in [0, 1]; the rest by oldest label. */
  uncertainShare: number;
  /**
   * A fixed shuffle of the proxy set (a permutation of its row indices): ties (equal margins, equal label ages — e.g.
   * rows never labelled) go to the row earlier in it, so they fall on a random, reproducible spread of rows rather than
   * on low indices.
   */
  order: Uint32Array;
}

/** The round's rows: sorted ascending (the form the row-set encodings need). */
export function selectRows(s: RowSelection): Uint32Array {
  const count = s.labelledAt.length;
  if (s.probs.length !== count * s.numClasses) throw new Error(`selectRows: ${s.probs.length} probabilities for ${count} rows × ${s.numClasses} classes`);
  if (s.order.length !== count) throw new Error(`selectRows: an order of ${s.order.length} rows for ${count}`);
  if (!(s.uncertainShare >= 0 && s.uncertainShare <= 1)) throw new Error(`selectRows: uncertainShare ${s.uncertainShare} is not in [0, 1]`);
  const n = Math.min(Math.max(0, Math.floor(s.n)), count);
  const rank = new Uint32Array(count);
  s.order.forEach((row, k) => (rank[row] = k));
  const all = Array.from({ length: count }, (_, i) => i);
  const m = margins(s.probs, count, s.numClasses);
  const chosen = new Uint8Array(count);
  let picked = 0;
  const uncertain = Math.round(s.uncertainShare * n);
  for (const row of all.slice().sort((x, y) => m[x] - m[y] || rank[x] - rank[y])) {
    if (picked >= uncertain) break;
    chosen[row] = 1;
    picked++;
  }
  for (const row of all.slice().sort((x, y) => s.labelledAt[x] - s.labelledAt[y] || rank[x] - rank[y])) {
    if (picked >= n) break;
    if (chosen[row]) continue;
    chosen[row] = 1;
    picked++;
  }
  const out = new Uint32Array(n);
  let k = 0;
  for (let row = 0; row < count; row++) if (chosen[row]) out[k++] = row;
  return out;
}
