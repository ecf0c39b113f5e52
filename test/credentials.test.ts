/**
 * Per-client credentials end to end, on a real aggregator with a state dir: issued by the operator command, used by
 * real clients through rounds, bound to their client id, refused when tampered with or signed by another server, and
 * revoked while connected without a restart. Also: a known offline id is not taken over without its resume token,
 * /status and /metrics want the viewer token, and the server refuses to start without any client authentication.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FedistillError } from '../client/client.ts';
import { createAggregator } from '../server/app.ts';
import { CredentialStore } from '../server/credentials/store.ts';
import { PROTOCOL_VERSION, type WelcomeMsg } from '../shared/protocol/messages.ts';
import { makeClient, RawPeer, roundsDone, runCli, startBench, subsetData, TOKEN, viewerAuth } from './helpers.ts';


function stateDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'fedistill-cred-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const cli = (args: string[]) => runCli(args);

const hello = (clientId: string, resumeToken?: string) => ({ type: 'hello', protocol: PROTOCOL_VERSION, clientId, model: 'mlp', numSamples: 10, codec: 'fp32', resumeToken });

test('credentials: issued by the CLI, real rounds with them; revoked while connected → disconnected and refused, no restart', { timeout: 240_000 }, async (t) => {
  const dir = stateDir(t);
  // The operator command makes the secret (0600) and prints the credential alone on stdout.
  const issued = await cli(['credential', 'issue', '--state-dir', dir, '--client-id', 'c0']);
  assert.equal(issued.code, 0, issued.stderr);
  const cred0 = issued.stdout.trim();
  assert.match(cred0, /^fdc1\.[\w-]+\.[\w-]+$/);
  assert.equal(statSync(join(dir, 'credentials', 'secret')).mode & 0o777, 0o600);
  const cred1 = new CredentialStore(dir).issue('c1').token;

  const b = await startBench(2, { token: '', credentials: true, stateDir: dir, rounds: 3, minClients: 2 });
  t.after(() => b.agg.close());
  const c0 = makeClient(b, 0, { token: cred0 });
  let c1 = makeClient(b, 1, { token: cred1 });
  t.after(() => (c0.stop(), c1.stop()));
  await Promise.all([c0.start(), c1.start()]);
  await roundsDone(b, 1);
  assert.equal(b.agg.coordinator.history[0].participants, 2);

  // Revoke c1 with the operator command while it is connected: the running server closes its connection within a
  // second or so, and its reconnect is refused at the handshake (no restart).
  const revoked = await cli(['credential', 'revoke', '--state-dir', dir, '--client-id', 'c1']);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.match(revoked.stdout, /revoked 1 credential of client 'c1'/);
  await assert.rejects(c1.finished(), (e: FedistillError) => e.code === 'unauthorized' && /revoked/.test(e.message));
  assert.equal(b.agg.coordinator.status().clients.find((c) => c.id === 'c1')?.connected, false);
  const list = await cli(['credential', 'list', '--state-dir', dir, '--json']);
  assert.deepEqual((JSON.parse(list.stdout) as { id: string; revoked: boolean }[]).map((r) => [r.id, r.revoked]), [['c0', false], ['c1', true]]);

  // A credential issued to c1 after the revocation is valid: it takes its offline id back without the old session's
  // resume token (the credential vouches for the id), and the federation goes on.
  c1 = makeClient(b, 1, { token: new CredentialStore(dir).issue('c1').token });
  await c1.start();
  await roundsDone(b, 3);
  assert.deepEqual(b.agg.coordinator.history.map((r) => [r.round, r.status, r.participants]), [[1, 'completed', 2], [2, 'completed', 2], [3, 'completed', 2]]);
});

test("credentials: bound to their client id; tampered, foreign and the shared token are refused", { timeout: 120_000 }, async (t) => {
  const dir = stateDir(t);
  const store = new CredentialStore(dir);
  const credA = store.issue('alice').token;
  // Many refusals from one address on purpose: the failed-auth back-off (another test's subject) is set out of the way.
  const b = await startBench(1, { token: '', credentials: true, stateDir: dir, rounds: 1, minClients: 2, authFailures: 1000 });
  t.after(() => b.agg.close());

  // alice's credential may only say hello as alice.
  const asBob = makeClient(b, 0, { token: credA, clientId: 'bob' });
  t.after(() => asBob.stop());
  await assert.rejects(asBob.start(), (e: FedistillError) => e.code === 'unauthorized' && /credential is for client id 'alice', not 'bob'/.test(e.message));
  const peer = new RawPeer(b.url, credA);
  t.after(() => peer.close());
  peer.send('hello', hello('bob'));
  const err = await peer.error();
  assert.equal(err.code, 'unauthorized');
  assert.equal(b.agg.coordinator.status().clients.length, 0, 'bob was never registered');

  // Handshakes with a tampered credential (another id in the payload, the signature kept), one signed by another
  // server's secret, a truncated signature, the shared-token style, or nothing: all refused before any frame.
  const [prefix, payload, sig] = credA.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  const forged = `${prefix}.${Buffer.from(JSON.stringify({ ...claims, id: 'bob' })).toString('base64url')}.${sig}`;
  const foreign = new CredentialStore(stateDir(t)).issue('alice').token;
  for (const [what, token] of [['forged', forged], ['foreign', foreign], ['truncated', credA.slice(0, -3)], ['long', `${credA}AAAA`], ['shared', TOKEN], ['none', '']]) {
    const c = makeClient(b, 0, { token, clientId: 'alice', giveUpAfterMs: 20_000 });
    t.after(() => c.stop());
    const e = await c.start().then(() => null, (x: unknown) => x);
    assert.ok(e instanceof FedistillError && e.code === 'unauthorized', `${what}: ${e}`);
    assert.match(e.message, what === 'forged' || what === 'foreign' || what === 'truncated' || what === 'long' ? /bad signature/ : /per-client credentials/, what);
  }
  // HTTP takes the same credential as a bearer token, and nothing forged.
  const proxy = (token: string) => fetch(`${b.url}${b.agg.proxyInfo.path}`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal((await proxy(credA)).status, 200);
  assert.equal((await proxy(forged)).status, 401);
  assert.equal((await proxy(TOKEN)).status, 401);
  const good = makeClient(b, 0, { token: credA, clientId: 'alice' });
  t.after(() => good.stop());
  assert.equal((await good.start()).clientId, 'alice');
});

test('a known offline client id is not taken over without its resume token (shared-token mode)', { timeout: 60_000 }, async (t) => {
  const b = await startBench(2, { rounds: 1, minClients: 3 });
  t.after(() => b.agg.close());
  const first = new RawPeer(b.url);
  first.send('hello', hello('site-a'));
  const { resumeToken } = (await first.next((m) => m.type === 'welcome')) as WelcomeMsg;
  first.close();
  while (b.agg.coordinator.status().clients.find((c) => c.id === 'site-a')?.connected) await new Promise((r) => setTimeout(r, 20));

  // Anyone else with the shared token: refused, and told what would work.
  const thief = new RawPeer(b.url);
  t.after(() => thief.close());
  thief.send('hello', hello('site-a'));
  const refused = await thief.error();
  assert.equal(refused.code, 'unauthorized');
  assert.match(refused.message, /registered \(offline\); a hello for it must present the resumeToken/);
  thief.send('hello', hello('site-a', 'not-the-token'));
  assert.equal((await thief.error()).code, 'unauthorized');
  // The SDK says it as 'duplicate' (the id belongs to another session).
  const sdk = makeClient(b, 0, { clientId: 'site-a' });
  t.after(() => sdk.stop());
  await assert.rejects(sdk.start(), (e: FedistillError) => e.code === 'duplicate' && /resumeToken/.test(e.message));
  // The owner, with its token: welcomed again, same token.
  const owner = new RawPeer(b.url);
  t.after(() => owner.close());
  owner.send('hello', hello('site-a', resumeToken));
  assert.equal(((await owner.next((m) => m.type === 'welcome')) as WelcomeMsg).resumeToken, resumeToken);
});

test('/status and /metrics want the viewer token (one is made when none is set); /healthz stays public', { timeout: 60_000 }, async (t) => {
  const b = await startBench(1, { rounds: 1 });
  t.after(() => b.agg.close());
  for (const path of ['/status', '/metrics']) {
    assert.equal((await fetch(`${b.url}${path}`)).status, 401, path);
    assert.equal((await fetch(`${b.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 401, `${path}: the client token is not the viewer's`);
    assert.equal((await fetch(`${b.url}${path}`, { headers: viewerAuth('x'.repeat(200)) })).status, 401, `${path}: a long guess`);
    assert.equal((await fetch(`${b.url}${path}`, { headers: viewerAuth() })).status, 200, path);
  }
  assert.equal((await fetch(`${b.url}/healthz`)).status, 200);

  // No viewer token given: one is generated and kept (0600) in the state dir, so it survives a restart.
  const dir = stateDir(t);
  const lines: string[] = [];
  const gen = await startBench(1, { rounds: 1, viewerToken: '', stateDir: dir }, (m) => lines.push(m));
  t.after(() => gen.agg.close());
  const file = join(dir, 'viewer-token');
  const made = readFileSync(file, 'utf8').trim();
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.ok(made.length >= 24 && gen.agg.config.viewerToken === made);
  assert.ok(lines.some((l) => l.includes(file)), 'the log says where the viewer token is');
  assert.ok(!lines.some((l) => l.includes(made)), 'the token kept in a file is not logged');
  assert.equal((await fetch(`${gen.url}/status`)).status, 401);
  assert.equal((await fetch(`${gen.url}/status`, { headers: viewerAuth(made) })).status, 200);
});

test('no client authentication is refused: the CLI exits 2, createAggregator throws; an empty token is not "no auth"', { timeout: 60_000 }, async () => {
  const none = await cli(['server', '--port', '0']);
  assert.equal(none.code, 2, none.stderr);
  assert.match(none.stderr, /no client authentication: give --token T .* --credentials .* --insecure-no-auth/);
  const both = await cli(['server', '--port', '0', '--token', 'x', '--insecure-no-auth']);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /give one of --token, --insecure-no-auth, not several/);
  const credNoDir = await cli(['server', '--port', '0', '--credentials']);
  assert.equal(credNoDir.code, 2);
  assert.match(credNoDir.stderr, /--credentials needs --state-dir/);
  const halfTls = await cli(['server', '--port', '0', '--token', 'x', '--tls-cert', 'cert.pem']);
  assert.equal(halfTls.code, 2);
  assert.match(halfTls.stderr, /--tls-cert FILE and --tls-key FILE together/);

  const { train } = await subsetData();
  const proxy = { ...train, count: 50, images: train.images.subarray(0, 50 * 784), labels: null };
  assert.throws(() => createAggregator({ proxy, config: { port: 0 } }), /no client authentication/);
  assert.throws(() => createAggregator({ proxy, config: { port: 0, token: '' } }), /no client authentication/);
  const open = createAggregator({ proxy, config: { port: 0, insecureNoAuth: true } });
  assert.equal(open.config.viewerToken, '', 'explicitly open: no viewer token is made either');
  await open.close();
});

test('fedistill credential: usage errors exit 2, unknown ids exit 1, list prints a table', { timeout: 60_000 }, async (t) => {
  const dir = stateDir(t);
  assert.equal((await cli(['credential', 'issue', '--state-dir', dir])).code, 2, 'no --client-id');
  assert.equal((await cli(['credential', 'issue', '--state-dir', dir, '--client-id', 'bad id!'])).code, 2);
  assert.equal((await cli(['credential', 'issue', '--client-id', 'x'])).code, 2, 'no state dir');
  assert.equal((await cli(['credential', 'frobnicate', '--state-dir', dir])).code, 2);
  assert.equal((await cli(['credential', 'revoke', '--state-dir', dir, '--client-id', 'nobody'])).code, 1);
  const a = (await cli(['credential', 'issue', '--state-dir', dir, '--client-id', 'site-a'])).stdout.trim();
  const tid = JSON.parse(Buffer.from(a.split('.')[1], 'base64url').toString()).tid as string;
  const r = await cli(['credential', 'revoke', '--state-dir', dir, '--token-id', tid]);
  assert.equal(r.code, 0, r.stderr);
  const table = (await cli(['credential', 'list', '--state-dir', dir])).stdout;
  assert.match(table, new RegExp(`site-a\\s+${tid.replace(/[-]/g, '\\-')}\\s+\\S+\\s+revoked`));
  assert.ok(!table.includes(a), 'list never shows a credential itself');
  assert.equal(new CredentialStore(dir).verify(a).ok, false);
});
