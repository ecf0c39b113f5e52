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
}

/** A registered client as checkpoints and the journal keep it: the token's hash only, never the token. */
export type StoredClient = Participant & { resumeTokenHash: string };
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
}

/**
 * Who the federation knows (Flower's ClientManager): registration and the resume-token check, connected/offline,
 * the eligible connected clients selection draws from, and the rows /status and the dashboard show. Rounds, tasks
 * and uploads are the schedulers'; this only records that an upload was accepted.
 */
export class ClientRegistry {
  private readonly clients = new Map<string, ClientRecord>();

  constructor(private readonly o: ClientRegistryOptions) {}

  /** Check a hello and (re-)register its client; throws ProtocolError to refuse it. */
  register(hello: HelloMsg): Registration {
    if (hello.protocol !== PROTOCOL_VERSION) {
      throw new ProtocolError('protocol-version', `server speaks protocol ${PROTOCOL_VERSION}, client ${hello.protocol}: upgrade the older side`);
    }
    const c = this.o.numClasses;
    if (hello.classCounts && hello.classCounts.length !== c) {
      throw new ProtocolError('bad-shape', `classCounts must have one count per class (${c}), got ${hello.classCounts.length}`);
    }
    const p: Participant = { id: hello.clientId, model: hello.model, numSamples: hello.numSamples, classCounts: hello.classCounts, codec: hello.codec };
    const prev = this.clients.get(p.id);
    const presented = prev !== undefined && hello.resumeToken !== undefined && resumeTokenMatches(hello.resumeToken, prev.resumeTokenHash);
    // Someone else may hold the shared token: replacing a live connection of an id needs that id's resume token.
    if (prev?.connected && !presented) {
      throw new ProtocolError('unauthorized', `client id '${p.id}' is connected; a reconnect must present the resumeToken its welcome gave`);
    }
    // The token itself is only ever in this welcome (and the client's memory); the server keeps its hash.
    const resumeToken = presented ? hello.resumeToken! : newResumeToken();
    const resumeTokenHash = presented ? prev.resumeTokenHash : hashResumeToken(resumeToken);
    if (!presented || JSON.stringify(prev.participant) !== JSON.stringify(p)) this.o.journal.append('client', { participant: p, resumeTokenHash });
    const { lastUploadAt, lastUploadRound, lastUploadStaleness } = prev ?? {};
    this.clients.set(p.id, { participant: p, resumeTokenHash, connected: true, registeredAt: prev?.registeredAt ?? Date.now(), lastSeen: Date.now(), backend: hello.backend, lastUploadAt, lastUploadRound, lastUploadStaleness });
    this.o.log.info({ clientId: p.id, model: p.model, numSamples: p.numSamples, codec: p.codec, backend: hello.backend }, `client ${p.id} ${prev ? 're' : ''}registered (${p.model}, ${p.numSamples} samples, ${p.codec})`);
    return { participant: p, resumeToken, returning: prev !== undefined };
  }

  /** A client from a checkpoint or the journal: not connected until it says hello. */
  restore(c: StoredClient | LegacyStoredClient): void {
    const { resumeTokenHash, resumeToken, ...p } = c as Participant & { resumeTokenHash?: string; resumeToken?: string };
    // '' matches no token: a record without either field can't be taken over, only re-registered once disconnected.
    const hash = resumeTokenHash ?? (resumeToken ? hashResumeToken(resumeToken) : '');
    this.clients.set(p.id, { participant: p, resumeTokenHash: hash, connected: false, registeredAt: Date.now(), lastSeen: 0 });
  }

  /** Takes the journal's registration records; false for any other kind. */
  replay(r: JournalRecord): boolean {
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
    return [...this.clients.values()].filter((c) => c.connected && eligible(c.participant)).map((c) => c.participant);
  }

  /** An upload of `clientId` was accepted (for dashboards); returns when. */
  uploaded(rec: ClientRecord, round: number, staleness?: number): number {
    rec.lastUploadAt = Date.now();
    rec.lastUploadRound = round;
    rec.lastUploadStaleness = staleness;
    return rec.lastUploadAt;
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
    return [...this.clients.values()].map((c): StoredClient => ({ ...c.participant, resumeTokenHash: c.resumeTokenHash }));
  }

  /** For /status and the dashboard: nothing secret (no token, no hash). */
  status(): DashboardClient[] {
    return [...this.clients.values()].map((c) => ({
      id: c.participant.id,
      model: c.participant.model,
      backend: c.backend,
      numSamples: c.participant.numSamples,
      connected: c.connected,
      lastSeen: c.lastSeen ? new Date(c.lastSeen).toISOString() : null,
      lastUploadAt: c.lastUploadAt ? new Date(c.lastUploadAt).toISOString() : null,
      lastUploadRound: c.lastUploadRound ?? null,
      lastUploadStaleness: c.lastUploadStaleness ?? null,
    }));
  }
}
