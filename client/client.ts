import * as tf from '@tensorflow/tfjs';
import { io, type Socket } from 'socket.io-client';
import { subset, type Dataset } from '../shared/data/dataset.ts';
import { Rng } from '../shared/data/rng.ts';
import { buildModel, type ModelKind } from '../shared/models/builders.ts';
import { evaluateAccuracy, logLabelPrior, predictLogits, trainOnSoftLabels, trainSupervised } from '../shared/models/training.ts';
import { applyWireWeights, weightsToWire } from '../shared/models/wire.ts';
import { decodeWeights } from '../shared/models/weight-codec.ts';
import type { ClientToServerEvents, ServerToClientEvents } from '../shared/protocol/events.ts';
import { decodeFrame, encodeFrame } from '../shared/protocol/frame-codec.ts';
import type { AckMsg, ClientMsg, ClientRoundStats, ErrorMsg, HelloMsg, RoundMsg, RoundResultMsg, ServerMsg, WelcomeMsg, WireTensor, EncodedTensor } from '../shared/protocol/messages.ts';
import { ProtocolError, parseServerFrame, roundRowsError } from '../shared/protocol/validate.ts';
import { ROW_ENCODINGS } from '../shared/protocol/row-set.ts';
import { PROTOCOL_VERSION } from '../shared/protocol/messages.ts';
import { classHistogram } from '../shared/data/partition.ts';
import { decodeMatrix, encodeMatrix, type LogitCodecName } from '../shared/tensor/logit-codec.ts';
import { Emitter } from './emitter.ts';
import { MemoryProxyCache, type ProxyCache } from './proxy-cache.ts';
import { backendInfo } from '../shared/compute/backend.ts';
import type { EndMsg } from '../shared/protocol/messages.ts';
import { FedistillError, connectErrorCause, helloRefusal } from './fedistill-error.ts';
import { rowConfidence, softmaxRows } from '../shared/distill/aggregators.ts';
import { privatizeProbabilities, privatizeUpdate } from '../shared/privacy/mechanisms.ts';
import { ClientPrivacy, noiseStd, type PrivacyBudget, type PrivacySpend } from './privacy.ts';
import { SecureSession } from './secure-session.ts';

export { FedistillError, type FedistillErrorCode } from './fedistill-error.ts';

const CPU_TRAINING_WARNING = "training on the pure-JS 'cpu' TensorFlow.js backend: about 100x slower than wasm or a GPU";

export interface ClientOptions {
  url: string;
  /** The server's shared client token, or this client's own credential (`fedistill credential issue`): sent the same way. */
  token?: string;
  /**
   * Node: PEM of the CA(s) that signed an https:// server's certificate, for the socket (a private CA). Browsers use the
   * system trust store and ignore it. The SDK's HTTP requests go through `fetch`: `trustCa(pem)` from
   * `fedistill/client/node` gives both at once (`new FedistillClient({ ...trustCa(pem), url, … })`).
   */
  ca?: string | string[];
  /** The fetch the SDK's HTTP requests (the proxy set) use. Default: the global fetch. */
  fetch?: (input: string | URL, init?: RequestInit) => Promise<Response>;
  /** Stable id: a reconnecting client is the same participant. */
  clientId: string;
  model: ModelKind;
  /** Private, labelled training data. It never leaves this object: only logits on the proxy set (or weights, FedAvg) do. */
  data: Dataset;
  /**
   * Continual learning: the private data as of a round, asked for at the start of each round (the data a device holds
   * changes over time). Overrides `data` from then on; `setData()` does the same from outside.
   */
  dataAt?: (round: number) => Dataset;
  codec?: LogitCodecName;
  /** `topk`/`topk8`: logits kept per row (default max(3, ⌈classes/10⌉)); fewer bytes a row, less of each row's tail. */
  topK?: number;
  /** Optional labelled set to report local accuracy on (simulations); only the scalar travels. */
  evalSet?: Dataset | null;
  proxyCache?: ProxyCache;
  seed?: number;
  /**
   * Simulations only: emulate a device this many times slower by idling (slowdown − 1) × the local step's duration
   * before uploading. 1 (default) = no delay.
   */
  slowdown?: number;
  /** Share the private label histogram (counts only) so the server can weight teachers per class. Default true. */
  shareClassCounts?: boolean;
  /**
   * The resume token a previous session of this client id was welcomed with (e.g. kept in a browser's
   * sessionStorage across a reload): lets the new session take over the id at once, even while the server still
   * holds the old connection. Read the current one from `resumeToken` or the `welcome` event.
   */
  resumeToken?: string;
  /**
   * Give up when there has been no connection for this long (from start(), or since the last disconnect):
   * finished() then rejects with code 'unreachable', naming the URL and the last cause. Default 60000; 0 = never.
   */
  giveUpAfterMs?: number;
  /**
   * Rewrite what this client tells the server, before it is encoded: `counts`, the sample count and label
   * histogram that hello (and a FedAvg upload) report; `upload`, each round's upload (raw logits, or weights). The
   * place for client-side privacy (noise, clipping, coarsened counts) and for simulated adversaries
   * (`fedistill simulate --attack`). What a hook returns is sent as is: the server validates it like any upload.
   */
  outbound?: OutboundTransforms;
  /**
   * This client's differential-privacy budget (docs/privacy.md). With it the client sends no label histogram and only
   * whether it holds data (numSamples 0 or 1), and declines any round that carries no DP noise or that would take
   * its ε (its own accountant's, at `delta`) past `epsilon`. Without it, the client still adds the noise a round asks for.
   */
  privacy?: PrivacyBudget;
  log?: (msg: string) => void;
}

