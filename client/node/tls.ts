import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import type { ClientOptions } from '../client.ts';

export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>;

/**
 * A fetch that trusts `ca` (PEM, one or more certificates) for https:// URLs — Node's global fetch takes no CA per
 * request without undici, so this one speaks node:https and answers with a standard Response. Other URLs go to the
 * global fetch. Enough for what the SDK and the CLI ask a server: GET/HEAD with headers and an AbortSignal; redirects
 * are returned, not followed.
 */
export function fetchWithCa(ca: string | string[]): FetchLike {
  return async (input, init = {}) => {
    const url = new URL(String(input));
    if (url.protocol !== 'https:') return fetch(url, init);
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((v, k) => (headers[k] = v));
    return new Promise<Response>((resolve, reject) => {
      const req = httpsRequest(url, { method: init.method ?? 'GET', headers, ca, signal: init.signal ?? undefined }, (res) => {
        const status = res.statusCode ?? 0;
        const out = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (Array.isArray(v)) v.forEach((x) => out.append(k, x));
          else if (v !== undefined) out.set(k, String(v));
        }
        // A Response may not have a body for these statuses.
        const bodyless = status === 204 || status === 304 || init.method === 'HEAD';
        if (bodyless) res.resume();
        const body = bodyless ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
        resolve(new Response(body, { status, statusText: res.statusMessage ?? '', headers: out }));
      });
      req.on('error', reject);
      if (init.body !== undefined && init.body !== null) req.end(init.body as string | Uint8Array);
      else req.end();
    });
  };
}

/**
 * Everything a Node client needs to trust a server whose certificate a private CA signed: the socket's CA and a fetch
 * for the SDK's HTTP requests. `new FedistillClient({ ...trustCa(readFileSync('ca.pem', 'utf8')), url, … })`.
 */
export function trustCa(ca: string | string[]): Pick<ClientOptions, 'ca' | 'fetch'> {
  return { ca, fetch: fetchWithCa(ca) };
}
