import { Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { decodeOutgoing, DeliveredEvent } from '../event-bus/envelopes';
import { RedisConnections, whenReady } from '../event-bus/redis-connections';
import { KeyLayout } from '../event-bus/stream-names';
import { compareStreamIds, isStreamId, parseRangeReply, replyField, StreamEntry } from '../event-bus/stream-reply';
import { ABORTED, pause, sleep, untilAborted } from '../event-bus/stream-tail';
import { SessionEventHub } from './session-event-hub';

export type EventSink = (event: DeliveredEvent) => void;

/** Gives a watch back; calling it more than once does nothing. */
export type Unwatch = () => void;

const BATCH = 500;
const BLOCK_MS = 5000;
/** A partition nobody on this process watched for this long is no longer read. */
export const IDLE_DROP_MS = 60_000;
const SWEEP_MS = 10_000;
/** CLIENT UNBLOCK may reach Redis before the XREAD it is meant for: tried again this many times. */
const UNBLOCK_TRIES = 10;

interface Watched {
  stream: string;
  /** Watchers holding it; at 0 it is dropped after IDLE_DROP_MS. */
  refs: number;
  /** The last entry read; null until fixed (the watch resolves after that). */
  cursor: string | null;
  ready: Promise<void>;
  idleSince: number;
}

/**
 * The process's reader of the partitions' event streams (`chat:outgoing:{T}`), for the partitions of
 * the sessions that have a client here only (docs/design.md, "API processes"). Every consumer of
 * events watches its session's partition first (`watch`), which fixes where reading starts before it
 * resolves: an event written after that is delivered, one written before is in the session log the
 * consumer replays. One blocking XREAD over every watched stream, on a connection of its own; a
 * newly watched stream interrupts it (CLIENT UNBLOCK). Each entry is decoded once and handed to the
 * sinks (the Socket.IO rooms) and to the session hub (SSE, plain WebSocket, sockets resuming); a
 * malformed entry is logged and skipped. It writes nothing: the producers' scripts log the events.
 *
 * Its own provider and lifecycle: nothing is read until a partition is watched, and reading stops at
 * application shutdown, after every beforeApplicationShutdown hook, so answers the in-process
 * worker finishes during its grace period still reach this process's clients.
 */
@Injectable()
export class ChatEventsRelay implements OnApplicationShutdown {
  private readonly logger = new Logger(ChatEventsRelay.name);
  private readonly sinks = new Set<EventSink>();
  private readonly watched = new Map<string, Watched>();
  private reader: Redis | null = null;
  private running: Promise<void> | null = null;
  private readonly halt = new AbortController();
  private sweeper: NodeJS.Timeout | null = null;
  /** Wakes the loop while it waits for a first watched partition. */
  private wake: (() => void) | null = null;
  /** The reader's CLIENT ID for CLIENT UNBLOCK (null until known on the current connection). */
  private readerId: number | null = null;
  /** Bumped on each 'ready' of the reader: a new epoch means a reconnect (ids and cursors are re-checked). */
  private readerEpoch = 0;
  /** The sequence number of the XREAD in flight, 0 when none. */
  private reading = 0;
  private reads = 0;
  private stopped = false;
  /** Aborted when the reader's connection closes: a read in flight then will never be answered. */
  private connectionLost = new AbortController();

  constructor(
    private readonly redis: RedisConnections,
    private readonly keys: KeyLayout,
    private readonly hub: SessionEventHub,
  ) {}

  /** Registers a sink for every event read (the gateway's room broadcast). Returns its removal. */
  onEvent(sink: EventSink): () => void {
    this.sinks.add(sink);
    return () => this.sinks.delete(sink);
  }

  /**
   * Reads the session's partition from now on, at the latest. Resolves once its start is fixed:
   * every event written after this resolves is delivered. Rejects when Redis cannot be asked (the
   * caller refuses its client). Ref-counted per partition: give it back with the returned function.
   */
  async watch(sessionId: string): Promise<Unwatch> {
    if (this.stopped) throw new Error('the event relay is stopped');
    const stream = this.keys.partitionOf(sessionId).outgoing;
    let watched = this.watched.get(stream);
    if (!watched) watched = this.add(stream);
    const entry = watched;
    entry.refs++;
    try {
      await entry.ready;
    } catch (err) {
      entry.refs--;
      throw err;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      entry.refs--;
      if (entry.refs === 0) entry.idleSince = Date.now();
    };
  }

  /** Partitions currently read (watched, or unwatched for less than IDLE_DROP_MS). */
  get watchedStreams(): string[] {
    return [...this.watched.keys()];
  }

  async onApplicationShutdown(): Promise<void> {
    await this.stop();
  }

  /**
   * Idempotent: stops reading and releases the connection, and waits for the loop (and the batch it
   * hands over) to end. It does not wait for a read in flight: on a connection closed while Redis is
   * unreachable ioredis never settles it (see `untilAborted`).
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.halt.abort();
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    if (this.reader) {
      this.redis.release(this.reader);
      this.reader = null;
    }
    await this.running;
    this.running = null;
    this.watched.clear();
  }

  private add(stream: string): Watched {
    const entry: Watched = { stream, refs: 0, cursor: null, ready: Promise.resolve(), idleSince: Date.now() };
    entry.ready = this.lastId(stream).then(
      (id) => {
        entry.cursor = id;
        this.ensureReading();
        this.interrupt();
      },
      (err: unknown) => {
        if (this.watched.get(stream) === entry) this.watched.delete(stream);
        throw err;
      },
    );
    this.watched.set(stream, entry);
    return entry;
  }

  private async lastId(stream: string): Promise<string> {
    const newest = parseRangeReply(await this.redis.commands.xrevrange(stream, '+', '-', 'COUNT', 1));
    return newest[0]?.id ?? '0-0';
  }

  private ensureReading(): void {
    if (this.running || this.stopped) return;
    const reader = this.redis.openBlocking('relay');
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
    this.reader = reader;
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
    this.running = this.loop(reader);
  }

  /** Drops partitions nobody watched for IDLE_DROP_MS; the read in flight ends within BLOCK_MS. */
  private sweep(): void {
    const now = Date.now();
    for (const [stream, entry] of this.watched) {
      if (entry.refs === 0 && entry.cursor !== null && now - entry.idleSince >= IDLE_DROP_MS) this.watched.delete(stream);
    }
  }

  /** A partition was added: the read in flight (if any) ends now so that the next one includes it. */
  private interrupt(): void {
    if (this.wake) {
      this.wake();
      return;
    }
    if (this.reading) void this.unblock(this.reading);
  }

  private async unblock(read: number): Promise<void> {
    for (let tries = 1; tries <= UNBLOCK_TRIES && this.reading === read && !this.stopped; tries++) {
      try {
        // 0 when the reader is not blocked (yet): the XREAD may still be on its way to Redis.
        if (this.readerId !== null && Number(await this.redis.commands.client('UNBLOCK', this.readerId)) === 1) return;
      } catch {
        return; // Redis away: the reader's own read fails too
      }
      await sleep(2 * tries);
    }
  }

  private async loop(reader: Redis): Promise<void> {
    const halt = this.halt.signal;
    let handledEpoch = 0;
    let backoffMs = 100;
    let failing = false;
    while (!halt.aborted) {
      const streams = [...this.watched.values()].filter((w) => w.cursor !== null);
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
        if (handledEpoch !== this.readerEpoch || this.readerId === null) {
          const epoch = this.readerEpoch;
          const id = await untilAborted(reader.client('ID'), halt);
          if (id === ABORTED) break;
          this.readerId = Number(id);
          // Reconnected: Redis may have restarted, maybe without its data or from an older snapshot.
          if (handledEpoch !== 0) await this.recheckCursors();
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
        this.deliver(reply);
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

  /**
   * After a reconnect: a stream whose newest id is now below the cursor (Redis restarted without its
   * data, or from an older snapshot) would hide new entries below the cursor: read it from the start
   * again (clients drop what they already have by id). The last generated id is compared, not the
   * newest entry, which a deleted conversation's events may have taken with them.
   */
  private async recheckCursors(): Promise<void> {
    const streams = [...this.watched.values()].filter((w) => w.cursor !== null);
    await Promise.all(
      streams.map(async (w) => {
        const last = await this.lastGeneratedId(w.stream);
        if (w.cursor !== null && (last === null || compareStreamIds(last, w.cursor) < 0)) {
          if (w.cursor !== '0-0') this.logger.warn(`${w.stream} went back to ${last ?? 'nothing'}: reading it from its start`);
          w.cursor = '0-0';
        }
      }),
    );
  }

  private async lastGeneratedId(stream: string): Promise<string | null> {
    try {
      const info: unknown = await this.redis.commands.xinfo('STREAM', stream);
      const last = Array.isArray(info) ? replyField(info, 'last-generated-id') : undefined;
      return isStreamId(last) ? last : null;
    } catch (err) {
      if (err instanceof Error && /no such key/i.test(err.message)) return null;
      throw err;
    }
  }

  private deliver(reply: unknown): void {
    for (const { stream, entries } of parseMultiReadReply(reply)) {
      if (entries.length === 0) continue;
      const watched = this.watched.get(stream);
      if (watched) watched.cursor = entries[entries.length - 1].id;
      for (const entry of entries) {
        const decoded = decodeOutgoing(entry.id, entry.fields);
        if (!decoded.ok) {
          this.logger.warn(`skipping malformed event ${entry.id} of ${stream}: ${decoded.reason}`);
          continue;
        }
        const event = decoded.value;
        for (const sink of this.sinks) {
          try {
            sink(event);
          } catch (err) {
            this.logger.error(`delivering ${event.eventId} failed: ${(err as Error).message}`);
          }
        }
        this.hub.dispatch(event);
      }
    }
  }
}

/** An XREAD reply over several streams: `[[key, [[id, fields], ...]], ...]` or null. */
export function parseMultiReadReply(reply: unknown): { stream: string; entries: StreamEntry[] }[] {
  if (!Array.isArray(reply)) return [];
  const streams: { stream: string; entries: StreamEntry[] }[] = [];
  for (const item of reply) {
    if (!Array.isArray(item) || typeof item[0] !== 'string') continue;
    streams.push({ stream: item[0], entries: parseRangeReply(item[1]) });
  }
  return streams;
}
