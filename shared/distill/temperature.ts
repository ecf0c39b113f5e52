/**
 * The distillation temperature, in one place for every strategy (ensemble, mutual, online):
 *
 *   T(t) = max(1, T_max · exp(−k·t))        (k = 0: constant T_max)
 *
 * A high T early transfers the teachers' "dark knowledge" (the ranking of wrong classes) while they are weak; lowering
 * it as they improve sharpens the targets. Below 1 soft labels would get sharper than the teachers' own, hence the floor.
 * `t` counts student updates: round r distills at t = r − 1 (ensemble, mutual); online trains at t = the student
 * version it is building from.
 */
export function scheduledTemperature(tMax: number, k: number, t: number): number {
  if (!(tMax > 0) || !(k >= 0)) throw new Error(`scheduledTemperature: need T_max > 0 and k ≥ 0, got ${tMax}, ${k}`);
  return k === 0 ? tMax : Math.max(1, tMax * Math.exp(-k * t));
}

/**
 * softmax(z/T_old)^(T_old/T_new), renormalised, is softmax(z/T_new): moves a stored probability row to another
 * temperature without its logits (teacher labels made under an earlier point of the schedule).
 */
export function retemper(p: ArrayLike<number>, power: number, out: Float32Array | Float64Array): void {
  let sum = 0;
  for (let j = 0; j < p.length; j++) sum += out[j] = p[j] > 0 ? p[j] ** power : 0;
  for (let j = 0; j < p.length; j++) out[j] = sum > 0 ? out[j] / sum : 1 / p.length;
}

/** The schedule of one federation (`--temperature`, `--temperature-decay`), as the strategies use it. */
export class TemperatureSchedule {
  constructor(
    readonly tMax: number,
    readonly decay: number,
  ) {
    scheduledTemperature(tMax, decay, 0); // the same check, at construction rather than at the first round
  }

  /** T at step t (t < 0 reads as 0: before the first update the schedule is at its start). */
  at(t: number): number {
    return scheduledTemperature(this.tMax, this.decay, Math.max(0, t));
  }

  /**
   * A probability row labelled at step `from` expressed at step `to`'s temperature, written into `out`; returns false
   * (out untouched) when both temperatures are the same, so the caller can use the row as it is.
   */
  retemperRow(p: ArrayLike<number>, from: number, to: number, out: Float32Array | Float64Array): boolean {
    const tOld = this.at(from);
    const tNew = this.at(to);
    if (tOld === tNew) return false;
    retemper(p, tOld / tNew, out);
    return true;
  }
}
