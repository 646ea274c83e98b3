/**
 * A worker's generation slots (WORKER_CONCURRENCY): a FIFO semaphore whose waits can be aborted.
 * Messages waiting for an earlier message of their session hold no slot, so they never starve the
 * work they wait for.
 */
export class GenerationSlots {
  private used = 0;
  private readonly waiters: (() => void)[] = [];
  private readonly listeners = new Set<() => void>();

  constructor(readonly size: number) {}

  get free(): number {
    return this.size - this.used;
  }

  /** A release function if a slot is free now (and nobody waits for one), else null. */
  tryAcquire(): (() => void) | null {
    if (this.used >= this.size || this.waiters.length > 0) return null;
    this.used++;
    return this.releaser();
  }

  /** Resolves with a release function, or null if `signal` aborts first. */
  acquire(signal: AbortSignal): Promise<(() => void) | null> {
    if (signal.aborted) return Promise.resolve(null);
    const now = this.tryAcquire();
    if (now) return Promise.resolve(now);
    return new Promise((resolve) => {
      const grant = () => {
        signal.removeEventListener('abort', onAbort);
        this.used++;
        resolve(this.releaser());
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(null);
      };
      this.waiters.push(grant);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Called whenever a slot is released. */
  onRelease(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used--;
      const next = this.waiters.shift();
      if (next) next();
      for (const l of this.listeners) l();
    };
  }
}
