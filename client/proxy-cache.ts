/** Where a client keeps the proxy set between runs, keyed by its content hash (so a changed set is refetched). */
export interface ProxyCache {
  get(hash: string): Promise<Uint8Array | null>;
  put(hash: string, body: Uint8Array): Promise<void>;
}

export class MemoryProxyCache implements ProxyCache {
  private readonly m = new Map<string, Uint8Array>();
  async get(hash: string) {
    return this.m.get(hash) ?? null;
  }
  async put(hash: string, body: Uint8Array) {
    this.m.set(hash, body);
  }
}
