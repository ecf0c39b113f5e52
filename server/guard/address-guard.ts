/**
 * Per remote address: failed authentications (a socket.io handshake with a bad token, a hello with a wrong resume
 * token, …) and the exponential back-off that follows too many of them. While an address is backing off its new
 * connections are refused before any handshake work (engine.io's allowRequest), so guessing tokens costs the guesser
 * time, not the server: after `failures` free failures the n-th further one blocks the address for
 * min(maxMs, baseMs·2^(n−1)).
 *
 * Memory is bounded: at most `capacity` addresses are tracked (least recently failed ones are forgotten first) and an
 * entry lapses once its back-off is over and it has not failed for `maxMs`. IPv6 addresses are keyed by their /64
 * prefix (one host usually holds a whole /64, so per-address counting would not slow it down); an IPv4-mapped IPv6
 * address counts as its IPv4 address.
 */
export interface AddressGuardOptions {
  /** Failures allowed before back-off starts. */
  failures: number;
  /** The first back-off, doubling with each further failure ... */
  baseMs: number;
  /** ... up to this; also how long an entry is remembered after its last failure. */
  maxMs: number;
  /** Addresses tracked at most. */
  capacity: number;
}

interface Entry {
  failures: number;
  lastFailure: number;
  blockedUntil: number;
}

export class AddressGuard {
  private readonly table = new Map<string, Entry>();

  constructor(private readonly o: AddressGuardOptions) {}

  /** Milliseconds `address` must still wait before it may try again (0: it may). */
  blockedFor(address: string | undefined, now = Date.now()): number {
    const e = this.lookup(addressKey(address), now);
    return e ? Math.max(0, e.blockedUntil - now) : 0;
  }

  /** A failed authentication from `address`; returns the back-off it now has (ms, 0 = none yet). */
  failed(address: string | undefined, now = Date.now()): number {
    const key = addressKey(address);
    const e = this.lookup(key, now) ?? { failures: 0, lastFailure: now, blockedUntil: 0 };
    e.failures++;
    e.lastFailure = now;
    const over = e.failures - this.o.failures;
    if (over > 0) e.blockedUntil = now + Math.min(this.o.maxMs, this.o.baseMs * 2 ** Math.min(over - 1, 40));
    // Re-inserted at the end: the map's order is least-recently-failed first, which is what gets evicted.
    this.table.delete(key);
    this.table.set(key, e);
    while (this.table.size > this.o.capacity) this.table.delete(this.table.keys().next().value!);
    return Math.max(0, e.blockedUntil - now);
  }

  /** Addresses tracked now (for /metrics and tests). */
  get size(): number {
    return this.table.size;
  }

  private lookup(key: string, now: number): Entry | undefined {
    const e = this.table.get(key);
    if (e && now >= e.blockedUntil && now - e.lastFailure > this.o.maxMs) {
      this.table.delete(key);
      return undefined;
    }
    return e;
  }
}

/** The key an address is counted under: IPv4 as is, IPv6 by its /64 prefix, IPv4-mapped IPv6 as IPv4. */
export function addressKey(address: string | undefined): string {
  if (!address) return '?';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  if (!address.includes(':')) return address;
  // Expand '::' to the missing zero groups, then keep the first four groups.
  const [head, tail] = address.split('%')[0].split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
