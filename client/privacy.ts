import { RdpAccountant } from '../shared/privacy/rdp.ts';
import { accountedNoiseMultiplier } from '../shared/privacy/mechanisms.ts';
import type { RoundMsg } from '../shared/protocol/messages.ts';

/** A client's own privacy budget: it never uploads past it, whatever the server asks (docs/privacy.md). */
export interface PrivacyBudget {
  /** ε this client may spend in all, at `delta`. */
  epsilon: number;
  /** δ of the guarantee. Default 1e-5. */
  delta?: number;
  /** What an earlier session of this client spent (the `privacy` event's `state`): the budget is for the data, not a session. */
  state?: unknown;
  /**
   * Count a round with `privacy.mode: central` as the aggregate's guarantee (the server is trusted to keep single
   * uploads, which carry 1/noiseShares of the noise, to itself). Default false: such a round is counted by the noise
   * this client adds alone, which usually spends the budget in one upload.
   */
  trustAggregator?: boolean;
}

/** When a round with DP noise is taken on: ε spent so far (that round included), and the state to keep for the next session. */
export interface PrivacySpend {
  round: number;
  epsilon: number;
  epsilonRound: number;
  budget: number;
  state: unknown;
}

/**
 * The Gaussian noise multiplier over the sensitivity that protects this client's upload, from the round's `privacy`:
 * the noise the client itself adds is z/√noiseShares times the clip-based norm (C·√rows, or S). Alone (no secure
 * aggregation), the upload must be private for any change of the client's data: probability rows are non-negative
 * with norm ≤ C, so two differ by ≤ √2·C; two clipped updates by ≤ 2S. Under secure aggregation the server sees only
 * the sum, whose noise is z·C·√rows (z·S) when the other contributors added theirs, against an add/remove
 * sensitivity of C·√rows (S): z. That last figure trusts the other t − 1 contributors to noise honestly; the
 * client's own share alone would be z/√t.
 */
export function effectiveNoiseMultiplier(msg: RoundMsg, trustAggregator = false): number {
  const p = msg.privacy;
  if (!p) return 0;
  // The sum holds at least t contributions: noise split over more shares than t is not all there when only t arrive.
  if (msg.secagg && p.noiseShares > 1) return p.noiseMultiplier * Math.sqrt(Math.min(p.noiseShares, msg.secagg.threshold) / p.noiseShares);
  const upload = msg.task === 'weights' ? 'update' : 'probs';
  if (trustAggregator && p.mode === 'central') return accountedNoiseMultiplier(p.noiseMultiplier, upload, 'central');
  // Alone: only the share of the noise this client adds itself protects its upload.
  return accountedNoiseMultiplier(p.noiseMultiplier / Math.sqrt(p.noiseShares), upload, 'local');
}

/** The per-entry noise standard deviation this client adds to a round's upload (`rows` proxy rows; 0 for weights). */
export function noiseStd(msg: RoundMsg): number {
  const p = msg.privacy!;
  const norm = msg.task === 'weights' ? p.clip : p.clip * Math.sqrt(msg.indices?.length ?? 0);
  return (p.noiseMultiplier * norm) / Math.sqrt(p.noiseShares);
}

/**
 * The client's side of DP accounting: the same RDP accountant as the server's, run on the client's own view of
 * every upload it made with noise. A round is declined when it carries no `privacy` (ε would be infinite) or when one
 * more upload would pass the budget.
 */
export class ClientPrivacy {
  readonly accountant: RdpAccountant;
  readonly delta: number;

  constructor(readonly budget: PrivacyBudget) {
    if (!(budget.epsilon > 0)) throw new RangeError(`privacy.epsilon must be > 0, got ${budget.epsilon}`);
    this.delta = budget.delta ?? 1e-5;
    this.accountant = budget.state !== undefined ? RdpAccountant.fromJSON(budget.state) : new RdpAccountant();
  }

  get epsilon(): number {
    return this.accountant.epsilon(this.delta);
  }

  /** Why this round must not be answered, or null when it may. */
  refusal(msg: RoundMsg): string | null {
    if (!msg.privacy) return 'the round asks for an upload without DP noise (its ε would be infinite)';
    const z = effectiveNoiseMultiplier(msg, this.budget.trustAggregator);
    const after = this.accountant.epsilonIfComposed(z, this.delta);
    if (after > this.budget.epsilon * (1 + 1e-9)) {
      return `one more upload would spend ε = ${after.toFixed(3)} in all, past this client's budget of ${this.budget.epsilon} (δ = ${this.delta}; spent so far ${this.epsilon.toFixed(3)})`;
    }
    return null;
  }

  /** Count one upload of this round. */
  charge(msg: RoundMsg): PrivacySpend {
    const z = effectiveNoiseMultiplier(msg, this.budget.trustAggregator);
    const before = this.epsilon;
    this.accountant.compose(z);
    const epsilon = this.epsilon;
    return { round: msg.round, epsilon, epsilonRound: epsilon - before, budget: this.budget.epsilon, state: this.accountant.toJSON() };
  }
}
