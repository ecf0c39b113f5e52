import type { DashboardClient } from '../../shared/dashboard-feed.ts';
import type { HelloMsg } from '../../shared/protocol/messages.ts';
import { PROTOCOL_VERSION } from '../../shared/protocol/messages.ts';
import { ProtocolError } from '../../shared/protocol/validate.ts';
import type { Logger } from '../logger.ts';
import { hashResumeToken, newResumeToken, resumeTokenMatches } from '../state/resume-token.ts';
import type { JournalRecord, UploadJournal } from '../state/upload-journal.ts';
import type { Participant } from '../strategies/strategy.ts';

export interface ClientRecord {
  participant: Participant;
  /** sha256 of the resume token issued at first registration (a hello for a connected id must carry the token). */
  resumeTokenHash: string;
  connected: boolean;
  registeredAt: number;
  lastSeen: number;
  /** The TensorFlow.js backend its hello named (for dashboards; not part of the Participant strategies see). */
  backend?: string;
  /** Its last accepted upload: when, for which round (online: the version being built), and (online) its staleness. */
  lastUploadAt?: number;
  lastUploadRound?: number;
  lastUploadStaleness?: number;
  /** Rounds (online: tasks) in a row it was selected for and did not upload by their end. */
  missed: number;
  /** missed reached --idle-after-rounds: not selected nor sent anything until a sign of life (hello, upload). */
  idle: boolean;
  /** Times it went idle since its last accepted upload, and when it last did (for the hello back-off, see revived()). */
  strikes?: number;
  idleSince?: number;
}

/** /status's client counts: connected = active + idle; offline = registered − connected. */
export interface ClientCounts {
  registered: number;
  connected: number;
  active: number;
  idle: number;
  offline: number;
}

/**
 * A registered client as checkpoints and the journal keep it: the token's hash only, never the token; `lastSeen`
 * (ms, checkpoints only) so that --client-retention-s counts across restarts.
 */
export type StoredClient = Participant & { resumeTokenHash: string; lastSeen?: number };
/** As checkpoints made before resume tokens were hashed hold it: hashed on restore. */
export type LegacyStoredClient = Participant & { resumeToken: string };

/** What a hello established: the participant, the token its welcome carries, and whether the id was known before. */
export interface Registration {
  participant: Participant;
  resumeToken: string;
  returning: boolean;
}

export interface ClientRegistryOptions {
  /** Classes of the proxy set: a hello's class histogram must have one count per class. */
  numClasses: number;
  /** Registrations are journaled (replayed after a crash) before the welcome goes out. */
  journal: UploadJournal;
  log: Logger;
  /** Registered ids at most (a hello for a new id beyond is refused), default unbounded. */
  maxClients?: number;
  /** Missed rounds in a row that make a client idle; 0/absent = never. */
  idleAfterRounds?: number;
  /** Offline clients not seen for this long are pruned; 0/absent = never. */
  retentionMs?: number;
  /**
   * The hello back-off's unit (max(round timeout, 60 s)): an id that went idle twice without uploading in between can't be
   * revived by a hello for this long, doubling with each further strike (see revived()). Default 60 s.
   */
  idleBackoffMs?: number;
}

/**
 * Who the federation knows (Flower's ClientManager): registration and the resume-token check, connected/offline,
 * the eligible connected clients selection draws from, and the rows /status and the dashboard show. Rounds, tasks
 * and uploads are the schedulers'; this only records that an upload was accepted.
 */
export class ClientRegistry {
  private readonly clients = new Map<string, ClientRecord>();

  constructor(private readonly o: ClientRegistryOptions) {}

