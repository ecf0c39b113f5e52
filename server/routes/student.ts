import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { viewerAllowed, type ClientAuth } from '../auth.ts';
import { STUDENT_WEIGHTS_FILE, type StudentRelease } from '../state/student-release.ts';
import type { StudentShelf } from '../state/student-shelf.ts';

export interface StudentRoutesOptions {
  shelf: StudentShelf;
  /** The clients' authentication (shared token or their credentials): `end.studentPath` sends clients here with it. */
  auth: ClientAuth;
  /** The operator/viewer token: whoever may watch the federation may also load its student. */
  viewerToken: string;
}

const FILES = ['model.json', STUDENT_WEIGHTS_FILE, 'model-card.json'] as const;
type StudentFile = (typeof FILES)[number];

/**
 * The student as a standard TensorFlow.js LayersModel, from memory (with or without a state dir):
 * `tf.loadLayersModel('<server>/student/model.json')` loads the newest version; /student/v/<N>/model.json a kept one
 * (the newest STUDENT_VERSIONS_KEPT). model-card.json beside each says how to feed it and what it scored.
 */
export const studentRoutes: FastifyPluginAsync<StudentRoutesOptions> = async (app, o) => {
  // Public only with --insecure-no-auth and no viewer token; otherwise a client's secret (the shared token or its
  // unrevoked credential: clients are sent here by `end`) or the viewer token opens it. Both are checked, in constant
  // time, every time.
  const isPrivate = o.auth.mode !== 'none' || o.viewerToken !== '';
  const allowed = (req: FastifyRequest, reply: FastifyReply): boolean => {
    if (!isPrivate) return true;
    const given = req.headers.authorization;
    const asClient = o.auth.mode !== 'none' && o.auth.checkBearer(given).ok;
    const asViewer = o.viewerToken !== '' && viewerAllowed(o.viewerToken, given);
    if (asClient || asViewer) return true;
    const which = [o.auth.mode === 'token' && 'the server (client) token', o.auth.mode === 'credentials' && "a client's credential", o.viewerToken && 'the viewer token'].filter(Boolean).join(' or ');
    void reply.code(401).send({
      error: 'unauthorized',
      message: `the student needs ${which}: send Authorization: Bearer <token> (tf.loadLayersModel(url, { requestInit: { headers } }))`,
    });
    return false;
  };

  const send = (reply: FastifyReply, r: StudentRelease, file: StudentFile, weightsPath: string, immutable: boolean) => {
    // A version's files never change; "latest" does. Behind a token no shared cache may keep them.
    reply.header('cache-control', immutable ? `${isPrivate ? 'private' : 'public'}, max-age=31536000, immutable` : 'no-cache');
    reply.header('x-student-version', String(r.version));
    if (file === STUDENT_WEIGHTS_FILE) return reply.type('application/octet-stream').send(Buffer.from(r.weights.buffer, r.weights.byteOffset, r.weights.byteLength));
    if (file === 'model-card.json') return reply.type('application/json').send(r.card);
    const manifest = r.modelJson.weightsManifest.map((g) => ({ ...g, paths: g.paths.map(() => weightsPath) }));
    return reply.type('application/json').send({ ...r.modelJson, weightsManifest: manifest });
  };

  const none = (reply: FastifyReply) =>
    reply.code(404).send({ error: 'no-student-yet', message: 'no student has been published yet: the first round (online: the first version) has not completed' });

  // The newest version. Its model.json points at that version's immutable weights (v/<N>/weights.bin, relative to
  // /student/), so a client that reads model.json just before a new version lands still gets matching weights.
  for (const file of FILES) {
    app.get(`/student/${file}`, async (req, reply) => {
      if (!allowed(req, reply)) return reply;
      const r = o.shelf.latest();
      if (!r) return none(reply);
      return send(reply, r, file, `v/${r.version}/${STUDENT_WEIGHTS_FILE}`, false);
    });
  }

  app.get<{ Params: { n: string; file: string } }>('/student/v/:n/:file', async (req, reply) => {
    if (!allowed(req, reply)) return reply;
    const { n, file } = req.params;
    if (!(FILES as readonly string[]).includes(file)) return reply.code(404).send({ error: 'not-found', message: `a student version has ${FILES.join(', ')}; no '${file}'` });
    if (!/^\d+$/.test(n)) return reply.code(404).send({ error: 'not-found', message: `'${n}' is not a student version number (e.g. /student/v/3/model.json)` });
    const r = o.shelf.get(Number(n));
    if (!r) {
      const kept = o.shelf.versions();
      return reply.code(404).send({
        error: 'version-not-kept',
        message: kept.length
          ? `student v${n} is not kept: the server keeps the newest ${o.shelf.keep} versions (now ${kept.map((v) => `v${v}`).join(', ')})`
          : 'no student has been published yet',
        kept,
      });
    }
    return send(reply, r, file as StudentFile, STUDENT_WEIGHTS_FILE, true);
  });

  app.get('/student/versions', async (req, reply) => {
    if (!allowed(req, reply)) return reply;
    reply.header('cache-control', 'no-cache');
    return { latest: o.shelf.latest()?.version ?? null, kept: o.shelf.versions(), keep: o.shelf.keep };
  });
};
