import type { ProxyCache } from './proxy-cache.ts';

/**
 * The proxy set kept in the browser's IndexedDB, keyed by its content hash: a reload (or the next visit) does not
 * download it again, and a server that changes its proxy set changes the hash, so the stale copy is never used.
 * Only the newest `keep` sets are kept. Falls back to doing nothing when IndexedDB is unavailable (private windows
 * of some browsers): the client then simply downloads the set.
 */
export class IndexedDbProxyCache implements ProxyCache {
  private db: Promise<IDBDatabase | null> | null = null;

  constructor(private readonly dbName = 'fedistill', private readonly keep = 2) {}

  private open(): Promise<IDBDatabase | null> {
    this.db ??= new Promise((resolve) => {
      if (typeof indexedDB === 'undefined') return resolve(null);
      const req = indexedDB.open(this.dbName, 1);
      req.onupgradeneeded = () => req.result.createObjectStore('proxy');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => resolve(null);
      req.onblocked = () => resolve(null);
    });
    return this.db;
  }

  async get(hash: string): Promise<Uint8Array | null> {
    const db = await this.open();
    if (!db) return null;
    const rec = await request<{ body: Uint8Array; at: number } | undefined>(db.transaction('proxy').objectStore('proxy').get(hash));
    return rec ? new Uint8Array(rec.body) : null;
  }

  async put(hash: string, body: Uint8Array): Promise<void> {
    const db = await this.open();
    if (!db) return;
    const store = db.transaction('proxy', 'readwrite').objectStore('proxy');
    await request(store.put({ body: body.slice(), at: Date.now() }, hash));
    const keys = (await request<IDBValidKey[]>(store.getAllKeys())) as string[];
    if (keys.length > this.keep) {
      const recs = await Promise.all(keys.map(async (k) => ({ k, at: (await request<{ at: number }>(store.get(k))).at })));
      for (const { k } of recs.sort((a, b) => b.at - a.at).slice(this.keep)) await request(store.delete(k));
    }
  }

  /** The hashes held, for pages that show what is cached. */
  async hashes(): Promise<string[]> {
    const db = await this.open();
    return db ? ((await request<IDBValidKey[]>(db.transaction('proxy').objectStore('proxy').getAllKeys())) as string[]) : [];
  }
}

function request<T>(r: IDBRequest): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result as T);
    r.onerror = () => reject(r.error);
  });
}
