import { TokenBucket } from './token-bucket.ts';

/** Per-connection limits (ServerConfig's rate* settings). */
export interface ConnectionLimits {
  /** Frames (any event) per second a connection may send on average ... */
  framesPerS: number;
  /** ... with bursts of up to this many. */
  frameBurst: number;
  /** A hello may come at most once per this many seconds on average (bursts of HELLO_BURST): each may write a journal record. */
  helloIntervalS: number;
  /** Error frames sent to one connection per second at most (bursts of twice that); refusals beyond are counted, not answered. */
  errorRepliesPerS: number;
  /** Frames refused for rate within FLOOD_WINDOW_MS after which the connection is closed. */
  floodLimit: number;
}

export const HELLO_BURST = 5;
export const FLOOD_WINDOW_MS = 10_000;

/** What to do with one inbound frame. */
export type Admission = 'ok' | 'rate-limited' | 'flood';

/**
 * One connection's rate limits: a token bucket for its frames, one for its hellos (each may be an fdatasync'd journal
 * record), and one for the error frames sent back to it, so a flood of bad frames can't make the server answer
 * thousands of errors a second. A connection that keeps sending over its limit (floodLimit refusals within 10 s) is
 * told so and closed.
 */
export class ConnectionGuard {
  private readonly frames: TokenBucket;
  private readonly hellos: TokenBucket | null;
  private readonly errors: TokenBucket;
  private windowStart = 0;
  private refusedInWindow = 0;
  /** Refusals not answered because the error-reply budget was spent (for logs and tests). */
  silenced = 0;

  constructor(private readonly limits: ConnectionLimits, now = performance.now()) {
    this.frames = new TokenBucket(limits.framesPerS, limits.frameBurst, now);
    this.hellos = limits.helloIntervalS > 0 ? new TokenBucket(1 / limits.helloIntervalS, HELLO_BURST, now) : null;
    this.errors = new TokenBucket(limits.errorRepliesPerS, Math.max(1, 2 * limits.errorRepliesPerS), now);
  }

  /** Whether a frame of `event` may be handled now; 'flood': refuse it and close the connection. */
  admit(event: string, now = performance.now()): Admission {
    const ok = this.frames.take(now) && (event !== 'hello' || !this.hellos || this.hellos.take(now));
    if (ok) return 'ok';
    if (now - this.windowStart > FLOOD_WINDOW_MS) {
      this.windowStart = now;
      this.refusedInWindow = 0;
    }
    return ++this.refusedInWindow > this.limits.floodLimit ? 'flood' : 'rate-limited';
  }

  /** Whether an error frame may be sent now (else the refusal is silent). */
  mayReply(now = performance.now()): boolean {
    if (this.errors.take(now)) return true;
    this.silenced++;
    return false;
  }
}
