import type { PrivacyStatus } from '../../shared/dashboard-feed.ts';
import type { RoundMsg } from '../../shared/protocol/messages.ts';
import { calibrateNoiseMultiplier, epsilonFromRdp, rdpSampledGaussian, RdpAccountant } from '../../shared/privacy/rdp.ts';
import { accountedNoiseMultiplier } from '../../shared/privacy/mechanisms.ts';
import type { ServerConfig } from '../config.ts';

/** What the uploads of a strategy are: probability rows (distillation) or a weight update (fedavg). */
export type UploadKind = 'probs' | 'update';

/**
 * Who adds the noise, and so against whom the guarantee holds (docs/privacy.md):
 * - `local`: every client adds all of it to its own upload. Each upload alone is (ε, δ)-DP for any change of the
 *   client's data (replace adjacency), so the guarantee holds against the server itself.
 * - `distributed` (with secure aggregation): each of the ≥ t contributors adds 1/t of the variance; the server only
 *   ever sees the masked sum, whose noise is at least the full amount. The guarantee is user-level (add/remove one
 *   client) for the sum, against the server and everyone after it, assuming the t contributors noised honestly.
 * - `central` (--dp-noise central, no secure aggregation): the same split of the noise over the m uploads a round
 *   needs (its quorum), but the server sees each upload with only 1/m of the noise: the guarantee holds for the
 *   aggregate and the student (other clients, whoever gets the model), not against the server — the trusted
 *   aggregator of DP-FedAvg (McMahan et al. 2018).
 */
export type NoiseMode = 'local' | 'distributed' | 'central';


export interface DpPlan {
  kind: UploadKind;
  mode: NoiseMode;
  /** z as sent to clients: noise std over the clip-based norm (C·√R for probabilities, S for an update). */
  noiseMultiplier: number;
  /** z over the sensitivity the accountant uses (accountedNoiseMultiplier in shared/privacy/mechanisms.ts). */
  effectiveNoiseMultiplier: number;
  delta: number;
  clip: number;
  temperature: number;
  /** Uploads per client the calibration planned for. */
  plannedRounds: number;
  /** ε of one upload, and of plannedRounds uploads. */
  epsilonPerRound: number;
  epsilonPlanned: number;
  /** A client is not selected once one more upload would take it past this. */
  budget: number;
}

/** The DP setting a server's config asks for, with the noise calibrated; null when DP is off. */
export function planPrivacy(cfg: ServerConfig, kind: UploadKind, mode: NoiseMode): DpPlan | null {
  const p = cfg.privacy;
  if (!(p.epsilon > 0) && !(p.noiseMultiplier > 0)) return null;
  const plannedRounds = p.rounds || cfg.rounds;
  // What the accountant charges per unit of the z clients are sent (shared/privacy/mechanisms.ts).
  const ratio = accountedNoiseMultiplier(1, kind, mode);
  let effective: number;
  if (p.noiseMultiplier > 0) effective = p.noiseMultiplier * ratio;
  else {
    if (!plannedRounds) throw new RangeError('--dp-epsilon needs --dp-rounds (or --rounds) to calibrate the noise for');
    effective = calibrateNoiseMultiplier({ epsilon: p.epsilon, delta: p.delta, steps: plannedRounds });
  }
  const eps = (steps: number) => epsilonFromRdp(rdpSampledGaussian(1, effective, steps), p.delta).epsilon;
  const epsilonPlanned = plannedRounds ? eps(plannedRounds) : Infinity;
  return {
    kind,
    mode,
    noiseMultiplier: effective / ratio,
    effectiveNoiseMultiplier: effective,
    delta: p.delta,
    clip: p.clip,
    temperature: p.temperature,
    plannedRounds,
    epsilonPerRound: eps(1),
    epsilonPlanned,
    budget: p.budget || (p.epsilon > 0 ? p.epsilon : epsilonPlanned),
  };
}

