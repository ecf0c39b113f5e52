/**
 * A token bucket: `burst` tokens at most, refilled at `ratePerS` per second; each event takes one. Over any window of
 * t seconds it admits at most burst + ratePerS·t events, and an event that finds no token is refused, not queued.
 */
export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(
    private readonly ratePerS: number,
    private readonly burst: number,
    now = performance.now(),
  ) {
    this.tokens = burst;
    this.at = now;
  }

  /** Take one token; false when the bucket is empty (the event is over the limit). */
  take(now = performance.now()): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.ratePerS);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
