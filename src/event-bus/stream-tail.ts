/**
 * Helpers of the process's blocking stream readers (the API's event relay, the workers' command
 * reader, the message runner): waiting, and giving up on a command that may never settle.
 */

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves true after `ms`, false as soon as `signal` aborts (its timer cleared then). */
export function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export const ABORTED = Symbol('aborted');

/**
 * Settles as `work` does, or with ABORTED as soon as `signal` aborts, whichever comes first. A
 * reader that stops must not wait for its command: ioredis (6.0) never settles the commands of a
 * connection disconnected while it waits to reconnect (Redis down) — they stay queued forever — so
 * awaiting them would hang shutdown. The abandoned promise keeps a handler and cannot go unhandled.
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | typeof ABORTED> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.resolve(ABORTED);
  }
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(ABORTED);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
