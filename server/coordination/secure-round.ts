import type { SecAggClientMsg, SecAggMaskedMsg, ServerMsg } from '../../shared/protocol/messages.ts';
import { ProtocolError } from '../../shared/protocol/validate.ts';
import { SecAggServer } from '../../shared/secagg/index.ts';
import type { SecAggParams } from '../../shared/secagg/params.ts';
import type { Logger } from '../logger.ts';

/** What a secure round needs from the round scheduler: sending to one client, and the log. */
export interface SecureRoundHost {
  send(clientId: string, msg: ServerMsg): number;
  log: Logger;
}

type Phase = 'keys' | 'shares' | 'input' | 'reveal' | 'done' | 'failed';

/**
 * One round of secure aggregation (Bonawitz et al. 2017, semi-honest; shared/secagg/) on top of a round's tasks:
 *
 *   round (with `secagg`) → sa-keys → [sa-roster] → sa-shares → [sa-peers] → sa-masked (the upload) → round closes →
 *   [sa-unmask] → sa-reveal → the server unmasks Σ of the survivors' vectors.
 *
 * Each key-exchange step waits for every client still in (the selected, then the roster U1, then U2) or for the
 * phase timeout, and goes on with whoever answered if that is at least the threshold t; fewer and the round fails
 * (the student stays as it is). A client that sent shares but no masked input (dropped before masking) has its mask
 * key rebuilt from t survivors' shares; one that masked and then vanished before the reveal costs nothing as long as
 * t survivors reveal. Nothing here holds a client's vector in the clear: only masked vectors until the unmask, then
 * only their sum, and dispose() drops the rest.
 */
export class SecureRound {
  private readonly core: SecAggServer;
  private phase: Phase = 'keys';
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** When the round closed to uploads and unmasking began, and when the sum was out (or the attempt ended). */
  private unmaskFrom = 0;
  private unmaskTo = 0;
  /** Bytes of the key exchange and the reveal, both directions (the masked uploads count as uplink, as logits do). */
  keyBytes = 0;
  /** Why the round failed, if it did. */
  failure: string | null = null;
  /** Called when a client can no longer upload (left out of U1 or U2): the round stops waiting for it. */
  onLeftOut: (clientIds: string[]) => void = () => {};
  /** Called when the round cannot complete any more (too few at a step). */
  onFailed: () => void = () => {};
  private revealDone: (() => void) | null = null;
  private survivors: string[] = [];
  /** The last step message each client was sent: sent again when it reconnects (its old socket may have lost it). */
  private readonly lastSent = new Map<string, ServerMsg>();
  /** Who has answered each step (keys, shares, reveal). */
  private readonly answered = new Map<string, Set<string>>();

  constructor(
    private readonly host: SecureRoundHost,
    readonly round: number,
    readonly params: SecAggParams,
    private readonly selected: string[],
    private readonly phaseTimeoutMs: number,
  ) {
    this.core = new SecAggServer(params, selected);
    this.arm(() => this.toShares());
  }

  /** The key exchange's and the reveal's messages. Throws ProtocolError to refuse. */
  handle(clientId: string, msg: Exclude<SecAggClientMsg, SecAggMaskedMsg>, bytes: number): void {
    this.check(msg);
    // A step sent again after a reconnect (the client could not know the first one arrived) changes nothing.
    const seen = this.answered.get(msg.type) ?? new Set<string>();
    if (seen.has(clientId)) return;
    const expect = msg.type === 'sa-keys' ? 'keys' : msg.type === 'sa-shares' ? 'shares' : 'reveal';
    if (this.phase !== expect) throw new ProtocolError('late', `round ${this.round}: secure aggregation is past '${msg.type}' (now: ${this.phase})`);
    this.core$(() => {
      if (msg.type === 'sa-keys') this.core.addKeys({ clientId, cPk: msg.cPk, sPk: msg.sPk });
      else if (msg.type === 'sa-shares') this.core.addShares(clientId, msg.shares.map((s) => ({ from: clientId, to: s.to, ciphertext: s.ciphertext })));
      else this.core.addReveal(clientId, msg.reveals);
    });
    this.keyBytes += bytes;
    seen.add(clientId);
    this.answered.set(msg.type, seen);
    // u2() and roster() freeze their sets: called only when everyone expected answered, or at the phase timeout.
    if (msg.type === 'sa-keys' && ++this.keysIn === this.selected.length) this.toShares();
    else if (msg.type === 'sa-shares' && ++this.sharesIn === this.rosterSize) this.toInput();
    else if (msg.type === 'sa-reveal' && this.core.reveals === this.survivors.length) this.revealDone?.();
  }

  /** A masked upload: the client must be in U2 and the round in its input phase. */
  masked(clientId: string, msg: SecAggMaskedMsg): void {
    this.check(msg);
    if (this.phase !== 'input') throw new ProtocolError('late', `round ${this.round}: masked inputs are taken after 'sa-peers' and before the round closes (now: ${this.phase})`);
    if (msg.masked.length !== this.params.length) throw new ProtocolError('bad-shape', `masked must hold ${this.params.length} values (round.secagg.length), got ${msg.masked.length}`);
    this.core$(() => this.core.addMasked(clientId, msg.masked));
  }

  /** Clients that may still upload a masked vector. */
  expected(): string[] {
    return this.phase === 'input' ? this.core.u2() : this.selected;
  }

