import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';

/** Paths fetched in bulk or by machines (the SDK bundle, demo files, scrapes): their successes log at trace only. */
const QUIET = /^\/(sdk|demo-data)\/|^\/(metrics|healthz|favicon\.ico)$/;

/**
 * fastify's request lines, quieter: one line per request when it completes (none when it comes in) — a 5xx at error,
 * a 4xx at warn, anything else at debug, and the static files and scrapes at trace. An exception behind a 5xx is
 * logged once more with its stack.
 */
export class RequestLog extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, req: FastifyRequest, reply: FastifyReply): void {
    const status = reply.statusCode;
    const path = req.url.split('?')[0];
    const ms = Math.round(reply.elapsedTime * 10) / 10;
    const fields = { method: req.method, url: path, status, ms, remote: req.ip };
    const line = `${req.method} ${path} ${status} (${ms} ms)`;
    if (error || status >= 500) reply.log.error({ ...fields, err: error ?? undefined }, line);
    else if (status >= 400) reply.log.warn(fields, line);
    else if (QUIET.test(path)) reply.log.trace(fields, line);
    else reply.log.debug(fields, line);
  }

  override defaultErrorLog(error: Error, req: FastifyRequest, reply: FastifyReply): void {
    if (reply.statusCode >= 500) reply.log.error({ err: error, url: req.url.split('?')[0] }, `${req.method} ${req.url.split('?')[0]} failed`);
  }

  override routeNotFound(): void {} // requestCompleted says 404
}
