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

/** /healthz (liveness), /status (JSON for people and dashboards), /metrics (Prometheus), / (a status page). */
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

  app.get('/', async (_req, reply) => {
    reply.type('text/html');
    return STATUS_PAGE;
  });
};

const STATUS_PAGE = `<!doctype html><meta charset="utf-8"><title>fedistill aggregator</title>
<style>body{font:14px system-ui;margin:2em}table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}</style>
<h1>fedistill aggregator</h1><div id="s">loading…</div>
<script>
async function tick(){const s=await (await fetch('/status')).json();
const rows=(s.history??[]).slice(-20).map(r=>'<tr><td>'+r.round+'</td><td>'+r.participants+'/'+r.selected+'</td><td>'+r.uplinkBytes+'</td><td>'+r.downlinkBytes+'</td><td>'+(r.studentAccuracy==null?'':(100*r.studentAccuracy).toFixed(2)+'%')+'</td><td>'+r.seconds.toFixed(1)+'</td></tr>').join('');
document.getElementById('s').innerHTML='<p>backend <b>'+s.backend?.name+'</b> · strategy <b>'+s.strategy+'</b> · round <b>'+s.round+'</b> · student v'+s.studentVersion+' · clients '+s.clients.filter(c=>c.connected).length+'/'+s.clients.length+'</p><table><tr><th>round</th><th>uploads</th><th>uplink B</th><th>downlink B</th><th>student acc</th><th>s</th></tr>'+rows+'</table>';}
tick();setInterval(tick,2000);
</script>`;