  /**
   * Check a hello and (re-)register its client; throws ProtocolError to refuse it. `vouched`: a per-client credential
   * for this id came with the connection (server/auth.ts), which proves the id as well as its resume token would.
   */
  register(hello: HelloMsg, o: { vouched?: boolean } = {}): Registration {
    if (hello.protocol !== PROTOCOL_VERSION) {
      throw new ProtocolError('protocol-version', `server speaks protocol ${PROTOCOL_VERSION}, client ${hello.protocol}: upgrade the older side`);
    }
    const c = this.o.numClasses;
    if (hello.classCounts && hello.classCounts.length !== c) {
      throw new ProtocolError('bad-shape', `classCounts must have one count per class (${c}), got ${hello.classCounts.length}`);
    }
    const p: Participant = { id: hello.clientId, model: hello.model, numSamples: hello.numSamples, classCounts: hello.classCounts, codec: hello.codec, weightEncodings: hello.weightEncodings, rowEncodings: hello.rowEncodings };
    const prev = this.clients.get(p.id);
    const cap = this.o.maxClients ?? Infinity;
    if (!prev && this.clients.size >= cap && !this.evictLongestOffline()) {
      throw new ProtocolError('too-many-clients', `this server takes at most ${cap} registered clients and all ${this.clients.size} are connected; known ids can still reconnect`);
    }
    const presented = prev !== undefined && hello.resumeToken !== undefined && resumeTokenMatches(hello.resumeToken, prev.resumeTokenHash);
    // Someone else may hold the shared token: replacing a live connection of an id needs that id's resume token, and
    // so does taking back a known id that is offline (its uploads, rounds and reputation are that client's), unless a
    // credential for exactly this id vouches for the hello.
    if (prev?.connected && !presented) {
      throw new ProtocolError('unauthorized', `client id '${p.id}' is connected; a reconnect must present the resumeToken its welcome gave`);
    }
    if (prev && !presented && !o.vouched) {
      throw new ProtocolError(
        'unauthorized',
        `client id '${p.id}' is registered (offline); a hello for it must present the resumeToken its first welcome gave. ` +
          'A client that lost it joins under a new id, or connects with a per-client credential for this id (fedistill credential issue)',
      );
    }
    // The token itself is only ever in this welcome (and the client's memory); the server keeps its hash.
    const resumeToken = presented ? hello.resumeToken! : newResumeToken();
    const resumeTokenHash = presented ? prev.resumeTokenHash : hashResumeToken(resumeToken);
    if (!presented || JSON.stringify(prev.participant) !== JSON.stringify(p)) this.o.journal.append('client', { participant: p, resumeTokenHash });
    const { lastUploadAt, lastUploadRound, lastUploadStaleness } = prev ?? {};
    this.clients.set(p.id, { participant: p, resumeTokenHash, connected: true, registeredAt: prev?.registeredAt ?? Date.now(), lastSeen: Date.now(), backend: hello.backend, lastUploadAt, lastUploadRound, lastUploadStaleness, strikes: prev?.strikes, idleSince: prev?.idleSince, ...this.revived(prev, 'hello') });
    this.o.log.info({ clientId: p.id, model: p.model, numSamples: p.numSamples, codec: p.codec, backend: hello.backend }, `client ${p.id} ${prev ? 're' : ''}registered (${p.model}, ${p.numSamples} samples, ${p.codec})`);
    return { participant: p, resumeToken, returning: prev !== undefined };
  }

  /** A client from a checkpoint or the journal: not connected until it says hello. */
  restore(c: StoredClient | LegacyStoredClient): void {
    const { resumeTokenHash, resumeToken, ...p } = c as Participant & { resumeTokenHash?: string; resumeToken?: string };
    // '' matches no token: a record without either field can't be taken over, only re-registered once disconnected.
    const hash = resumeTokenHash ?? (resumeToken ? hashResumeToken(resumeToken) : '');
    const lastSeen = (c as StoredClient).lastSeen ?? 0;
    this.clients.set(p.id, { participant: p, resumeTokenHash: hash, connected: false, registeredAt: Date.now(), lastSeen, missed: 0, idle: false });
  }

  /** Takes the journal's registration records; false for any other kind. */
  replay(r: JournalRecord): boolean {
    if (r.kind === 'forget') {
      for (const id of r.clientIds as string[]) this.clients.delete(id);
      return true;
    }
    if (r.kind !== 'client') return false;
    const { participant, resumeTokenHash, resumeToken } = r as unknown as { participant: Participant; resumeTokenHash?: string; resumeToken?: string };
    this.restore(resumeTokenHash ? { ...participant, resumeTokenHash } : { ...participant, resumeToken: resumeToken ?? '' });
    return true;
  }

