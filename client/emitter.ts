/** A minimal typed event emitter that works in Node and browsers alike. */
export class Emitter<Events extends Record<string, (...args: any[]) => void>> {
  private readonly handlers = new Map<keyof Events, Set<Events[keyof Events]>>();

  on<K extends keyof Events>(event: K, fn: Events[K]): () => void {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event)!.add(fn);
    return () => this.handlers.get(event)?.delete(fn);
  }

  once<K extends keyof Events>(event: K): Promise<Parameters<Events[K]>> {
    return new Promise((resolve) => {
      const off = this.on(event, ((...args: Parameters<Events[K]>) => {
        off();
        resolve(args);
      }) as Events[K]);
    });
  }

  protected emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    for (const fn of this.handlers.get(event) ?? []) (fn as (...a: unknown[]) => void)(...args);
  }
}
