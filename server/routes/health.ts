import type { FastifyPluginAsync } from 'fastify';
import type { Coordinator } from '../coordinator.ts';
import type { AggregatorMetrics } from '../metrics.ts';

export interface HealthRoutesOptions {
  coordinator: Coordinator;
  metrics: AggregatorMetrics;
  describe: () => Record<string, unknown>;
}

/** /healthz (liveness), /status (JSON for people and dashboards), /metrics (Prometheus). The dashboard page is in browser.ts. */
export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (app, o) => {
  app.get('/healthz', async () => ({ ok: true }));

  app.get('/status', async () => ({ ...o.describe(), ...o.coordinator.status() }));

  app.get('/metrics', async (_req, reply) => {
    const body = await o.metrics.render();
    return reply.type(o.metrics.contentType).send(body);
  });
};
