/**
 * A token bucket for the events one socket sends: `burst` at once, then `perMinute` spread evenly.
 * Every event takes a token whatever it is (valid, invalid, a repeat), before any work is done for
 * it, so a flooding socket costs this process a counter, not Redis round trips.
 */
export class EventBucket {
  private tokens: number;
  private updatedAt: number;
  /** Events refused since the last one let through: a socket that keeps sending is cut off. */
  refusedInARow = 0;

  constructor(
    private readonly perMinute: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.updatedAt = now();
  }

  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.updatedAt) * this.perMinute) / 60_000);
    this.updatedAt = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      this.refusedInARow = 0;
      return true;
    }
    this.refusedInARow++;
    return false;
  }

  /** Seconds until the next event would pass. */
  retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(((1 - this.tokens) * 60) / this.perMinute));
  }
}