/** Sample and label counts as hello reports them (`classCounts` absent when the client does not share them). */
export interface ReportedCounts {
  numSamples: number;
  classCounts?: number[];
}

/** A round's upload before it is encoded: logits on the round's proxy rows (rows × numClasses), or weights. */
export type UploadDraft =
  | { task: 'logits'; logits: Float32Array; numClasses: number }
  | { task: 'weights'; weights: WireTensor[]; numSamples: number };

/** See ClientOptions.outbound. `upload` also gets the round as the server handed it out and the proxy set. */
export interface OutboundTransforms {
  counts?: (actual: ReportedCounts) => ReportedCounts;
  upload?: (draft: UploadDraft, ctx: { round: RoundMsg; proxy: Dataset }) => UploadDraft | Promise<UploadDraft>;
}

/** Where the local step of a round is: one event per batch (`done` of `total` batches over all epochs). */
export interface RoundProgress {
  round: number;
  /** 'digest': learning the consensus soft labels (FedMD); 'train': the private data; 'logits': computing the upload. */
  phase: 'digest' | 'train' | 'logits';
  epoch: number;
  epochs: number;
  done: number;
  total: number;
}

/** The local step's figures as the client itself sees them (the wire's `stats`, which may leave them out, are a subset). */
export interface LocalRoundStats {
  trainLoss: number;
  trainAccuracy: number;
  trainSeconds: number;
  evalAccuracy?: number;
}

export interface RoundDone {
  round: number;
  task: RoundMsg['task'];
  stats: LocalRoundStats;
  uploadBytes: number;
  adoptedStudent: boolean;
  digestedConsensus: boolean;
}

export type ClientEvents = {
  /** At start(): the TensorFlow.js backend this client trains on, and any warning about it (e.g. the slow 'cpu'). */
  backend: (b: { name: string; warning?: string }) => void;
  welcome: (w: WelcomeMsg) => void;
  /** A round this client was selected for, as it starts its local step. */
  'round-start': (r: RoundMsg) => void;
  progress: (p: RoundProgress) => void;
  'round-done': (r: RoundDone) => void;
  ack: (a: AckMsg) => void;
  'server-error': (e: ErrorMsg) => void;
  'round-result': (r: RoundResultMsg) => void;
  disconnected: (reason: string) => void;
  /** The federation is over ('completed': all rounds done; 'shutdown': the server is stopping), with the final student. */
  end: (e: EndMsg) => void;
  /** A round with DP noise was taken on (counted before training): ε spent so far by this client's own count, and the state to keep for a restart. */
  privacy: (s: PrivacySpend) => void;
  /** A round this client did not answer, and why (its privacy budget, a round without noise it requires). */
  declined: (d: { round: number; reason: string }) => void;
};

/**
 * The fedistill client, for Node and browsers: connects (and reconnects) to an aggregator, fetches and caches the
 * proxy set, and for each round it is selected for trains locally on private data and uploads proxy logits.
 */
export class FedistillClient extends Emitter<ClientEvents> {
  readonly model: tf.LayersModel;
  private socket: Socket<ServerToClientEvents, ClientToServerEvents> | null = null;
  private proxy: Promise<Dataset> | null = null;
  private proxyHash = '';
  private queue: Promise<void> = Promise.resolve();
  private readonly rng: Rng;
  private readonly log: (msg: string) => void;
  private readonly codec: LogitCodecName;
  private readonly cache: ProxyCache;
  private stopped = false;
  /** Registered on the current connection (welcome received since the last connect). */
  private registered = false;
  private resumeTokenValue: string | undefined;
  /** Rounds taken on: 'working', or the upload frame once sent (re-sent if the server asks again). */
  private readonly rounds = new Map<number, 'working' | Upload>();
  /** Counts welcomes: an upload is re-sent on request only if it did not already go over this registration. */
  private epoch = 0;
  private latestRound = 0;
  /** An upload made while disconnected: sent after the next welcome, not before hello. */
  private heldUpload: Upload | null = null;
  /** The private data the next local step trains on. */
  private data: Dataset;
  /** Settles once: resolves on `end`, rejects when this client cannot go on (see finished()). */
  private readonly outcome: Promise<EndMsg>;
  private settle!: { resolve: (e: EndMsg) => void; reject: (e: FedistillError) => void };
  private settled = false;
  private giveUpTimer: ReturnType<typeof setTimeout> | null = null;
  /** Why the last connection attempt failed (e.g. ECONNREFUSED), for the give-up message. */
  private lastCause = '';
  /** The server said (error 'unauthorized' after our welcome) that a newer session of our id took this connection. */
  private takenOver = false;
  /** Hellos refused with 'internal' (a server fault, not a verdict on us): when the first was, and the next back-off. */
  private helloRetry: { since: number; delayMs: number; timer: ReturnType<typeof setTimeout> | null } | null = null;
  /** The client's own budget (options.privacy), or an accountant that only reports when it has none. */
  private readonly privacy: ClientPrivacy | null;
  private reportOnlyPrivacy: ClientPrivacy | null = null;
  /** The secure aggregation session of the round in progress. */
  private secure: SecureSession | null = null;