  /**
   * The round closed: ask the survivors for their reveals, wait for all of them or the phase timeout, and unmask.
   * Returns Σ of the survivors' vectors and how many they are, or null (with `failure` set) when it cannot.
   */
  async finish(): Promise<{ sum: Float64Array; count: number } | null> {
    this.disarm();
    this.unmaskFrom = performance.now();
    try {
      return await this.unmaskNow();
    } finally {
      this.unmaskTo = performance.now();
    }
  }

  private async unmaskNow(): Promise<{ sum: Float64Array; count: number } | null> {
    if (this.phase !== 'input') return this.fail(this.failure ?? `the key exchange did not finish (stopped in '${this.phase}')`);
    let request: { survivors: string[]; dropped: string[] };
    try {
      request = this.core.unmaskRequest();
    } catch (e) {
      return this.fail((e as Error).message);
    }
    this.phase = 'reveal';
    this.survivors = request.survivors;
    if (request.dropped.length) this.host.log.info({ round: this.round, dropped: request.dropped }, `round ${this.round}: ${request.dropped.length} client(s) dropped after the key exchange; their masks are rebuilt from the survivors' shares`);
    const waited = new Promise<void>((resolve) => {
      this.revealDone = resolve;
      this.timer = setTimeout(resolve, this.phaseTimeoutMs);
    });
    const unmask: ServerMsg = { type: 'sa-unmask', round: this.round, session: this.params.session, survivors: request.survivors, dropped: request.dropped };
    for (const id of request.survivors) this.sendStep(id, unmask);
    await waited;
    this.disarm();
    try {
      const result = await this.core.unmask();
      this.phase = 'done';
      return result;
    } catch (e) {
      return this.fail(`unmasking failed: ${(e as Error).message}`);
    } finally {
      this.core.dispose();
    }
  }

  /** A client reconnected: it gets the step it may have missed again (the SDK takes a repeat as a no-op). */
  resend(clientId: string): void {
    const msg = this.lastSent.get(clientId);
    if (msg && this.phase !== 'done' && this.phase !== 'failed') this.keyBytes += this.host.send(clientId, msg);
  }

  private sendStep(clientId: string, msg: ServerMsg): void {
    this.lastSent.set(clientId, msg);
    this.keyBytes += this.host.send(clientId, msg);
  }

  /** Whose vectors the unmasked sum holds (U3). */
  contributors(): string[] {
    return this.survivors;
  }

  /**
   * What the protocol added to the round's wall time: from the round's close to the unmasked sum (the reveals and the
   * unmasking). The key exchange runs while the clients train, so it only shows when it is slower than training.
   */
  seconds(): number {
    return this.unmaskTo > this.unmaskFrom ? (this.unmaskTo - this.unmaskFrom) / 1000 : 0;
  }

  dispose(): void {
    this.disarm();
    this.core.dispose();
    this.revealDone?.();
  }

  // ---------------- phases ----------------

  private rosterSize = 0;
  private keysIn = 0;
  private sharesIn = 0;

  private toShares(): void {
    if (this.phase !== 'keys') return;
    this.disarm();
    let roster;
    try {
      roster = this.core.roster();
    } catch (e) {
      this.fail((e as Error).message);
      return;
    }
    this.phase = 'shares';
    this.rosterSize = roster.length;
    const ids = new Set(roster.map((k) => k.clientId));
    this.leftOut(this.selected.filter((id) => !ids.has(id)), 'sent no keys in time');
    const msg: ServerMsg = { type: 'sa-roster', round: this.round, session: this.params.session, roster };
    for (const k of roster) this.sendStep(k.clientId, msg);
    this.arm(() => this.toInput());
  }

  private toInput(): void {
    if (this.phase !== 'shares') return;
    this.disarm();
    let u2: string[];
    try {
      u2 = this.core.u2();
    } catch (e) {
      this.fail((e as Error).message);
      return;
    }
    this.phase = 'input';
    const inU2 = new Set(u2);
    this.leftOut(this.core.roster().map((k) => k.clientId).filter((id) => !inU2.has(id)), 'sent no shares in time');
    for (const id of u2) {
      const shares = this.core.sharesFor(id);
      this.sendStep(id, { type: 'sa-peers', round: this.round, session: this.params.session, peers: u2, shares });
    }
  }

  // ---------------- helpers ----------------

  private leftOut(ids: string[], why: string): void {
    if (!ids.length) return;
    this.host.log.info({ round: this.round, clients: ids }, `round ${this.round}: ${ids.length} client(s) ${why}; secure aggregation goes on without them`);
    this.onLeftOut(ids);
  }

  private fail(why: string): null {
    this.disarm();
    this.phase = 'failed';
    this.failure = why;
    this.host.log.warn({ round: this.round, why }, `round ${this.round}: secure aggregation failed: ${why}`);
    this.core.dispose();
    this.onFailed();
    return null;
  }

  private check(msg: { round: number; session: string }): void {
    if (msg.session !== this.params.session) throw new ProtocolError('stale-round', `session ${msg.session} is not round ${this.round}'s (${this.params.session})`);
  }

  /** The core's validation errors are the sender's mistakes. */
  private core$(f: () => void): void {
    try {
      f();
    } catch (e) {
      if (e instanceof ProtocolError) throw e;
      throw new ProtocolError('bad-message', `secure aggregation: ${(e as Error).message}`);
    }
  }

  private arm(next: () => void): void {
    this.disarm();
    this.timer = setTimeout(next, this.phaseTimeoutMs);
    this.timer.unref?.();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