/** The `privacy` field of a round task; `noiseShares` is t (distributed) or the quorum (central), 1 for local noise. */
export function privacyTask(plan: DpPlan, noiseShares: number): NonNullable<RoundMsg['privacy']> {
  return { noiseMultiplier: plan.noiseMultiplier, clip: plan.clip, temperature: plan.temperature, noiseShares, delta: plan.delta, mode: plan.mode };
}

/**
 * Each client's privacy spending as the server counts it: one release of the plan's mechanism per upload taken in
 * (local noise) or per contribution to an unmasked sum (distributed). Kept in checkpoints. The clients run the same
 * accountant on their side and stop on their own budget: the server's count is for selection and reporting.
 */
export class PrivacyLedger {
  private readonly accounts = new Map<string, RdpAccountant>();
  /** Clients that said their own budget is spent (their count may differ from ours: δ, earlier sessions). */
  private readonly spent = new Set<string>();
  /** ε after the latest round, and that round's per-release ε (for summaries). */
  constructor(readonly plan: DpPlan) {}

  private account(clientId: string): RdpAccountant {
    let a = this.accounts.get(clientId);
    if (!a) this.accounts.set(clientId, (a = new RdpAccountant()));
    return a;
  }

  /** One release for each of these clients. */
  charge(clientIds: Iterable<string>): void {
    for (const id of clientIds) this.account(id).compose(this.plan.effectiveNoiseMultiplier);
  }

  epsilon(clientId: string): number {
    return this.accounts.get(clientId)?.epsilon(this.plan.delta) ?? 0;
  }

  releases(clientId: string): number {
    return this.accounts.get(clientId)?.releases ?? 0;
  }

  markExhausted(clientId: string): void {
    this.spent.add(clientId);
  }

  /** Would one more upload take this client past the budget (or has it said its own budget is spent)? */
  exhausted(clientId: string): boolean {
    if (this.spent.has(clientId)) return true;
    const a = this.accounts.get(clientId) ?? new RdpAccountant();
    return a.epsilonIfComposed(this.plan.effectiveNoiseMultiplier, this.plan.delta) > this.plan.budget * (1 + 1e-9);
  }

  /** The federation's ε: user-level, the most any one client has spent. */
  maxEpsilon(): number {
    let m = 0;
    for (const a of this.accounts.values()) m = Math.max(m, a.epsilon(this.plan.delta));
    return m;
  }

  status(): PrivacyStatus {
    const p = this.plan;
    let exhausted = 0;
    for (const id of new Set([...this.accounts.keys(), ...this.spent])) if (this.exhausted(id)) exhausted++;
    return {
      mode: p.mode,
      delta: p.delta,
      noiseMultiplier: p.noiseMultiplier,
      effectiveNoiseMultiplier: p.effectiveNoiseMultiplier,
      clip: p.clip,
      epsilonPerRound: p.epsilonPerRound,
      epsilon: this.maxEpsilon(),
      budget: p.budget,
      exhaustedClients: exhausted,
    };
  }

  toJSON(): { accounts: [string, ReturnType<RdpAccountant['toJSON']>][]; spent: string[] } {
    return { accounts: [...this.accounts].map(([id, a]) => [id, a.toJSON()]), spent: [...this.spent] };
  }

  /** A checkpoint's ledger; anything unreadable is dropped (and said so by the caller), never half-loaded. */
  load(raw: unknown): void {
    const accounts = (raw as { accounts?: unknown })?.accounts;
    if (!Array.isArray(accounts)) return;
    const loaded = new Map<string, RdpAccountant>();
    for (const entry of accounts) {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string') throw new Error('privacy ledger: bad entry');
      loaded.set(entry[0], RdpAccountant.fromJSON(entry[1]));
    }
    this.accounts.clear();
    for (const [id, a] of loaded) this.accounts.set(id, a);
    const spent = (raw as { spent?: unknown }).spent;
    this.spent.clear();
    if (Array.isArray(spent)) for (const id of spent) if (typeof id === 'string') this.spent.add(id);
  }
}
