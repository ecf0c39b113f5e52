/**
 * TLS end to end: a certificate authority and a server certificate for 127.0.0.1/localhost made here with the openssl
 * CLI; a real aggregator serving https + wss on one port; real clients that trust the CA for the socket and every HTTP
 * request; a client without it refused with a clear error; plain http to the TLS port refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FedistillError } from '../client/client.ts';
import { fetchWithCa, trustCa } from '../client/node/tls.ts';
import { fetchFederation } from '../client/node/private-data.ts';
import { makeClient, roundsDone, startBench, TOKEN, VIEWER_TOKEN, viewerAuth } from './helpers.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** A throwaway CA and a server certificate it signed, for 127.0.0.1 and localhost (SAN), valid for a day. */
function makeCertificates(): { dir: string; ca: string; cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'fedistill-tls-'));
  const f = (n: string) => join(dir, n);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=fedistill test CA');
  ssl('req', ...ec, '-keyout', f('key.pem'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1');
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n');
  ssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('cert.pem'), '-days', '1', '-extfile', f('ext.cnf'));
  return { dir, ca: f('ca.pem'), cert: f('cert.pem'), key: f('key.pem') };
}

test('TLS: a round over https/wss with clients that trust the CA; without it a clear refusal; plain http gets nothing', { timeout: 180_000 }, async (t) => {
  const certs = makeCertificates();
  t.after(() => rmSync(certs.dir, { recursive: true, force: true }));
  const b = await startBench(2, { rounds: 1, tls: { cert: certs.cert, key: certs.key } });
  t.after(() => b.agg.close());
  assert.match(b.url, /^https:\/\/127\.0\.0\.1:\d+$/, 'the server says https');
  const ca = readFileSync(certs.ca, 'utf8');
  const port = new URL(b.url).port;

  // Without the CA: the SDK stops at once (retrying can't make the certificate trusted) and says what to do.
  const stranger = makeClient(b, 0, { clientId: 'stranger', giveUpAfterMs: 30_000 });
  t.after(() => stranger.stop());
  const refused = await stranger.start().then(() => null, (e: unknown) => e);
  assert.ok(refused instanceof FedistillError && refused.code === 'untrusted', String(refused));
  assert.match(refused.message, /TLS certificate is not trusted \(.*(SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER).*\); pass the CA/);
  // Node's own fetch without the CA, and plain http on the TLS port: nothing is served.
  await assert.rejects(fetch(`${b.url}/healthz`));
  await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
  assert.equal(b.agg.coordinator.status().clients.length, 0, 'nobody registered without TLS trust');

  // With the CA: the socket (wss) and the HTTP requests (proxy set, /federation, /student, /status) all work.
  const https = fetchWithCa(ca);
  assert.equal((await https(`${b.url}/healthz`)).status, 200);
  const fed = await fetchFederation(b.url, 5000, () => {}, https);
  assert.equal(fed?.classNames.length, 10);
  const clients = [0, 1].map((i) => makeClient(b, i, { ...trustCa(ca) }));
  t.after(() => clients.forEach((c) => c.stop()));
  await Promise.all(clients.map((c) => c.start()));
  await roundsDone(b, 1, 120_000);
  const [round] = b.agg.coordinator.history;
  assert.equal(round.status, 'completed');
  assert.equal(round.participants, 2, 'both clients uploaded over wss, after fetching the proxy set over https');
  const student = await https(`${b.url}/student/model.json`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(student.status, 200);
  assert.ok(((await student.json()) as { modelTopology?: unknown }).modelTopology, 'the student over https');
  const status = await https(`${b.url}/status`, { headers: viewerAuth() });
  assert.equal(((await status.json()) as { round: number }).round, 1);
  // A 304 has no body: the fetch built on node:https answers it as a standard Response.
  const proxyPath = b.agg.proxyInfo.path;
  const again = await https(`${b.url}${proxyPath}`, { headers: { authorization: `Bearer ${TOKEN}`, 'if-none-match': `"${b.agg.proxyInfo.hash}"` } });
  assert.equal(again.status, 304);
});

test('fedistill server --tls-cert/--tls-key and fedistill client --ca: a federation over TLS from the command line', { timeout: 240_000 }, async (t) => {
  const certs = makeCertificates();
  t.after(() => rmSync(certs.dir, { recursive: true, force: true }));
  const server = run(['server', '--port', '0', '--token', TOKEN, '--viewer-token', VIEWER_TOKEN, '--tls-cert', certs.cert, '--tls-key', certs.key,
    '--rounds', '1', '--min-clients', '1', '--student', 'mlp', '--data-dir', `${ROOT}data/fashion-mnist-subset`, '--proxy-subset', '200',
    '--local-epochs', '1', '--distill-epochs', '1', '--backend', 'wasm']);
  t.after(() => server.child.kill('SIGKILL'));
  const url = (await server.waitFor(/listening on (https:\/\/[\d.]+:\d+)/))[1];
  const client = (extra: string[]) => run(['client', '--url', url, '--token', TOKEN, '--id', 'tls-cli', '--model', 'mlp', '--backend', 'wasm',
    '--data-dir', `${ROOT}data/fashion-mnist-subset`, '--resume-dir', join(certs.dir, 'resume'), '--give-up-after', '20', ...extra]);
  // Without --ca: exit 1 with one line naming the fix.
  const bare = client([]);
  assert.equal(await bare.exit, 1, bare.output());
  assert.match(bare.output(), /not trusted.*--ca FILE/);
  // With --ca: the class names from /federation, the proxy set and the round, all over TLS; exit 0 at the end.
  const good = client(['--ca', certs.ca]);
  t.after(() => good.child.kill('SIGKILL'));
  assert.equal(await good.exit, 0, good.output());
  assert.match(good.output(), /federation complete after round 1/);
  assert.match(good.output(), /class names from https:\/\//);
  assert.equal(await server.exit, 0, server.output());
});

function run(args: string[]) {
  const child = spawn(process.execPath, [`${ROOT}bin/fedistill.mjs`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitFor = (re: RegExp, timeoutMs = 60_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const t0 = Date.now();
      const t = setInterval(() => {
        const m = re.exec(out);
        if (m) (clearInterval(t), resolve(m));
        else if (child.exitCode !== null || Date.now() - t0 > timeoutMs) (clearInterval(t), reject(new Error(`no ${re} (exit ${child.exitCode}):\n${out}`)));
      }, 50);
    });
  return { child, exit, output: () => out, waitFor };
}
