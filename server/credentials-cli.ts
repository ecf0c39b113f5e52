import { parseArgs } from 'node:util';
import { UsageError } from '../shared/settings/index.ts';
import { CredentialStore } from './credentials/store.ts';
import { CLIENT_ID_PATTERN } from './credentials/token.ts';

const HELP = `fedistill credential — per-client credentials for a server run with --credentials --state-dir DIR

  fedistill credential issue  --state-dir DIR --client-id ID   print a new credential for client ID (once: it is not stored)
  fedistill credential revoke --state-dir DIR --client-id ID   revoke every credential issued to ID so far
  fedistill credential revoke --state-dir DIR --token-id TID   revoke one credential
  fedistill credential list   --state-dir DIR [--json]         the credentials issued, with their token ids and state

  --state-dir DIR   the server's --state-dir (env FEDISTILL_STATE_DIR): the signing secret (DIR/credentials/secret,
                    0600, made on first use) and the revocation list live there

A client passes its credential where it would pass the shared token (fedistill client --token CRED, the SDK's token
option, the join page's token field); it may only register as the id inside it. A running server picks a revocation
up within a second, closes that client's connections and refuses its handshakes; no restart.
`;

export async function main(argv: string[]): Promise<void> {
  const [action, ...rest] = argv;
  if (!action || action === '--help' || action === '-h') return void console.log(HELP);
  let values: { 'state-dir'?: string; 'client-id'?: string; 'token-id'?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: { 'state-dir': { type: 'string' }, 'client-id': { type: 'string' }, 'token-id': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) return void console.log(HELP);
  const stateDir = values['state-dir'] ?? process.env.FEDISTILL_STATE_DIR;
  if (!stateDir) throw new UsageError('give --state-dir DIR: the state dir of the server the credentials are for');
  const store = new CredentialStore(stateDir);
  const clientId = values['client-id'];
  const tokenId = values['token-id'];
  if (clientId !== undefined && !CLIENT_ID_PATTERN.test(clientId)) throw new UsageError(`--client-id: '${clientId}' is not 1 to 128 letters, digits and '_.:-'`);

  switch (action) {
    case 'issue': {
      if (!clientId || tokenId) throw new UsageError('issue takes --client-id ID (and no --token-id)');
      const { token, claims } = store.issue(clientId);
      // The credential alone on stdout (scripts capture it); what it is on stderr.
      console.error(`credential for client '${claims.id}' (token id ${claims.tid}); give it to that client only — it is not stored:`);
      console.log(token);
      return;
    }
    case 'revoke': {
      if (!!clientId === !!tokenId) throw new UsageError('revoke takes --client-id ID or --token-id TID (one of them)');
      const issued = store.issued();
      if (tokenId && !issued.some((c) => c.tid === tokenId)) throw new Error(`no credential with token id '${tokenId}' was issued from ${store.dir} (fedistill credential list)`);
      if (clientId && !issued.some((c) => c.id === clientId)) throw new Error(`no credential was issued to client '${clientId}' from ${store.dir} (fedistill credential list)`);
      const n = store.revoke(tokenId ? { tokenId } : { clientId: clientId! });
      console.log(tokenId ? `revoked credential ${tokenId}` : `revoked ${n} credential${n === 1 ? '' : 's'} of client '${clientId}' (a credential issued to it from now on is valid)`);
      return;
    }
    case 'list': {
      if (clientId || tokenId) throw new UsageError('list takes only --state-dir (and --json)');
      store.refresh(true);
      const rows = store.issued().map((c) => ({ ...c, issued: new Date(c.iat).toISOString(), revoked: store.isRevoked(c) }));
      if (values.json) return void console.log(JSON.stringify(rows, null, 1));
      if (!rows.length) return void console.log(`no credentials issued from ${store.dir}`);
      const w = Math.max(9, ...rows.map((r) => r.id.length));
      console.log(`${'client id'.padEnd(w)}  ${'token id'.padEnd(22)}  ${'issued'.padEnd(24)}  state`);
      for (const r of rows) console.log(`${r.id.padEnd(w)}  ${r.tid.padEnd(22)}  ${r.issued.padEnd(24)}  ${r.revoked ? 'revoked' : 'active'}`);
      return;
    }
    default:
      throw new UsageError(`unknown action '${action}': issue, revoke or list`);
  }
}
