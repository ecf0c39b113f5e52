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
    mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.tmp-${process.pid}-${randomUUID()}`;
    writeFileSync(tmp, JSON.stringify({ url: new URL(this.url).origin, clientId: this.clientId, resumeToken }) + '\n', { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}