  constructor(private readonly o: ClientOptions) {
    super();
    this.outcome = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    this.outcome.catch(() => {}); // nobody need await it: a rejection must not become an unhandled one
    this.data = o.data;
    this.privacy = o.privacy ? new ClientPrivacy(o.privacy) : null;
    this.resumeTokenValue = o.resumeToken;
    this.codec = o.codec ?? 'fp16';
    if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 1)) throw new TypeError(`topK must be an integer ≥ 1, got ${o.topK}`);
    if (o.topK !== undefined && this.codec !== 'topk' && this.codec !== 'topk8') throw new TypeError(`topK applies to the topk and topk8 codecs, not ${this.codec}`);
    this.cache = o.proxyCache ?? new MemoryProxyCache();
    this.rng = new Rng(`client/${o.clientId}/${o.seed ?? 1}`);
    this.log = o.log ?? ((m) => console.log(`[${o.clientId}] ${m}`));
    this.model = buildModel({ kind: o.model, inputShape: o.data.shape, numClasses: o.data.numClasses, seed: (o.seed ?? 1) * 7919 + hashId(o.clientId) });
  }

  /** Connect and register; resolves on the first welcome. Rounds are then handled until stop(). */
  async start(): Promise<WelcomeMsg> {
    const info = backendInfo();
    const name = tf.getBackend();
    this.emit('backend', { name, warning: info?.name === name ? info.warning : name === 'cpu' ? CPU_TRAINING_WARNING : undefined });
    const welcomed = this.once('welcome');
    const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(this.o.url, {
      auth: { token: this.o.token ?? '' },
      transports: ['websocket'],
      ...(this.o.ca ? { ca: this.o.ca } : {}),
      reconnection: true,
      reconnectionDelay: 250,
      reconnectionDelayMax: 3000,
    });
    this.socket = socket;
    this.armGiveUp();
    socket.on('connect', () => {
      this.disarmGiveUp();
      this.lastCause = '';
      this.takenOver = false;
      this.send(this.hello());
    });
    socket.on('connect_error', (e) => this.onConnectError(e, socket));
    socket.on('disconnect', (reason) => {
      const wasWelcomed = this.registered;
      this.registered = false;
      this.stopHelloRetry();
      if (this.settled) return;
      this.emit('disconnected', reason);
      // The gateway closes a welcomed connection after saying a newer session of this id took over: that session
      // is the client now, and taking the id back would only bounce it between the two.
      if (reason === 'io server disconnect' && wasWelcomed && this.takenOver) {
        this.fail(new FedistillError('replaced', `${this.o.url} closed this connection: another session of client id '${this.o.clientId}' took over`));
        return;
      }
      this.armGiveUp();
      // Any other server-side close (socket.io does not reconnect after one by itself): connect again, a moment later.
      if (reason === 'io server disconnect') {
        const t = setTimeout(() => !this.settled && !socket.connected && socket.connect(), 1000);
        (t as { unref?: () => void }).unref?.();
      }
    });
    socket.on('end', (f) => this.inbound('end', f, (e) => this.onEnd(e)));
    socket.on('welcome', (f) => this.inbound('welcome', f, (w) => this.onWelcome(w)));
    socket.on('round', (f) => this.inbound('round', f, (msg) => {
      const seen = this.rounds.get(msg.round);
      if (seen) {
        // The server asks again (we reconnected mid-round): answer with the upload already made, or keep working.
        if (seen !== 'working' && seen.sentOn !== this.epoch) this.transmit(seen);
        return;
      }
      const refusal = this.privacy?.refusal(msg);
      if (refusal) {
        this.log(`round ${msg.round} declined: ${refusal}`);
        this.emit('declined', { round: msg.round, reason: refusal });
        // Said at once, so the round need not wait for this client until its deadline.
        this.sendRegistered({ type: 'decline', round: msg.round, reason: msg.privacy ? 'privacy-budget' : 'no-privacy' });
        return;
      }
      this.rounds.set(msg.round, 'working');
      this.latestRound = Math.max(this.latestRound, msg.round);
      // A DP round is counted when it is taken on, before any training: a round still in progress can never let the
      // next one pass the budget check without it, and whoever keeps the count (the CLI's state file) has it first.
      if (msg.privacy) this.chargePrivacy(msg);
      if (msg.secagg) {
        // The key exchange runs alongside the local step: keys go out now.
        this.secure = new SecureSession(this.o.clientId, msg, (m) => this.sendRegistered(m), this.log);
        this.secure.start();
      }
      // One round at a time, in order.
      this.queue = this.queue
        .then(() => this.onRound(msg))
        .catch((e) => {
          this.rounds.delete(msg.round);
          if (e instanceof RoundAbandoned) this.log(`round ${msg.round} abandoned: ${e.message}`);
          else this.log(`round ${msg.round} failed: ${(e as Error).stack}`);
        });
    }));
    socket.on('ack', (f) => this.inbound('ack', f, (a) => this.emit('ack', a)));
    const session = (m: { round: number; session: string }) => (this.secure && this.secure.round.round === m.round && this.secure.session === m.session ? this.secure : null);
    socket.on('sa-roster', (f) => this.inbound('sa-roster', f, (m) => void session(m)?.onRoster(m)));
    socket.on('sa-peers', (f) => this.inbound('sa-peers', f, (m) => session(m)?.onPeers(m)));
    socket.on('sa-unmask', (f) => this.inbound('sa-unmask', f, (m) => session(m)?.onUnmask(m)));
    socket.on('round-result', (f) => this.inbound('round-result', f, (r) => this.emit('round-result', r)));
    socket.on('error', (f) => this.inbound('error', f, (e) => {
      this.log(`server refused: ${e.code}: ${e.message}`);
      this.emit('server-error', e);
      if (this.registered) {
        // After our welcome the server only says 'unauthorized' just before it closes this connection for a newer one.
        if (e.code === 'unauthorized') this.takenOver = true;
        return;
      }
      // Before a welcome on this connection, an error can only answer our hello. 'internal' (the server's fault),
      // 'rate-limited' (hellos too often) and 'too-many-clients' (the registry is full of connected ids) may pass:
      // hello again after a back-off. Anything else is its verdict on us: it won't register us.
      if (RETRYABLE_HELLO_REFUSALS.has(e.code)) this.retryHello(socket, e.code);
      else this.fail(helloRefusal(e, this.o.clientId));
    }));
    // Rejects (with the FedistillError) if the client can't join at all: wrong token, id in use, server unreachable.
    return Promise.race([welcomed.then(([w]) => w), this.outcome.then(() => Promise.reject(new FedistillError('protocol', 'the federation ended before this client was welcomed')))]);
  }

  /**
   * Settles when this client is done: resolves with the server's `end` (all rounds done, or the server shutting down;
   * it carries the final student), after which nothing reconnects. Rejects with a FedistillError (`code`) when it
   * cannot go on: 'unauthorized' (wrong token), 'duplicate' (id in use), 'replaced', 'unreachable' (after
   * giveUpAfterMs without a connection), 'protocol', 'refused', or 'stopped' (stop() before the end).
   */
  finished(): Promise<EndMsg> {
    return this.outcome;
  }

  /** The final student from an `end` message as a model of this client's input shape and classes (null if none came). */
  studentFrom(end: EndMsg): tf.LayersModel | null {
    if (!end.model) return null;
    const m = buildModel({ kind: end.model.kind, inputShape: this.data.shape, numClasses: this.data.numClasses });
    applyWireWeights(m, end.model.weights);
    return m;
  }

  /**
   * The client is done, one way or the other (false if it already was): no more reconnects, retries or give-up
   * timer, and a round still training stops at its next batch (see abandonIfStopped) and uploads nothing.
   */
  private wrapUp(): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.stopped = true;
    this.disarmGiveUp();
    this.stopHelloRetry();
    this.socket?.disconnect();
    return true;
  }

  private onEnd(e: EndMsg): void {
    if (!this.wrapUp()) return;
    const acc = e.studentAccuracy !== undefined ? `, student accuracy ${(e.studentAccuracy * 100).toFixed(2)}%` : '';
    this.log(`the federation ${e.reason === 'completed' ? 'is complete' : 'was shut down by the server'} after ${e.round} rounds${acc}`);
    this.emit('end', e);
    this.settle.resolve(e);
  }

  /** This client cannot go on: stop everything (no more reconnects) and reject finished(). */
  private fail(err: FedistillError): void {
    if (!this.wrapUp()) return;
    this.log(err.message);
    this.settle.reject(err);
  }

  private onConnectError(e: Error & { description?: unknown }, socket: Socket): void {
    if (this.settled) return;
    // A refusal by the server's handshake middleware: socket.io stops there, and the same token would fail again.
    if (!socket.active) {
      // The address is backing off after failed authentications (perhaps not ours: a shared NAT or proxy). Not a
      // verdict on this client: wait as long as the server says, then try again (the give-up timer still bounds it).
      const backoff = /^rate-limited:.*retry in (\d+) s/.exec(e.message);
      if (backoff) {
        this.lastCause = e.message;
        this.log(`${this.o.url} refused the connection: ${e.message}; trying again then`);
        const t = setTimeout(() => !this.settled && !socket.connected && socket.connect(), Number(backoff[1]) * 1000 + 250);
        (t as { unref?: () => void }).unref?.();
        return;
      }
      const code = /^unauthorized/.test(e.message) ? 'unauthorized' : 'refused';
      this.fail(new FedistillError(code, `${this.o.url} refused the connection: ${e.message}`));
      return;
    }
    const cause = connectErrorCause(e);
    // A certificate this client does not trust will not become trusted by retrying: say so at once, and how to fix it.
    if (UNTRUSTED_CERT.test(cause)) {
      this.fail(new FedistillError('untrusted', `${this.o.url}: the server's TLS certificate is not trusted (${cause}); pass the CA that signed it (fedistill client --ca FILE, the SDK's ca option or trustCa(); browsers: the system trust store)`));
      return;
    }
    if (cause === this.lastCause) return; // said once, not at every retry
    this.lastCause = cause;
    const ms = this.giveUpAfterMs;
    this.log(`cannot reach ${this.o.url}: ${cause}; retrying${ms > 0 ? ` (giving up after ${ms / 1000} s without a connection)` : ''}`);
  }

  /** Hello again after a passing refusal: back-off 0.5 s doubling to 8 s; give up after giveUpAfterMs of them. */
  private retryHello(socket: Socket, code: string): void {
    const now = Date.now();
    const r = (this.helloRetry ??= { since: now, delayMs: 500, timer: null });
    const ms = this.giveUpAfterMs;
    if (ms > 0 && Number.isFinite(ms) && now - r.since >= ms) {
      this.fail(new FedistillError('refused', `${this.o.url} refused this client's hello (${code}) for ${ms / 1000} s; giving up`));
      return;
    }
    if (r.timer) return;
    this.log(`the server refused our hello (${code}); saying hello again in ${r.delayMs / 1000} s`);
    r.timer = setTimeout(() => {
      r.timer = null;
      if (!this.settled && socket.connected && !this.registered) this.send(this.hello());
    }, r.delayMs);
    r.delayMs = Math.min(r.delayMs * 2, 8000);
  }

  private stopHelloRetry(): void {
    if (this.helloRetry?.timer) clearTimeout(this.helloRetry.timer);
    if (this.helloRetry) this.helloRetry.timer = null;
  }

  private get giveUpAfterMs(): number {
    return this.o.giveUpAfterMs ?? 60_000;
  }

  private armGiveUp(): void {
    const ms = this.giveUpAfterMs;
    if (this.giveUpTimer || this.settled || !(ms > 0) || !Number.isFinite(ms)) return;
    this.giveUpTimer = setTimeout(() => {
      this.giveUpTimer = null;
      const cause = this.lastCause ? ` (last error: ${this.lastCause})` : '';
      this.fail(new FedistillError('unreachable', `no connection to ${this.o.url} for ${ms / 1000} s${cause}; giving up`));
    }, ms);
  }

  private disarmGiveUp(): void {
    if (this.giveUpTimer) clearTimeout(this.giveUpTimer);
    this.giveUpTimer = null;
  }

  /**
   * Decode and validate a server frame before acting on it: a malformed one is reported (log + 'server-error' with
   * code 'bad-message') and ignored, so a buggy or hostile server cannot crash the client.
   */
  private inbound<E extends ServerMsg['type']>(event: E, frame: unknown, handle: (msg: Extract<ServerMsg, { type: E }>) => void): void {
    let msg: ServerMsg;
    try {
      msg = parseServerFrame(event, frame);
    } catch (e) {
      const code = e instanceof ProtocolError ? e.code : 'bad-frame';
      const message = `ignored a malformed '${event}' frame from the server: ${(e as Error).message}`;
      this.log(message);
      this.emit('server-error', { type: 'error', code, message });
      return;
    }
    handle(msg as Extract<ServerMsg, { type: E }>);
  }

  stop(): void {
    this.stopped = true;
    this.fail(new FedistillError('stopped', `client ${this.o.clientId} was stopped before the federation ended`));
    this.socket?.disconnect();
  }

  /** The socket.io connection (null before start): for connection state, or to observe what goes on the wire. */
  get connection(): Socket<ServerToClientEvents, ClientToServerEvents> | null {
    return this.socket;
  }

  get clientId(): string {
    return this.o.clientId;
  }

  /** The secret the server's last welcome gave this client id (undefined before the first welcome). */
  get resumeToken(): string | undefined {
    return this.resumeTokenValue;
  }

  /** Replace the private data (continual learning: new samples arrived, old ones expired). Takes effect next round. */
  setData(data: Dataset): void {
    if (data.numClasses !== this.data.numClasses || data.shape.join() !== this.data.shape.join()) throw new Error('setData: new data must have the same shape and classes');
    if (data === this.data) return;
    const before = this.hello();
    this.data = data;
    const after = this.hello();
    // The server weighs teachers by sample and class counts: tell it when they change (a re-hello on the same
    // connection, with our resume token, updates the registration and keeps any round in progress).
    if (this.registered && (after.numSamples !== before.numSamples || String(after.classCounts) !== String(before.classCounts))) this.send(after);
  }

  /** The counts this client reports: its data's, through outbound.counts if set. */
  private reportedCounts(): ReportedCounts {
    // Under a DP budget the counts are data too: only whether the client holds any is said, and no histogram.
    const actual: ReportedCounts = this.privacy
      ? { numSamples: Math.min(1, this.data.count) }
      : {
          numSamples: this.data.count,
          classCounts: this.o.shareClassCounts === false ? undefined : classHistogram(this.data.labels!, range(this.data.count), this.data.numClasses),
        };
    return this.o.outbound?.counts ? this.o.outbound.counts(actual) : actual;
  }

  private hello(): HelloMsg {
    const { numSamples, classCounts } = this.reportedCounts();
    return {
      type: 'hello',
      protocol: PROTOCOL_VERSION,
      clientId: this.o.clientId,
      model: this.o.model,
      numSamples,
      classCounts,
      codec: this.codec,
      weightEncodings: ['fp16', 'int8'],
      rowEncodings: [...ROW_ENCODINGS],
      resumeToken: this.resumeTokenValue,
      backend: tf.getBackend(),
    };
  }

  /** Waits for the round being processed, if any. */
  idle(): Promise<void> {
    return this.queue;
  }

  /** A frozen copy of the received global model (same architecture as ours), reused across rounds. */
  private anchorModel: tf.LayersModel | null = null;
  private anchorFrom(weights: EncodedTensor[]): tf.LayersModel {
    this.anchorModel ??= buildModel({ kind: this.o.model, inputShape: this.data.shape, numClasses: this.data.numClasses });
    applyWireWeights(this.anchorModel, weights);
    return this.anchorModel;
  }

  private send(msg: ClientMsg): number {
    const frame = encodeFrame(msg);
    this.socket?.emit(msg.type, frame);
    return frame.byteLength;
  }

  /**
   * Secure aggregation's steps, like uploads, go only over a registered connection (socket.io would flush them ahead
   * of the next hello, to be refused): held while there is none, sent after the next welcome.
   */
  private heldSteps: ClientMsg[] = [];
  private sendRegistered(msg: ClientMsg): void {
    if (this.registered && this.socket?.connected) this.send(msg);
    else this.heldSteps.push(msg);
  }

  /** Uploads go only over a registered connection; socket.io would otherwise flush them ahead of the next hello. */
  private transmit(up: Upload): void {
    if (this.registered && this.socket?.connected) {
      this.socket.emit(up.event, up.frame);
      up.sentOn = this.epoch;
    } else this.heldUpload = up;
  }

  private upload(round: number, msg: ClientMsg): number {
    const up: Upload = { event: msg.type, frame: encodeFrame(msg), sentOn: -1 };
    this.rounds.set(round, up);
    for (const r of this.rounds.keys()) if (r < round - 4) this.rounds.delete(r);
    this.transmit(up);
    return up.frame.byteLength;
  }

  private onWelcome(w: WelcomeMsg): void {
    this.registered = true;
    this.stopHelloRetry();
    this.helloRetry = null;
    this.epoch++;
    this.resumeTokenValue = w.resumeToken;
    if (w.proxy.hash !== this.proxyHash) {
      this.proxyHash = w.proxy.hash;
      const loading = this.loadProxy(w);
      this.proxy = loading;
      loading.catch((e) => {
        this.log(`proxy set unavailable: ${(e as Error).message}`);
        // Forget it so the next welcome (e.g. after a reconnect) tries again.
        if (this.proxy === loading) {
          this.proxy = null;
          this.proxyHash = '';
        }
      });
    }
    const steps = this.heldSteps.splice(0);
    for (const m of steps) this.send(m);
    const held = this.heldUpload;
    this.heldUpload = null;
    if (held) this.transmit(held);
    this.emit('welcome', w);
  }

  private async loadProxy(w: WelcomeMsg): Promise<Dataset> {
    let body = await this.cache.get(w.proxy.hash);
    if (!body) {
      const res = await (this.o.fetch ?? fetch)(new URL(w.proxy.path, this.o.url), { headers: this.o.token ? { authorization: `Bearer ${this.o.token}` } : {} });
      if (!res.ok) throw new Error(`GET ${w.proxy.path}: HTTP ${res.status} ${await res.text()}`);
      body = new Uint8Array(await res.arrayBuffer());
    }
    const p = decodeFrame(body) as { hash: string; count: number; shape: [number, number, number]; numClasses: number; images: Uint8Array };
    const digest = await sha256Hex(p.images);
    if (digest !== w.proxy.hash) throw new Error(`proxy set hash mismatch: got ${digest}, expected ${w.proxy.hash}`);
    await this.cache.put(w.proxy.hash, body);
    this.log(`proxy set ${w.proxy.id}: ${p.count} samples (${body.byteLength} B, hash ${digest.slice(0, 12)}…)`);
    return { images: p.images, labels: null, count: p.count, shape: p.shape, numClasses: p.numClasses };
  }

  private async onRound(msg: RoundMsg): Promise<void> {
    if (this.stopped) return;
    if (msg.round < this.latestRound || Date.now() > msg.deadline) {
      this.log(`round ${msg.round} skipped: ${msg.round < this.latestRound ? `round ${this.latestRound} has started` : 'past its deadline'}`);
      this.rounds.delete(msg.round);
      return;
    }
    if (!this.proxy) throw new Error('round before the proxy set is known');
    if (this.o.dataAt) this.setData(this.o.dataAt(msg.round));
    const proxy = await this.proxy;
    const rowsError = roundRowsError(msg, proxy.count);
    if (rowsError) throw new Error(`round ${msg.round} does not fit the proxy set: ${rowsError}`);
    this.abandonIfStopped();
    this.emit('round-start', msg);
    const random = () => this.rng.next();
    let adopted = false;
    if (msg.model && msg.model.kind === this.o.model) {
      applyWireWeights(this.model, msg.model.weights);
      adopted = true;
    }
    const optimizer = tf.train.adam(msg.learningRate);
    try {
      await this.fit(msg, proxy, optimizer, adopted, random);
    } finally {
      optimizer.dispose();
    }
  }

  /**
   * After `end` (or stop(), or a fatal error) a round in progress is dropped: checked before training, after every
   * batch and before the upload, so a browser tab stops burning CPU on work nobody will take.
   */
  private abandonIfStopped(): void {
    if (this.stopped) throw new RoundAbandoned('this client is done (the federation ended, or it was stopped)');
  }

  private async fit(msg: RoundMsg, proxy: Dataset, optimizer: tf.Optimizer, adopted: boolean, random: () => number): Promise<void> {
    const t0 = performance.now();
    let digested = false;
    if (msg.consensus && !adopted) {
      // FedMD "digest": learn the previous round's consensus on its proxy rows before revisiting private data.
      const c = msg.consensus;
      // parseServerFrame fills `indices` (from `rows` when the set came compact).
      await trainOnSoftLabels(this.model, optimizer, subset(proxy, c.indices!), decodeMatrix(c.probs), {
        epochs: c.epochs,
        batchSize: msg.batchSize,
        temperature: c.temperature,
        random,
        numClasses: proxy.numClasses,
        onProgress: (p) => (this.abandonIfStopped(), this.emit('progress', { round: msg.round, phase: 'digest', ...p })),
      });
      digested = true;
    }
    const train = await trainSupervised(this.model, optimizer, this.data, {
      epochs: msg.localEpochs,
      batchSize: msg.batchSize,
      random,
      logPrior: msg.logitAdjust ? logLabelPrior(this.data.labels!, this.data.numClasses) : undefined,
      anchor: adopted && msg.ntdBeta ? { model: this.anchorFrom(msg.model!.weights), beta: msg.ntdBeta, temperature: 1 } : undefined,
      mimic: msg.mutual && msg.indices
        ? { src: subset(proxy, msg.indices), probs: decodeMatrix(msg.mutual.probs), beta: msg.mutual.beta, temperature: msg.mutual.temperature, numClasses: proxy.numClasses }
        : undefined,
      onProgress: (p) => (this.abandonIfStopped(), this.emit('progress', { round: msg.round, phase: 'train', ...p })),
    });
    const stats: LocalRoundStats = { trainLoss: train.loss, trainAccuracy: train.accuracy, trainSeconds: (performance.now() - t0) / 1000 };
    if (this.o.evalSet) stats.evalAccuracy = await evaluateAccuracy(this.model, this.o.evalSet);
    const slowdown = this.o.slowdown ?? 1;
    if (slowdown > 1) {
      // unref: an emulated delay must not keep a stopped Node process alive (browsers have no unref).
      await new Promise((r) => (setTimeout(r, (slowdown - 1) * stats.trainSeconds * 1000) as { unref?: () => void }).unref?.());
      stats.trainSeconds *= slowdown;
    }
    this.abandonIfStopped();
    let draft: UploadDraft;
    if (msg.task === 'logits') {
      this.emit('progress', { round: msg.round, phase: 'logits', epoch: 0, epochs: 1, done: 0, total: 1 });
      draft = { task: 'logits', logits: await predictLogits(this.model, proxy, msg.indices!), numClasses: proxy.numClasses };
    } else {
      draft = { task: 'weights', weights: weightsToWire(this.model), numSamples: this.reportedCounts().numSamples };
    }
    if (this.o.outbound?.upload) draft = await this.o.outbound.upload(draft, { round: msg, proxy });
    this.abandonIfStopped();
    const uploadBytes = await this.send$(msg, draft, stats);
    if (uploadBytes === null) return;
    this.emit('round-done', { round: msg.round, task: msg.task, stats, uploadBytes, adoptedStudent: adopted, digestedConsensus: digested });
  }

  /**
   * The upload as the round asks for it: with `privacy`, clipped and noised here (probabilities, or the weight update
   * against the model the round sent); with `secagg`, masked. Returns its frame size, or null when nothing was sent.
   */
  private async send$(msg: RoundMsg, draft: UploadDraft, local: LocalRoundStats): Promise<number | null> {
    const p = msg.privacy;
    // Loss, accuracy and training time are computed on private data too: under DP or secure aggregation none is sent.
    const stats: ClientRoundStats = p || msg.secagg ? {} : local;
    if (draft.task === 'weights') {
      let weights = draft.weights;
      if (p) {
        if (!msg.model) throw new Error(`round ${msg.round} asks for a DP update but sent no model to update`);
        const noisy = privatizeUpdate(weights.map((w) => w.data), decodeWeights(msg.model.weights).map((w) => w.data), { clip: p.clip, noiseStd: noiseStd(msg) });
        weights = weights.map((w, i) => ({ ...w, data: noisy.weights[i] }));
      }
      return this.upload(msg.round, { type: 'weights', round: msg.round, numSamples: draft.numSamples, weights, stats });
    }
    const n = msg.indices!.length;
    const c = draft.numClasses;
    const noisy = p ? privatizeProbabilities(draft.logits, n, c, { temperature: p.temperature, clip: p.clip, noiseStd: noiseStd(msg) }) : null;
    if (msg.secagg) {
      const session = this.secure;
      if (!session || session.round.round !== msg.round) throw new Error(`round ${msg.round}: no secure aggregation session`);
      const values = noisy ?? secureValues(draft.logits, n, c, msg.secagg);
      const masked = await session.masked(values, this.proxyHash, stats);
      this.abandonIfStopped();
      if (!masked) return null;
      const bytes = this.upload(msg.round, masked);
      session.maskedGone();
      return bytes;
    }
    // Top-k would keep only each row's largest noisy values (a biased teacher), and topk8 drops each row's level
    // (logits only): noisy rows go dense, fp16 at least.
    const codec = this.codec === 'topk' || this.codec === 'topk8' ? 'fp16' : this.codec;
    if (noisy) return this.upload(msg.round, { type: 'logits', round: msg.round, proxyHash: this.proxyHash, logits: encodeMatrix(noisy, n, c, codec), values: 'probs', stats });
    return this.upload(msg.round, { type: 'logits', round: msg.round, proxyHash: this.proxyHash, logits: encodeMatrix(draft.logits, n, c, this.codec, { k: this.o.topK }), stats });
  }

  private chargePrivacy(msg: RoundMsg): void {
    const ledger = this.privacy ?? (this.reportOnlyPrivacy ??= new ClientPrivacy({ epsilon: Infinity, delta: msg.privacy!.delta, trustAggregator: msg.privacy!.mode === 'central' }));
    const spend = ledger.charge(msg);
    this.log(`round ${msg.round}: taking part with DP noise; ε spent ${spend.epsilon.toFixed(3)}${Number.isFinite(spend.budget) ? ` of ${spend.budget}` : ''} (δ = ${ledger.delta})`);
    this.emit('privacy', spend);
  }
}

