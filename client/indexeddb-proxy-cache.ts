import { IdbStore } from './idb.ts';
import type { ProxyCache } from './proxy-cache.ts';

/**
 * The proxy set kept in the browser's IndexedDB, keyed by its content hash: a reload (or the next visit) does not
 * download it again, and a server that changes its proxy set changes the hash, so the stale copy is never used.
 * Only the newest `keep` sets are kept. Does nothing where IndexedDB is unavailable (private windows of some
 * browsers): the client then simply downloads the set.
 */
export class IndexedDbProxyCache implements ProxyCache {
  private readonly store: IdbStore<{ body: Uint8Array; at: number }>;

  constructor(dbName = 'fedistill', private readonly keep = 2) {
    this.store = new IdbStore(dbName, 'proxy');
  }

  async get(hash: string): Promise<Uint8Array | null> {
    const rec = await this.store.get(hash);
    return rec ? new Uint8Array(rec.body) : null;
  }

  async put(hash: string, body: Uint8Array): Promise<void> {
    await this.store.put(hash, { body: body.slice(), at: Date.now() });
    const keys = await this.store.keys();
    if (keys.length <= this.keep) return;
    const ages = await Promise.all(keys.map(async (k) => ({ k, at: (await this.store.get(k))?.at ?? 0 })));
    for (const { k } of ages.sort((a, b) => b.at - a.at).slice(this.keep)) await this.store.delete(k);
  }

  /** The hashes held, for pages that show what is cached. */
  hashes(): Promise<string[]> {
    return this.store.keys();
  }
}