  /** Its connection closed; false if the id is unknown. */
  disconnect(clientId: string): boolean {
    const rec = this.clients.get(clientId);
    if (!rec) return false;
    rec.connected = false;
    rec.lastSeen = Date.now();
    this.o.log.info({ clientId }, `client ${clientId} disconnected`);
    return true;
  }

  get(clientId: string): ClientRecord | undefined {
    return this.clients.get(clientId);
  }

  /** The record of a client sending something other than hello; throws if it never said hello. */
  sender(clientId: string): ClientRecord {
    const rec = this.clients.get(clientId);
    if (!rec) throw new ProtocolError('not-registered', 'send hello before uploading');
    rec.lastSeen = Date.now();
    return rec;
  }

  isConnected(clientId: string): boolean {
    return this.clients.get(clientId)?.connected ?? false;
  }

  connectedIds(): string[] {
    return [...this.clients].filter(([, c]) => c.connected).map(([id]) => id);
  }

  anyConnected(): boolean {
    return [...this.clients.values()].some((c) => c.connected);
  }

  /** Selection's input: connected clients the strategy can use, in registration order. */
  eligibleConnected(eligible: (p: Participant) => boolean): Participant[] {
    return [...this.clients.values()].filter((c) => c.connected && !c.idle && eligible(c.participant)).map((c) => c.participant);
  }

  /** Whether it is idle (missed too many rounds): it is sent no task and no student. */
  isIdle(clientId: string): boolean {
    return this.clients.get(clientId)?.idle ?? false;
  }

  /**
   * It was selected (online: given a task) and did not upload by the end: one more miss; at --idle-after-rounds misses
   * in a row it goes idle, so absent or fake clients stop being selected (and keeping rounds from their quorum) and
   * stop being sent the student every round. Returns true when it just went idle.
   */
  missed(clientId: string, what: string): boolean {
    const rec = this.clients.get(clientId);
    const after = this.o.idleAfterRounds ?? 0;
    if (!rec || rec.idle) return false;
    rec.missed++;
    if (after === 0 || rec.missed < after) return false;
    rec.idle = true;
    rec.strikes = (rec.strikes ?? 0) + 1;
    rec.idleSince = Date.now();
    this.o.log.info({ clientId, missed: rec.missed }, `client ${clientId} is idle: selected ${rec.missed} ${what} in a row without uploading; not selected until it says hello or uploads`);
    return true;
  }

  /**
   * A sign of life from an idle client (an upload, even one refused as stale or late): selectable again, with one
   * more miss allowed before it is idle again (an accepted upload clears its misses).
   */
  revive(rec: ClientRecord): void {
    if (!rec.idle) return;
    Object.assign(rec, this.revived(rec, 'upload'));
    this.o.log.info({ clientId: rec.participant.id }, `client ${rec.participant.id} is active again`);
  }

  /**
   * Forget offline clients not seen for the retention time: one journal record (replayed after a crash), and the next
   * checkpoint no longer lists them. A pruned client that comes back registers as new. Returns the ids forgotten.
   */
  prune(now = Date.now()): string[] {
    const keep = this.o.retentionMs ?? 0;
    if (keep <= 0) return [];
    const gone: string[] = [];
    for (const [id, c] of this.clients) if (!c.connected && now - (c.lastSeen || c.registeredAt) > keep) gone.push(id);
    if (gone.length === 0) return gone;
    this.o.journal.append('forget', { clientIds: gone });
    for (const id of gone) this.clients.delete(id);
    this.o.log.info({ clients: gone.length, retentionS: keep / 1000 }, `forgot ${gone.length} client${gone.length === 1 ? '' : 's'} offline for more than ${keep / 1000} s`);
    return gone;
  }

  /**
   * At the client cap, a new id takes the place of the id offline the longest (journaled like pruning): ids registered
   * once and abandoned can't fill the registry and lock honest newcomers out. False when every id is connected.
   */
  private evictLongestOffline(): boolean {
    let oldest: ClientRecord | undefined;
    for (const c of this.clients.values()) {
      if (!c.connected && (!oldest || (c.lastSeen || c.registeredAt) < (oldest.lastSeen || oldest.registeredAt))) oldest = c;
    }
    if (!oldest) return false;
    const id = oldest.participant.id;
    this.o.journal.append('forget', { clientIds: [id] });
    this.clients.delete(id);
    this.o.log.info({ clientId: id, maxClients: this.o.maxClients }, `forgot client ${id} (offline the longest) to make room at the client cap`);
    return true;
  }

