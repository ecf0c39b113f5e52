import type { FastifyPluginAsync } from 'fastify';
import type { Coordinator } from '../coordinator.ts';
import { OnlineCoordinator } from '../online-coordinator.ts';
import type { Metrics } from '../metrics.ts';

export interface HealthRoutesOptions {
  coordinator: Coordinator;
  metrics: Metrics;
  describe: () => Record<string, unknown>;
  connectedSockets: () => number;
}

/** /healthz (liveness), /status (JSON for people and dashboards), /metrics (Prometheus). The dashboard page is in browser.ts. */
export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (app, o) => {
  app.get('/healthz', async () => ({ ok: true }));

  app.get('/status', async () => ({ ...o.describe(), ...o.coordinator.status() }));

  app.get('/metrics', async (_req, reply) => {
    const last = o.coordinator.history.at(-1);
    reply.type('text/plain; version=0.0.4');
    const online = o.coordinator instanceof OnlineCoordinator ? o.coordinator.onlineStats() : null;
    return o.metrics.render({
      ...(online && {
        fedistill_online_uploads_accepted: online.accepted,
        fedistill_online_staleness_mean: online.staleness.mean,
        fedistill_online_staleness_p90: online.staleness.p90,
        fedistill_online_open_tasks: online.openTickets,
      }),
      fedistill_round: o.coordinator.round,
      fedistill_student_version: o.coordinator.strategy.version,
      fedistill_student_accuracy: last?.studentAccuracy,
      fedistill_last_round_seconds: last?.seconds,
      fedistill_connected_sockets: o.connectedSockets(),
    });
  });
};
