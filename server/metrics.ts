import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Coordinator, RoundSummary } from './coordinator.ts';

/**
 * The process's default metrics (CPU, memory, heap, GC, event-loop lag): one set per process, not per aggregator.
 * collectDefaultMetrics starts a GC PerformanceObserver and an event-loop monitor that Registry.clear() never stops,
 * so registering them per aggregator would leak one of each for every server a process ever started (tests start
 * dozens). Made on first use; each aggregator's /metrics shows them next to its own series.
 */
let processRegistry: Registry | null = null;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

export interface MetricsOptions {
  coordinator: Coordinator;
  /** Open socket.io connections (clients and dashboard viewers). */
  connectedSockets: () => number;
}

/**
 * /metrics for one aggregator: its own prom-client Registry (several aggregators may share a process, e.g. tests)
 * with the federation's series, plus the process's default metrics (shared, see processMetrics). The series are fed
 * from the coordinator's observer events (round-start, upload, phase, round) and read from its status at scrape time. Counters start at 0 with the process,
 * as Prometheus expects of counters; the round and student gauges come from the (restored) history.
 */
export class AggregatorMetrics {
  readonly registry = new Registry();
  private readonly detach: () => void;
  private readonly downlinkBytes: Counter;
  private readonly refusals: Counter<'event' | 'code'>;

