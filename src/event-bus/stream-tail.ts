import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { RedisConnections } from './redis-connections';
import { parseRangeReply, parseReadReply, StreamEntry } from './stream-reply';

export type BatchHandler = (entries: StreamEntry[]) => void | Promise<void>;

const BLOCK_MS = 5000;
const BATCH = 500;

/**
 * Follows a stream from "now" with XREAD BLOCK on a connection of its own, handing each batch to
 * one handler. One tail per process serves every local socket. Errors are logged and retried with
 * backoff; a handler error drops that batch but never stops the loop.
 *
 * The next read is already waiting while a batch is handled (the relay's handler costs a round
 * trip: the session-log copy), so an entry written meanwhile is not held up by that round trip
 * and then by a read of its own. Handlers still run one at a time, in stream order, and the tail
 * reads at most one batch ahead of them.
 */
export class StreamTail {
  private readonly logger: Logger;
  private connection: Redis | null = null;
  private running: Promise<void> | null = null;
  /** Aborted by `stop`: ends a read or a backoff the loop is waiting on. */
  private halt = new AbortController();
  /** Last entry seen; resolved to the stream's newest entry when the tail starts. */
  private lastId: string | null = null;

  constructor(
    private readonly redis: RedisConnections,
    private readonly stream: string,
    private readonly handle: BatchHandler,
  ) {
    this.logger = new Logger(`StreamTail(${stream})`);
  }

  start(): void {
    if (this.running) return;
    this.halt = new AbortController();
    this.connection = this.redis.openBlocking(`tail:${this.stream}`);
    this.running = this.loop(this.connection);
  }

  /**
   * Idempotent: stops reading, releases the connection, and waits for the loop to end, including
   * the handling of every batch already read (the one in hand and the one read ahead of it). It
   * does not wait for the read in flight: released while Redis is unreachable, the connection may
   * never settle it (see `untilAborted`).
   */
  async stop(): Promise<void> {
    this.halt.abort();
    if (this.connection) {
      this.redis.release(this.connection);
      this.connection = null;
    }
    await this.running;
    this.running = null;
  }

  private async newestId(connection: Redis): Promise<string> {
    const newest = parseRangeReply(await connection.xrevrange(this.stream, '+', '-', 'COUNT', 1));
    return newest[0]?.id ?? '0-0';
  }

  private async loop(connection: Redis): Promise<void> {
    const halt = this.halt.signal;
    let backoffMs = 100;
    let handling: Promise<void> = Promise.resolve();
    try {
      while (!halt.aborted) {
        const entries = await this.read(connection, backoffMs, halt);
        if (entries === null) {
          backoffMs = Math.min(backoffMs * 2, 2000);
          continue;
        }
        backoffMs = 100;
        if (entries === 'stopped') break;
        if (entries.length === 0) continue;
        this.lastId = entries[entries.length - 1].id;
        const previous = handling;
        handling = previous.then(() => this.handleSafely(entries));
        await previous;
      }
    } finally {
      await handling;
    }
  }

  /** One XREAD: its entries, 'stopped', or null after a failure (logged, backed off). */
  private async read(connection: Redis, backoffMs: number, halt: AbortSignal): Promise<StreamEntry[] | 'stopped' | null> {
    try {
      const reply = await untilAborted(this.readOnce(connection), halt);
      return reply === ABORTED ? 'stopped' : reply;
    } catch (err) {
      // Stopped, or the connection was closed under us (shutdown): leave quietly.
      if (halt.aborted || connection.status === 'end') return 'stopped';
      this.logger.warn(`read failed, retrying in ${backoffMs} ms: ${(err as Error).message}`);
      await untilAborted(sleep(backoffMs), halt);
      return null;
    }
  }

  private async readOnce(connection: Redis): Promise<StreamEntry[]> {
    // XREAD with `$` on every call would lose entries written between two calls, so the
    // starting point is pinned once to a concrete id.
    this.lastId ??= await this.newestId(connection);
    const reply: unknown = await connection.xread('COUNT', BATCH, 'BLOCK', BLOCK_MS, 'STREAMS', this.stream, this.lastId);
    return parseReadReply(reply);
  }

  private async handleSafely(entries: StreamEntry[]): Promise<void> {
    try {
      await this.handle(entries);
    } catch (err) {
      this.logger.error(`handler failed on a batch of ${entries.length}: ${(err as Error).message}`);
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
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
