import type { ClientMsg, RoundMsg, SecAggMaskedMsg, SecAggPeersMsg, SecAggRosterMsg, SecAggUnmaskMsg } from '../shared/protocol/messages.ts';
import { SecAggClient } from '../shared/secagg/index.ts';

/**
 * This client's part of one round's secure aggregation (shared/secagg/, docs/privacy.md). The key exchange runs while
 * the client trains: keys go out as soon as the round arrives, the sealed shares when the roster comes; the masked
 * input waits for the peer list (sa-peers), and the reveal is given only after the masked input went out — and never
 * both secrets of one peer (SecAggClient enforces it).
 */
export class SecureSession {
  private readonly core: SecAggClient;
  private peersReady: Promise<void>;
  private setPeersReady!: () => void;
  private failPeers!: (e: Error) => void;
  private maskedSent = false;
  private pendingUnmask: SecAggUnmaskMsg | null = null;
  /** Answers already given, sent again if the server repeats a step (after a reconnect it may not have had them). */
  private sharesMsg: ClientMsg | null = null;
  private sharing = false;
  private peersTaken = false;

  constructor(
    private readonly clientId: string,
    readonly round: RoundMsg,
    private readonly send: (msg: ClientMsg) => void,
    private readonly log: (m: string) => void,
  ) {
    const sa = round.secagg!;
    this.core = new SecAggClient(clientId, { session: sa.session, threshold: sa.threshold, scale: sa.scale, bound: sa.bound, length: sa.length });
    this.peersReady = new Promise((resolve, reject) => ((this.setPeersReady = resolve), (this.failPeers = reject)));
    this.peersReady.catch(() => {});
  }

  get session(): string {
    return this.round.secagg!.session;
  }

  start(): void {
    const k = this.core.advertise();
    this.send({ type: 'sa-keys', round: this.round.round, session: this.session, cPk: k.cPk, sPk: k.sPk });
  }

  async onRoster(msg: SecAggRosterMsg): Promise<void> {
    if (this.sharesMsg) return this.send(this.sharesMsg);
    if (this.sharing) return;
    this.sharing = true;
    try {
      const sealed = await this.core.shareKeys(msg.roster);
      this.sharesMsg = { type: 'sa-shares', round: this.round.round, session: this.session, shares: sealed.map((s) => ({ to: s.to, ciphertext: s.ciphertext })) };
      this.send(this.sharesMsg);
    } catch (e) {
      this.abort(`refused the roster: ${(e as Error).message}`);
    }
  }

  onPeers(msg: SecAggPeersMsg): void {
    if (this.peersTaken) return;
    this.peersTaken = true;
    try {
      this.core.receiveShares(msg.peers, msg.shares);
      this.setPeersReady();
    } catch (e) {
      this.abort(`refused the peers' shares: ${(e as Error).message}`);
    }
  }

  /** The masked upload of `values` (length secagg.length), once the peers are known (or null if they never were by the deadline). */
  async masked(values: ArrayLike<number>, proxyHash: string, stats: SecAggMaskedMsg['stats']): Promise<SecAggMaskedMsg | null> {
    const wait = Math.max(0, this.round.deadline - Date.now());
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<'late'>((r) => {
      timer = setTimeout(() => r('late'), wait);
      (timer as { unref?: () => void }).unref?.();
    });
    try {
      if ((await Promise.race([this.peersReady.then(() => 'ok' as const), timedOut])) === 'late') {
        this.log(`round ${this.round.round}: the secure aggregation's key exchange did not finish before the deadline; no upload`);
        return null;
      }
    } catch (e) {
      this.log(`round ${this.round.round}: ${(e as Error).message}; no upload`);
      return null;
    } finally {
      clearTimeout(timer);
    }
    const masked = this.core.mask(values);
    return { type: 'sa-masked', round: this.round.round, session: this.session, proxyHash, masked, stats };
  }

  /** The masked input is on its way: a reveal asked for before this is answered now. */
  maskedGone(): void {
    this.maskedSent = true;
    const u = this.pendingUnmask;
    this.pendingUnmask = null;
    if (u) this.onUnmask(u);
  }

  onUnmask(msg: SecAggUnmaskMsg): void {
    if (!this.maskedSent) {
      this.pendingUnmask = msg;
      return;
    }
    try {
      const reveals = this.core.reveal({ survivors: msg.survivors, dropped: msg.dropped });
      this.send({ type: 'sa-reveal', round: this.round.round, session: this.session, reveals });
    } catch (e) {
      this.log(`round ${this.round.round}: refused to reveal: ${(e as Error).message}`);
    }
  }

  private abort(why: string): void {
    this.log(`round ${this.round.round}: secure aggregation ${why}`);
    this.failPeers(new Error(`secure aggregation ${why}`));
  }
}