  constructor(o: MetricsOptions) {
    const registers = [this.registry];
    const c = o.coordinator;
    processMetrics();

    const rounds = new Counter({ name: 'fedistill_rounds_total', help: 'Rounds closed (online: student versions published), by outcome', labelNames: ['status'], registers });
    const uploads = new Counter({ name: 'fedistill_uploads_accepted_total', help: 'Uploads (logits or weights) accepted and acknowledged', registers });
    const uplink = new Counter({ name: 'fedistill_uplink_bytes_total', help: 'Bytes of accepted uploads, as framed on the wire', registers });
    this.downlinkBytes = new Counter({ name: 'fedistill_downlink_bytes_total', help: 'Bytes of frames sent to clients (tasks, students, acks, errors)', registers });
    this.refusals = new Counter({
      name: 'fedistill_refused_frames_total',
      help: "Frames and handshakes refused, by client event (handshake, hello, logits, weights, or 'other') and error code",
      labelNames: ['event', 'code'],
      registers,
    });
    const histogram = (name: string, help: string, buckets: number[]) => new Histogram({ name, help, buckets, registers });
    const roundSeconds = histogram(
      'fedistill_round_duration_seconds',
      'Wall time of a round from its start to its summary (online: of a version window)',
      [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800],
    );
    const aggregateSeconds = histogram(
      'fedistill_aggregation_duration_seconds',
      "Server time aggregating a round's uploads: teacher and student distillation (online: training steps of a version)",
      [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160],
    );
    const evaluateSeconds = histogram(
      'fedistill_evaluation_duration_seconds',
      'Server time scoring the student on the validation set, per round',
      [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    );
    const participants = histogram('fedistill_round_participants', 'Uploads a round took in (online: per version)', [0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500]);

    const last = () => c.history.at(-1);
    const lastEvaluated = () => [...c.history].reverse().find((s) => s.studentAccuracy !== undefined);
    const gauge = (name: string, help: string, read: () => number | undefined) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          // Not known yet (no evaluation so far): NaN, which Prometheus reads as "no value", rather than a false 0.
          this.set(read() ?? NaN);
        },
      });
    gauge('fedistill_round', 'Last completed round (online: published student version)', () => c.round);
    gauge('fedistill_student_version', "The student's version (weights updates published)", () => c.strategy.version);
    gauge('fedistill_student_accuracy', 'Student accuracy on the validation set, last evaluation (0..1)', () => lastEvaluated()?.studentAccuracy);
    gauge('fedistill_distill_loss', "The student's distillation loss, last round", () => last()?.distillLoss);
    gauge('fedistill_connected_clients', 'Registered clients with a live connection', () => c.status().clientCounts.connected);
    gauge('fedistill_known_clients', 'Clients in the registry (kept across restarts until --client-retention-s)', () => c.status().clientCounts.registered);
    gauge('fedistill_idle_clients', 'Connected clients that are idle (missed --idle-after-rounds rounds in a row)', () => c.status().clientCounts.idle);
    gauge('fedistill_connected_sockets', 'Open socket.io connections (clients and dashboard viewers)', o.connectedSockets);
    gauge('fedistill_open_round_selected', 'Clients selected for the round now open (0 between rounds)', () => c.status().openRound?.selected ?? 0);
    gauge('fedistill_open_round_received', 'Uploads the open round has received so far (0 between rounds)', () => c.status().openRound?.received ?? 0);

    // Privacy series only where the federation runs with DP or secure aggregation.
    const privacy = () => c.status().privacy!;
    if (c.status().privacy) {
      gauge('fedistill_privacy_epsilon', "The federation's ε so far: the most any client has spent, at fedistill_privacy_delta", () => privacy().epsilon);
      gauge('fedistill_privacy_delta', 'δ the ε series are reported at', () => privacy().delta);
      gauge('fedistill_privacy_epsilon_per_round', "ε of one client's upload (one release of the Gaussian mechanism)", () => privacy().epsilonPerRound);
      gauge('fedistill_privacy_noise_multiplier', 'Noise multiplier z sent to clients (noise std over the clip-based norm)', () => privacy().noiseMultiplier);
      gauge('fedistill_privacy_exhausted_clients', 'Clients one more upload would take past the budget (no longer selected)', () => privacy().exhaustedClients);
    }
    let secureSeconds: Histogram | null = null;
    let secureBytes: Counter | null = null;
    if (c.status().secureAggregation) {
      secureSeconds = histogram('fedistill_secagg_round_seconds', 'Secure aggregation: from the round opening to the unmasked sum', [1, 2, 5, 10, 20, 30, 60, 120, 300]);
      secureBytes = new Counter({ name: 'fedistill_secagg_protocol_bytes_total', help: 'Secure aggregation: bytes of key exchange and reveal frames, both ways (masked uploads count as uplink)', registers });
      gauge('fedistill_secagg_contributors', 'Secure aggregation: contributors to the last unmasked sum', () => last()?.secureAggregation?.contributors);
    }

    let staleness: Histogram | null = null;
    let trainSteps: Counter | null = null;
    // Online series only where the coordinator's status has an online section (the online coordinator).
    const online = () => c.status().online!;
    if (c.status().online) {
      staleness = histogram(
        'fedistill_online_upload_staleness_versions',
        'Online: student versions published between the one an upload was computed on and the one it went into',
        [0, 1, 2, 3, 5, 8, 13, 21, 34, 55],
      );
      trainSteps = new Counter({ name: 'fedistill_online_train_steps_total', help: 'Online: student training steps taken', registers });
      gauge('fedistill_online_open_tasks', 'Online: tasks handed out and not yet answered', () => online().openTickets);
      gauge('fedistill_online_uploads_accepted', 'Online: uploads taken in since the federation began (kept across restarts)', () => online().accepted);
      gauge('fedistill_online_staleness_mean', 'Online: mean staleness (versions) of every upload taken in since the federation began', () => online().staleness.mean);
      gauge('fedistill_online_staleness_p90', 'Online: 90th percentile of that staleness', () => online().staleness.p90);
    }

    let evaluateFrom: number | null = null;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const handlers: Record<string, (...a: any[]) => void> = {
      upload: (e: { bytes: number; staleness?: number }) => {
        uploads.inc();
        uplink.inc(e.bytes);
        if (staleness && e.staleness !== undefined) staleness.observe(e.staleness);
      },
      phase: (e: { phase: string; at: number }) => {
        if (e.phase === 'evaluate') evaluateFrom = e.at;
        else if (e.phase === 'done' && evaluateFrom !== null) {
          evaluateSeconds.observe((e.at - evaluateFrom) / 1000);
          evaluateFrom = null;
        }
      },
      round: (s: RoundSummary) => {
        rounds.inc({ status: s.status });
        roundSeconds.observe(s.seconds);
        participants.observe(s.participants);
        if (s.status === 'completed') aggregateSeconds.observe(s.aggregateSeconds);
        if (trainSteps && s.trainSteps) trainSteps.inc(s.trainSteps);
        if (s.secureAggregation) {
          secureSeconds?.observe(s.secureAggregation.seconds);
          secureBytes?.inc(s.secureAggregation.keyBytes);
        }
      },
    };
    for (const [event, h] of Object.entries(handlers)) c.on(event, h);
    this.detach = () => {
      for (const [event, h] of Object.entries(handlers)) c.off(event, h);
    };
  }

  /** A frame of `bytes` went out to a client. */
  sent(bytes: number): void {
    this.downlinkBytes.inc(bytes);
  }

  /** A frame or handshake was refused with `code` (an ErrorMsg code, or 'unauthorized' at the handshake). */
  refused(event: string, code: string): void {
    this.refusals.inc({ event: ['handshake', 'hello', 'logits', 'weights'].includes(event) ? event : 'other', code });
  }

  /**
   * The Prometheus text exposition (format 0.0.4): the process's families, then this aggregator's. No name is in
   * both (ours all start with fedistill_), so the two texts concatenate into one valid exposition.
   */
  async render(): Promise<string> {
    const [process, own] = await Promise.all([processMetrics().metrics(), this.registry.metrics()]);
    return `${process.trimEnd()}\n\n${own}`;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  close(): void {
    this.detach();
    this.registry.clear();
  }
}
