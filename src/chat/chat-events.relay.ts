import { Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { decodeOutgoing, DeliveredEvent } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { KeyLayout } from '../event-bus/stream-names';
import { compareStreamIds, isStreamId, parseRangeReply, replyField, StreamEntry } from '../event-bus/stream-reply';
import { OutgoingReader, ReadCursor, ReaderHost } from './outgoing-reader';
import { SessionEventHub } from './session-event-hub';

export type EventSink = (event: DeliveredEvent) => void;

/** Gives a watch back; calling it more than once does nothing. */
export type Unwatch = () => void;

/** A partition nobody on this process watched for this long is no longer read. */
export const IDLE_DROP_MS = 60_000;
const SWEEP_MS = 10_000;
/** The one reader's key on a single Redis; on a cluster each stream is its own reader's key. */
const ALL = '*';

interface Watched extends ReadCursor {
  /** Watchers holding it; at 0 it is dropped after IDLE_DROP_MS. */
  refs: number;
  ready: Promise<void>;
  idleSince: number;
}

/**
 * The process's reader of the partitions' event streams (`chat:outgoing:{T}`), for the partitions of
 * the sessions that have a client here only (docs/design.md, "API processes"). Every consumer of
 * events watches its session's partition first (`watch`), which fixes where reading starts before it
 * resolves: an event written after that is delivered, one written before is in the session log the
 * consumer replays. Blocking XREADs on connections of their own (outgoing-reader.ts): one over every
 * watched stream on a single Redis, one per watched stream on a Redis Cluster. Each entry is decoded
 * once and handed to the sinks (the Socket.IO rooms) and to the session hub (SSE, plain WebSocket,
 * sockets resuming); a malformed entry is logged and skipped. It writes nothing: the producers'
 * scripts log the events.
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
  private readonly readers = new Map<string, OutgoingReader>();
  private sweeper: NodeJS.Timeout | null = null;
  private stopped = false;

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
   * Idempotent: stops reading and releases the connections, and waits for the loops (and the batch
   * each hands over) to end. It does not wait for a read in flight: on a connection closed while
   * Redis is unreachable ioredis never settles it (see `untilAborted`).
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    const readers = [...this.readers.values()];
    this.readers.clear();
    await Promise.all(readers.map((r) => r.stop()));
    this.watched.clear();
  }

  private add(stream: string): Watched {
    const entry: Watched = { stream, refs: 0, cursor: null, ready: Promise.resolve(), idleSince: Date.now() };
    entry.ready = this.lastId(stream).then(
      (id) => {
        entry.cursor = id;
        this.readerFor(stream)?.interrupt();
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

  /** The reader of `stream`, started when missing (none once stopped). */
  private readerFor(stream: string): OutgoingReader | null {
    if (this.stopped) return null;
    const key = this.redis.isCluster ? stream : ALL;
    let reader = this.readers.get(key);
    if (!reader) {
      const host: ReaderHost = {
        streams: () => (key === ALL ? [...this.watched.values()] : [this.watched.get(key)].filter((w): w is Watched => w !== undefined)),
        deliver: (reply) => this.deliver(reply),
        recheck: (streams) => this.recheckCursors(streams),
      };
      reader = new OutgoingReader(this.redis, host, key === ALL ? 'relay' : `relay:${stream}`, key === ALL);
      this.readers.set(key, reader);
    }
    if (!this.sweeper) {
      this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
      this.sweeper.unref();
    }
    return reader;
  }

  /**
   * Drops partitions nobody watched for IDLE_DROP_MS; the read in flight ends within BLOCK_MS (on a
   * cluster the partition's reader stops with it).
   */
  private sweep(): void {
    const now = Date.now();
    for (const [stream, entry] of this.watched) {
      if (entry.refs === 0 && entry.cursor !== null && now - entry.idleSince >= IDLE_DROP_MS) {
        this.watched.delete(stream);
        const reader = this.redis.isCluster ? this.readers.get(stream) : undefined;
        if (reader) {
          this.readers.delete(stream);
          void reader.stop();
        }
      }
    }
  }

  /**
   * After a reconnect: a stream whose newest id is now below the cursor (Redis restarted without its
   * data, or from an older snapshot) would hide new entries below the cursor: read it from the start
   * again (clients drop what they already have by id). The last generated id is compared, not the
   * newest entry, which a deleted conversation's events may have taken with them.
   */
  private async recheckCursors(streams: ReadCursor[]): Promise<void> {
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
