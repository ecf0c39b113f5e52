import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Coordinator } from '../coordinator.ts';
import type { AggregatorMetrics } from '../metrics.ts';
import { viewerAllowed } from '../auth.ts';

export interface HealthRoutesOptions {
  coordinator: Coordinator;
  metrics: AggregatorMetrics;
  describe: () => Record<string, unknown>;
  /** The operator/viewer token /status and /metrics want (Authorization: Bearer); '' = public (--insecure-no-auth). */
  viewerToken: string;
}

/** /healthz (liveness), /status (JSON for people and dashboards), /metrics (Prometheus). The dashboard page is in browser.ts. */
export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (app, o) => {
  app.get('/healthz', async () => ({ ok: true }));

  // Health stays public; what the federation looks like is the operator's business (per route, whatever the URL's spelling).
  const viewerOnly = async (req: FastifyRequest, reply: FastifyReply) => {
    if (!viewerAllowed(o.viewerToken, req.headers.authorization)) {
      return reply.code(401).send({ error: 'unauthorized', message: `${req.routeOptions.url} needs the viewer token: send Authorization: Bearer <--viewer-token>` });
    }
  };

  app.get('/status', { onRequest: viewerOnly }, async () => ({ ...o.describe(), ...o.coordinator.status() }));

  app.get('/metrics', { onRequest: viewerOnly }, async (_req, reply) => {
    const body = await o.metrics.render();
    return reply.type(o.metrics.contentType).send(body);
  });
};
