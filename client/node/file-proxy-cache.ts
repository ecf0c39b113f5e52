import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ProxyCache } from '../proxy-cache.ts';

/** Proxy sets cached on disk as <dir>/<sha256>.msgpack, written atomically. */
export class FileProxyCache implements ProxyCache {
  constructor(readonly dir = path.join(os.homedir(), '.cache', 'fedistill', 'proxy')) {}

  async get(hash: string): Promise<Uint8Array | null> {
    try {
      return new Uint8Array(await fs.readFile(this.file(hash)));
    } catch {
      return null;
    }
  }

  async put(hash: string, body: Uint8Array): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
    // Unique per write: two clients in one process may cache the same proxy set at the same moment.
    const tmp = `${this.file(hash)}.tmp-${process.pid}-${randomUUID()}`;
    await fs.writeFile(tmp, body);
    await fs.rename(tmp, this.file(hash));
  }

  private file(hash: string): string {
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error(`bad proxy hash '${hash}'`);
    return path.join(this.dir, `${hash}.msgpack`);
  }
}
