import { Logger } from '@nestjs/common';
import type { RedisClient } from '../event-bus/redis-client';
import { RedisConnections, whenReady } from '../event-bus/redis-connections';
import { ABORTED, pause, sleep, untilAborted } from '../event-bus/stream-tail';

const BATCH = 500;
export const BLOCK_MS = 5000;
/** CLIENT UNBLOCK may reach Redis before the XREAD it is meant for: tried again this many times. */
const UNBLOCK_TRIES = 10;

/** A stream being read and the last entry read of it (null until its start is fixed). */
export interface ReadCursor {
  stream: string;
  cursor: string | null;
}

/** What a reader asks of the relay that owns it. */
export interface ReaderHost {
  /** The streams this reader reads now (it re-asks before every read). */
  streams(): ReadCursor[];
  /** An XREAD reply to hand to the sinks. */
  deliver(reply: unknown): void;
  /** After a reconnect: the streams' cursors are checked against what Redis now has. */
  recheck(streams: ReadCursor[]): Promise<void>;
}

/**
 * One blocking XREAD loop over a set of `chat:outgoing:{T}` streams, on a connection of its own. On
 * a single Redis one reader covers every watched partition, and a newly watched one interrupts the
 * read in flight (CLIENT UNBLOCK); on a Redis Cluster a reader reads one partition (a read cannot
 * span slots), so a new partition gets a reader of its own and nothing needs interrupting.
 */
export class OutgoingReader {
  private readonly logger = new Logger('ChatEventsRelay');
  private readonly connection: RedisClient;
  private readonly halt = new AbortController();
  private running: Promise<void>;
  /** Wakes the loop while it waits for a first stream. */
  private wake: (() => void) | null = null;
  /** The reader's CLIENT ID for CLIENT UNBLOCK (null until known on the current connection). */
  private readerId: number | null = null;
  /** Bumped on each 'ready' of the reader: a new epoch means a reconnect (ids and cursors are re-checked). */
  private readerEpoch = 0;
  /** The sequence number of the XREAD in flight, 0 when none. */
  private reading = 0;
  private reads = 0;
  /** Aborted when the reader's connection closes: a read in flight then will never be answered. */
  private connectionLost = new AbortController();

  constructor(
    private readonly redis: RedisConnections,
    private readonly host: ReaderHost,
    name: string,
    /** Whether a new stream must interrupt the read in flight (one reader for several streams). */
    private readonly interruptible: boolean,
  ) {
    const reader = redis.openBlocking(name);
    reader.on('ready', () => {
      this.readerEpoch++;
      this.readerId = null;
    });
    // ioredis (6.0) keeps a blocking read that was in flight when its connection dropped until the
    // read's own timeout (BLOCK + blockingTimeoutGrace), even though it is not sent again: the loop
    // gives up on it at once instead of stalling delivery for seconds after every reconnect.
    reader.on('close', () => {
      this.readerId = null;
      this.connectionLost.abort();
      this.connectionLost = new AbortController();
    });
    this.connection = reader;
    this.running = this.loop(reader);
  }

  /** A stream was added: the read in flight (if any) ends now so that the next one includes it. */
  interrupt(): void {
    if (this.wake) {
      this.wake();
      return;
    }
    if (this.interruptible && this.reading) void this.unblock(this.reading);
  }

  /** Stops reading and releases the connection; resolves once the loop (and the batch it hands over) ended. */
  async stop(): Promise<void> {
    this.halt.abort();
    this.redis.release(this.connection);
    await this.running;
  }

  private async unblock(read: number): Promise<void> {
    for (let tries = 1; tries <= UNBLOCK_TRIES && this.reading === read && !this.halt.signal.aborted; tries++) {
      try {
        // 0 when the reader is not blocked (yet): the XREAD may still be on its way to Redis.
        if (this.readerId !== null && Number(await this.redis.commands.client('UNBLOCK', this.readerId)) === 1) return;
      } catch {
        return; // Redis away: the reader's own read fails too
      }
      await sleep(2 * tries);
    }
  }

  private async loop(reader: RedisClient): Promise<void> {
    const halt = this.halt.signal;
    let handledEpoch = 0;
    let backoffMs = 100;
    let failing = false;
    while (!halt.aborted) {
      const streams = this.host.streams().filter((w) => w.cursor !== null);
      if (streams.length === 0) {
        await this.idle(halt);
        continue;
      }
      try {
        if (reader.status === 'end') break;
        if (reader.status !== 'ready') {
          await untilAborted(
            whenReady(reader, BLOCK_MS).catch(() => undefined),
            halt,
          );
          continue;
        }
        if (handledEpoch !== this.readerEpoch || (this.interruptible && this.readerId === null)) {
          const epoch = this.readerEpoch;
          if (this.interruptible) {
            const id = await untilAborted(reader.client('ID'), halt);
            if (id === ABORTED) break;
            this.readerId = Number(id);
          }
          // Reconnected: Redis may have restarted, maybe without its data or from an older snapshot.
          if (handledEpoch !== 0) await this.host.recheck(streams);
          handledEpoch = epoch;
          continue; // the set may have changed meanwhile
        }
        const read = ++this.reads;
        this.reading = read;
        const args = [...streams.map((w) => w.stream), ...streams.map((w) => w.cursor as string)];
        const stop = AbortSignal.any([halt, this.connectionLost.signal]);
        const reply = await untilAborted(reader.xread('COUNT', BATCH, 'BLOCK', BLOCK_MS, 'STREAMS', ...args), stop);
        this.reading = 0;
        if (reply === ABORTED) {
          if (halt.aborted) break;
          throw new Error('the connection closed during the read');
        }
        if (failing) this.logger.log('reading the event streams again');
        failing = false;
        backoffMs = 100;
        this.host.deliver(reply);
      } catch (err) {
        this.reading = 0;
        if (halt.aborted || reader.status === 'end') break;
        // One warning per outage: ioredis reports the connection's own errors already.
        if (!failing) this.logger.warn(`reading the event streams failed, retrying: ${(err as Error).message}`);
        failing = true;
        await pause(backoffMs, halt);
        backoffMs = Math.min(backoffMs * 2, 2000);
      }
    }
  }

  private idle(halt: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        this.wake = null;
        halt.removeEventListener('abort', done);
        resolve();
      };
      this.wake = done;
      halt.addEventListener('abort', done, { once: true });
    });
  }
}
