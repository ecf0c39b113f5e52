import type { Namespace, Server, Socket } from 'socket.io';
import { tokenMatches } from '../auth.ts';
import type { Logger } from '../logger.ts';
import type { Coordinator } from '../coordinator.ts';
import type { ClientsUpdate, DashboardSnapshot, Phase, RoundSummary, Timeline, TimelineEvent } from '../../shared/dashboard-feed.ts';

/**
 * The live dashboard's data feed: a read-only socket.io namespace. A viewer gets one `snapshot` on connect, then
 * small incremental events as the coordinator emits them. Viewers can't change anything: the namespace has no
 * handlers, and a viewer that keeps sending is disconnected. Nothing secret (tokens, resume tokens) is ever sent.
 *
 * Events to viewers (socket.io's JSON encoding):
 *   snapshot     DashboardSnapshot
 *   round-start  { round, at, deadline, selected }          a round opens (online: the next version's window)
 *   upload       { round, clientId, bytes, at, staleness? }  an accepted upload (online: staleness in versions)
 *   phase        { round, phase, at }                        'closed' | 'aggregate' | 'evaluate' | 'done'
 *   round        RoundSummary                                a round completed (online: a version published)
 *   clients      ClientsUpdate                               the client list and round progress, at most every 250 ms
 */
export const DASHBOARD_NAMESPACE = '/dashboard';

/** A viewer that sends more than this many events (it never needs to send any) is disconnected. */
export const VIEWER_EVENT_ALLOWANCE = 10;
const CLIENTS_THROTTLE_MS = 250;
/** Per round (an online window can take many uploads): enough for the chart, bounded memory. */
const MAX_TIMELINE_EVENTS = 2000;

// The wire types live in shared/ (the browser page reads them too); re-exported for server-side users.
export type { ClientsUpdate, DashboardClient, DashboardSnapshot, Phase, Timeline, TimelineEvent } from '../../shared/dashboard-feed.ts';

export interface DashboardOptions {
  viewerToken: string;
  describe: () => Record<string, unknown>;
  log: Logger;
}

export function attachDashboard(io: Server, coordinator: Coordinator, o: DashboardOptions): { close(): void } {
  const nsp: Namespace = io.of(DASHBOARD_NAMESPACE);
  let timeline: Timeline | null = null;
  /** When the last version's evaluation began: the next online window (the version being built) opened then. */
  let windowFrom: number | null = null;

  if (o.viewerToken) {
    nsp.use((socket, next) => {
      if (tokenMatches(socket.handshake.auth?.viewerToken, o.viewerToken)) return next();
      next(new Error('unauthorized: this dashboard needs a viewer token (auth.viewerToken)'));
    });
  }

  const status = (): ClientsUpdate => {
    const s = coordinator.status();
    return { at: Date.now(), round: s.round, studentVersion: s.studentVersion, openRound: s.openRound, clients: s.clients };
  };

  const snapshot = (): DashboardSnapshot => {
    const { history: _h, ...server } = o.describe();
    return {
      at: Date.now(),
      server: scrub(server),
      status: status(),
      history: coordinator.history,
      timeline,
      tasks: validTasks(coordinator.config.tasks),
    };
  };

  nsp.on('connection', (socket: Socket) => {
    let strikes = 0;
    // Read-only: there is nothing a viewer may ask for. Answer nothing; hang up on a viewer that keeps talking.
    socket.onAny(() => {
      if (++strikes > VIEWER_EVENT_ALLOWANCE) {
        o.log.warn({ viewer: socket.id, address: socket.handshake.address }, `dashboard: viewer ${socket.id} keeps sending events; disconnected`);
        socket.disconnect(true);
      }
    });
    try {
      socket.emit('snapshot', snapshot());
    } catch (e) {
      o.log.error({ err: e, viewer: socket.id }, 'dashboard: snapshot failed');
      socket.disconnect(true);
    }
  });

  const viewers = () => nsp.sockets.size > 0;

  let clientsTimer: ReturnType<typeof setTimeout> | null = null;
  let clientsSentAt = 0;
  const pushClients = () => {
    if (clientsTimer || !viewers()) return;
    clientsTimer = setTimeout(() => {
      clientsTimer = null;
      clientsSentAt = Date.now();
      if (viewers()) nsp.emit('clients', status());
    }, Math.max(0, clientsSentAt + CLIENTS_THROTTLE_MS - Date.now()));
    clientsTimer.unref?.();
  };

  const record = (ev: TimelineEvent) => {
    if (timeline && timeline.events.length < MAX_TIMELINE_EVENTS) timeline.events.push(ev);
  };

  const openRound = (round: number, at: number, deadline: number | null, selected: string[]) => {
    timeline = { round, openedAt: at, deadline, selected, events: [] };
    nsp.emit('round-start', { round, at, deadline, selected });
  };

  // The coordinator emits these through its tell(), which logs (never rethrows) a handler's error.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const handlers: Record<string, (...a: any[]) => void> = {
    'round-start': (round: number, selected: string[], deadline?: number) => {
      openRound(round, Date.now(), deadline ?? null, selected ?? []);
      pushClients();
    },
    upload: (e: { clientId: string; round: number; bytes: number; at: number; staleness?: number }) => {
      // Online has no round-start: the first upload into a new version's window opens it.
      if (!timeline || timeline.round !== e.round) openRound(e.round, Math.min(windowFrom ?? e.at, e.at), null, []);
      record({ kind: 'upload', at: e.at, clientId: e.clientId, bytes: e.bytes, staleness: e.staleness });
      nsp.emit('upload', { round: e.round, clientId: e.clientId, bytes: e.bytes, at: e.at, staleness: e.staleness });
      pushClients();
    },
    phase: (e: { round: number; phase: Phase; at: number }) => {
      if (e.phase === 'evaluate') windowFrom = e.at;
      if (timeline?.round !== e.round) return; // online: a version published with no upload in its window
      record({ kind: e.phase, at: e.at });
      nsp.emit('phase', { round: e.round, phase: e.phase, at: e.at });
    },
    round: (summary: RoundSummary) => {
      nsp.emit('round', summary);
      pushClients();
    },
    client: () => pushClients(),
  };
  for (const [event, h] of Object.entries(handlers)) coordinator.on(event, h);

  return {
    close() {
      for (const [event, h] of Object.entries(handlers)) coordinator.off(event, h);
      if (clientsTimer) clearTimeout(clientsTimer);
      clientsTimer = null;
      // Viewers are not disconnected here: io.close() drops their transports next, and a viewer whose transport drops
      // reconnects by itself (to the restarted server), whereas a disconnect packet would tell it not to.
      nsp.removeAllListeners();
    },
  };
}

/** Defence in depth: whatever describe() returns, no field named like a token reaches a viewer with its value. */
function scrub(v: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (/token|secret|password/i.test(k)) out[k] = x ? '(set)' : '';
    else if (x && typeof x === 'object' && !Array.isArray(x) && Object.getPrototypeOf(x) === Object.prototype) out[k] = scrub(x as Record<string, unknown>);
    else out[k] = x;
  }
  return out;
}

function validTasks(tasks: unknown): number[][] | null {
  if (!Array.isArray(tasks) || tasks.length === 0) return null;
  if (!tasks.every((t) => Array.isArray(t) && t.every((c) => Number.isInteger(c) && c >= 0))) return null;
  return tasks as number[][];
}
