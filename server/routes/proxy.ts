import type { FastifyPluginAsync } from 'fastify';
import type { ProxyInfo } from '../../shared/protocol/messages.ts';
import type { ClientAuth } from '../auth.ts';

export interface ProxyRoutesOptions {
  info: ProxyInfo;
  /** The msgpack body served for the proxy set (id, hash, shape, images; never labels). */
  body: Uint8Array;
  /** The clients' authentication: the shared token or the client's own credential as a bearer token. */
  auth: ClientAuth;
}

/** The public proxy set, by id, binary, cacheable by content hash (ETag). */
export const proxyRoutes: FastifyPluginAsync<ProxyRoutesOptions> = async (app, o) => {
  app.get<{ Params: { id: string } }>('/proxy/:id', async (req, reply) => {
    const who = o.auth.checkBearer(req.headers.authorization);
    if (!who.ok) return reply.code(401).send({ error: 'unauthorized', message: `send Authorization: Bearer <${o.auth.mode === 'credentials' ? 'your credential' : 'server token'}>: ${who.why}` });
    if (req.params.id !== o.info.id) return reply.code(404).send({ error: 'unknown-proxy', message: `this server serves proxy set '${o.info.id}'` });
    const etag = `"${o.info.hash}"`;
    reply.header('etag', etag).header('cache-control', 'public, max-age=31536000, immutable');
    if (req.headers['if-none-match'] === etag) return reply.code(304).send();
    reply.type('application/x-msgpack');
    return reply.send(Buffer.from(o.body.buffer, o.body.byteOffset, o.body.byteLength));
  });
};