/**
 * What a client contributes to a secure sum without DP: its probabilities at the session's temperature (`probs`), or
 * per row w·p and w with w = exp(−entropy(p)) (`confidence`: the sum then gives the confidence-weighted mean).
 */
function secureValues(logits: Float32Array, n: number, c: number, sa: NonNullable<RoundMsg['secagg']>): Float32Array {
  const p = softmaxRows(logits, n, c, sa.temperature);
  if (sa.values === 'probs') return p;
  const out = new Float32Array(n * (c + 1));
  for (let i = 0; i < n; i++) {
    const w = rowConfidence(p, i * c, c);
    for (let j = 0; j < c; j++) out[i * (c + 1) + j] = w * p[i * c + j];
    out[i * (c + 1) + c] = w;
  }
  return out;
}

/** Node's (OpenSSL's) codes for a server certificate that does not verify against the trusted CAs or the host name. */
/** Hello refusals that may pass (see the error handler): retried with a back-off, within giveUpAfterMs. */
const RETRYABLE_HELLO_REFUSALS: ReadonlySet<string> = new Set(['internal', 'rate-limited', 'too-many-clients']);
const UNTRUSTED_CERT = /SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|CERT_UNTRUSTED|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|ERR_TLS_CERT_ALTNAME_INVALID|CERT_SIGNATURE_FAILURE/;

/** Thrown out of a round's local step when the client stopped mid-way; not an error worth a stack trace. */
class RoundAbandoned extends Error {}

interface Upload {
  event: ClientMsg['type'];
  frame: Uint8Array;
  /** The registration epoch it was last sent on (-1: not yet). */
  sentOn: number;
}

function range(n: number): Uint32Array {
  return Uint32Array.from({ length: n }, (_, i) => i);
}

function hashId(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) % 1_000_003;
  return h;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}
