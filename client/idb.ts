/**
 * One IndexedDB object store as a small promise API (browsers only). Used by the proxy-set cache and the join page;
 * resolves to null-ish results rather than failing where IndexedDB is unavailable (some private windows).
 */
export class IdbStore<V> {
  private db: Promise<IDBDatabase | null> | null = null;

  constructor(private readonly dbName: string, private readonly store: string) {}

  private open(): Promise<IDBDatabase | null> {
    this.db ??= new Promise((resolve) => {
      if (typeof indexedDB === 'undefined') return resolve(null);
      const req = indexedDB.open(this.dbName, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(this.store);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => resolve(null);
      req.onblocked = () => resolve(null);
    });
    return this.db;
  }

  /** Runs `f` on the store in one transaction; undefined when IndexedDB is unavailable. */
  private async run<T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest<T>): Promise<T | undefined> {
    const db = await this.open();
    if (!db) return undefined;
    const r = f(db.transaction(this.store, mode).objectStore(this.store));
    return new Promise((resolve, reject) => {
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
  }

  get(key: string): Promise<V | undefined> {
    return this.run('readonly', (s) => s.get(key) as IDBRequest<V | undefined>);
  }
  async put(key: string, value: V): Promise<void> {
    await this.run('readwrite', (s) => s.put(value, key));
  }
  async delete(key: string): Promise<void> {
    await this.run('readwrite', (s) => s.delete(key));
  }
  async keys(): Promise<string[]> {
    return ((await this.run('readonly', (s) => s.getAllKeys())) ?? []) as string[];
  }
}
