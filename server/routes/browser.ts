import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';
import { resolveRepoPath, SUBSET_DIR } from '../../datasets/fashion-mnist.ts';

export interface BrowserRoutesOptions {
  /** What a page needs to know before it connects (input shape, classes, strategy …): served at /federation. */
  federation: () => Record<string, unknown>;
  /** Serve the committed public Fashion-MNIST subset under /demo-data/fashion-mnist-subset/ (demo shards). */
  demoData: boolean;
}

/** Where `npm run build` puts the browser bundle, the pages and the .wasm files. */
export const BROWSER_DIST = (): string => resolveRepoPath('dist', 'browser');

const DEMO_FILES = new Set(['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']);

/**
 * The browser side of the aggregator: the SDK bundle and its .wasm files under /sdk/ (usable from other origins when
 * CORS allows them), the dashboard page at /, the join page at /join, the federation's description at /federation, and
 * the demo data.
 */
export const browserRoutes: FastifyPluginAsync<BrowserRoutesOptions> = async (app, o) => {
  const dist = BROWSER_DIST();
  const built = existsSync(dist);
  if (built) {
    await app.register(fastifyStatic, {
      root: dist,
      prefix: '/sdk/',
      // Other origins may load the bundle with <script type=module> (CORS decides which); a cross-origin-isolated
      // embedding page also needs the resource policy to say so.
      setHeaders: (res) => {
        res.setHeader('cross-origin-resource-policy', 'cross-origin');
        res.setHeader('cache-control', 'no-cache');
      },
    });
  } else {
    app.get('/sdk/*', async (_req, reply) => reply.code(503).type('text/plain').send(notBuilt(dist)));
  }

  // The pages, read per request (small; a rebuild shows without a restart). /join is not cross-origin isolated on
  // purpose: isolation makes tfjs-backend-wasm load its threaded build, which in this bundle still runs one thread
  // (from 23% slower to 3% faster than the plain SIMD build over three runs of `npm run bench:browser`).
  for (const [route, file] of [['/', 'dashboard.html'], ['/join', 'join.html']] as const) {
    app.get(route, async (_req, reply) => {
      const page = await readFile(`${dist}/${file}`).catch(() => null);
      if (!page) return reply.code(503).type('text/plain').send(notBuilt(dist));
      return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(page);
    });
  }

  app.get('/federation', async () => o.federation());
  app.get('/favicon.ico', async (_req, reply) => reply.code(204).send());

  if (o.demoData) {
    app.get<{ Params: { file: string } }>('/demo-data/fashion-mnist-subset/:file', async (req, reply) => {
      if (!DEMO_FILES.has(req.params.file)) return reply.code(404).send({ error: 'not-found', message: `no demo file '${req.params.file}'` });
      reply.header('cache-control', 'public, max-age=86400').header('cross-origin-resource-policy', 'cross-origin');
      return reply.type('application/gzip').send(await readFile(`${SUBSET_DIR()}/${req.params.file}`));
    });
  }
};

function notBuilt(dist: string): string {
  return `the browser assets are not built (${dist} is missing): run 'npm run build' in the fedistill checkout`;
}