  /** Every registered id (offline ones too). */
  ids(): string[] {
    return [...this.clients.keys()];
  }

  counts(): ClientCounts {
    let connected = 0;
    let idle = 0;
    for (const c of this.clients.values()) {
      if (!c.connected) continue;
      connected++;
      if (c.idle) idle++;
    }
    const registered = this.clients.size;
    return { registered, connected, active: connected - idle, idle, offline: registered - connected };
  }

  /** An upload of `clientId` was accepted (for dashboards); returns when. */
  uploaded(rec: ClientRecord, round: number, staleness?: number): number {
    rec.lastUploadAt = Date.now();
    rec.lastUploadRound = round;
    rec.lastUploadStaleness = staleness;
    rec.missed = 0;
    rec.idle = false;
    rec.strikes = 0;
    return rec.lastUploadAt;
  }

  /**
   * The idle state after a sign of life: active again, idle after one more miss. An upload (even one refused as late)
   * is work done, so it always revives. A hello costs nothing to send, so a hello revives at once only after a
   * client's first strike (an honest client that stalled once and restarted); after k ≥ 2 strikes without an upload
   * in between, only once it has been idle for idleBackoffMs·2^(k−2). A fake that says hello after every round thus
   * costs rounds at a geometrically falling rate instead of one round in two.
   */
  private revived(prev: ClientRecord | undefined, sign: 'hello' | 'upload'): Pick<ClientRecord, 'missed' | 'idle'> {
    if (!prev?.idle) return { missed: prev?.missed ?? 0, idle: false };
    const strikes = prev.strikes ?? 1;
    const wait = sign === 'hello' && strikes >= 2 ? (this.o.idleBackoffMs ?? 60_000) * 2 ** Math.min(strikes - 2, 20) : 0;
    if (Date.now() - (prev.idleSince ?? 0) < wait) return { missed: prev.missed, idle: true };
    return { missed: Math.max(0, (this.o.idleAfterRounds ?? 0) - 1), idle: false };
  }

  /** "waiting for 2 more clients before round 1 (1/3 connected)": the caller says it when the count changes. */
  logWaiting(have: number, need: number, what: string, strategy: string): void {
    const ineligible = this.connectedIds().length - have;
    this.o.log.info(
      { connected: have, minClients: need, ineligible },
      `waiting for ${need - have} more client${need - have === 1 ? '' : 's'} before ${what} (${have}/${need} connected` +
        (ineligible > 0 ? `; ${ineligible} more connected but not eligible for ${strategy}` : '') + ')',
    );
  }

  /** For checkpoints. */
  stored(): StoredClient[] {
    return [...this.clients.values()].map((c): StoredClient => ({ ...c.participant, resumeTokenHash: c.resumeTokenHash, lastSeen: c.lastSeen || undefined }));
  }

  /**
   * For /status and the dashboard: nothing secret (no token, no hash). With `limit`, only the `limit` most recently
   * active clients (by their last hello, upload or disconnect), newest first: /status stays small however many ids
   * the registry holds. O(n log n) in registered clients.
   */
  status(limit?: number): DashboardClient[] {
    let recs = [...this.clients.values()];
    if (limit !== undefined && recs.length > limit) {
      const activity = (c: ClientRecord) => Math.max(c.lastSeen, c.lastUploadAt ?? 0, c.registeredAt);
      recs = recs.sort((a, b) => activity(b) - activity(a)).slice(0, limit);
    }
    return recs.map((c) => ({
      id: c.participant.id,
      model: c.participant.model,
      backend: c.backend,
      numSamples: c.participant.numSamples,
      connected: c.connected,
      idle: c.idle,
      lastSeen: c.lastSeen ? new Date(c.lastSeen).toISOString() : null,
      lastUploadAt: c.lastUploadAt ? new Date(c.lastUploadAt).toISOString() : null,
      lastUploadRound: c.lastUploadRound ?? null,
      lastUploadStaleness: c.lastUploadStaleness ?? null,
    }));
  }
}


