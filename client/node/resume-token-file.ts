import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * A client id's resume token for one server, kept on disk (0600) across restarts of the client: a server refuses a
 * hello for a registered id — connected or offline — without that id's token, so a `fedistill client --id alice`
 * that crashed and starts again takes its id back with the token its last welcome gave. One file per server origin
 * and client id, named by their sha256 (nothing to read off a directory listing).
 */
export class ResumeTokenFile {
  readonly file: string;

  constructor(
    readonly url: string,
    readonly clientId: string,
    dir = path.join(os.homedir(), '.cache', 'fedistill', 'resume'),
  ) {
    const key = createHash('sha256').update(`${new URL(url).origin}\n${clientId}`).digest('hex');
    this.file = path.join(dir, `${key}.json`);
  }

  read(): string | undefined {
    try {
      const j = JSON.parse(readFileSync(this.file, 'utf8')) as { resumeToken?: unknown };
      return typeof j.resumeToken === 'string' ? j.resumeToken : undefined;
    } catch {
      return undefined; // none yet, or unreadable: a first hello gets a new one
    }
  }

  write(resumeToken: string): void {
    this.writeJson(this.file, { url: new URL(this.url).origin, clientId: this.clientId, resumeToken });
  }

  /**
   * The privacy accountant's state for this server and id (--dp-budget): what the client's data has already cost
   * outlives the process, so a restart does not start from a fresh budget. Unreadable state is an error, not zero.
   */
  readPrivacy(): unknown {
    let text: string;
    try {
      text = readFileSync(this.privacyFile, 'utf8');
    } catch {
      return undefined; // nothing spent yet
    }
    try {
      return (JSON.parse(text) as { accountant?: unknown }).accountant;
    } catch (e) {
      throw new Error(`${this.privacyFile}: unreadable privacy state (${(e as Error).message}); refusing to start with a fresh budget`);
    }
  }

  writePrivacy(accountant: unknown): void {
    this.writeJson(this.privacyFile, { url: new URL(this.url).origin, clientId: this.clientId, accountant });
  }

  get privacyFile(): string {
    return this.file.replace(/\.json$/, '.privacy.json');
  }

  private writeJson(file: string, body: unknown): void {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.tmp-${process.pid}-${randomUUID()}`;
    writeFileSync(tmp, JSON.stringify(body) + '\n', { mode: 0o600 });
    renameSync(tmp, file);
  }
}
