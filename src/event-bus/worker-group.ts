import { Injectable } from '@nestjs/common';
import type { RedisClient } from './redis-client';
import { RedisConnections } from './redis-connections';
import { runScript } from './scripts';
import { KeyLayout, PartitionKeys, WORKER_GROUP } from './stream-names';
import { StreamEntry } from './stream-reply';

/** A command read from a partition's incoming stream. */
export interface PartitionEntry extends StreamEntry {
  partition: PartitionKeys;
  /** How many times it has been delivered, this delivery included. */
  deliveries: number;
  /** An attempt of it that Redis lost (failover, older snapshot): its next start is above it. */
  attemptFloor?: number;
}

/** An entry pending with a consumer. */
interface PendingEntry {
  partition: PartitionKeys;
  id: string;
  deliveries: number;
}

/**
 * The `ai-workers` group on every partition's `chat:incoming:{T}`: reading head messages, handing
 * back what a worker has no slot for, taking over what a dead consumer held, and forgetting dead
 * consumers (docs/design.md, "Workers").
 */
@Injectable()
export class WorkerGroup {
  private readonly byStream: Map<string, PartitionKeys>;

  constructor(
    private readonly redis: RedisConnections,
    private readonly keys: KeyLayout,
  ) {
    this.byStream = new Map(keys.partitions.map((p) => [p.incoming, p]));
  }

  /**
   * Creates the group on each of `partitions` where it is missing. Starting at 0: commands queued
   * before the first worker ever ran are still answered. Pass the reader's connection: it queues
   * while Redis reconnects.
   */
  async ensure(connection: RedisClient = this.redis.commands, partitions: readonly PartitionKeys[] = this.keys.partitions): Promise<void> {
    await Promise.all(
      partitions.map((p) =>
        connection.xgroup('CREATE', p.incoming, WORKER_GROUP, '0', 'MKSTREAM').catch((err: unknown) => {
          if (!(err instanceof Error) || !err.message.includes('BUSYGROUP')) throw err;
        }),
      ),
    );
  }

  /**
   * One blocking read over `partitions` (one entry each at most: a session has one head), on the
   * reader's own connection. `from` rotates which partitions come first, so hand-backs are fair. On
   * a Redis Cluster a read names one partition: streams of different slots cannot share a read.
   */
  async readNew(
    connection: RedisClient,
    partitions: readonly PartitionKeys[],
    consumer: string,
    blockMs: number,
    from: number,
  ): Promise<PartitionEntry[]> {
    const streams = rotate(partitions, from).map((p) => p.incoming);
    const reply: unknown = await connection.xreadgroup(
      'GROUP',
      WORKER_GROUP,
      consumer,
      'COUNT',
      1,
      'BLOCK',
      blockMs,
      'STREAMS',
      ...streams,
      ...streams.map(() => '>'),
    );
    return this.entries(reply, 1);
  }

  /** This consumer's own pending entries in `partitions` (after a read failed: their delivery may never have reached us). */
  async readOwnPending(connection: RedisClient, partitions: readonly PartitionKeys[], consumer: string): Promise<PartitionEntry[]> {
    const streams = partitions.map((p) => p.incoming);
    const reply: unknown = await connection.xreadgroup(
      'GROUP',
      WORKER_GROUP,
      consumer,
      'COUNT',
      1000,
      'STREAMS',
      ...streams,
      ...streams.map(() => '0'),
    );
    return this.entries(reply, 1);
  }

  /** Hands an entry back: acknowledged here and added again at the end of its stream for any worker. */
  async release(entry: PartitionEntry): Promise<void> {
    await runScript(this.redis.commands, 'release', [entry.partition.incoming], [WORKER_GROUP, entry.id, ...entry.fields]);
  }

  async ack(entry: PartitionEntry): Promise<void> {
    await this.redis.commands.xack(entry.partition.incoming, WORKER_GROUP, entry.id);
    await this.redis.commands.xdel(entry.partition.incoming, entry.id);
  }

  /** Up to `count` entries pending with `consumer`, over all partitions. */
  async pendingOf(consumer: string, count: number): Promise<PendingEntry[]> {
    const replies = await Promise.all(
      this.keys.partitions.map((p) =>
        this.redis.commands.xpending(p.incoming, WORKER_GROUP, '-', '+', count, consumer).then(
          (reply: unknown) => ({ partition: p, reply }),
          (err: unknown) => {
            if (err instanceof Error && /NOGROUP|no such key/i.test(err.message)) return { partition: p, reply: [] as unknown };
            throw err;
          },
        ),
      ),
    );
    const pending: PendingEntry[] = [];
    for (const { partition, reply } of replies) {
      if (!Array.isArray(reply)) continue;
      for (const item of reply) {
        if (Array.isArray(item) && typeof item[0] === 'string') pending.push({ partition, id: item[0], deliveries: Number(item[3]) || 1 });
      }
    }
    return pending.slice(0, count);
  }

  /**
   * Takes pending entries over for `consumer`. `minIdleMs` keeps two workers taking over the same
   * dead consumer from both winning: the first claim resets the entry's idle time.
   */
  async claim(pending: PendingEntry[], consumer: string, minIdleMs: number): Promise<PartitionEntry[]> {
    const claimed: PartitionEntry[] = [];
    for (const entry of pending) {
      const reply: unknown = await this.redis.commands.call(
        'XCLAIM',
        entry.partition.incoming,
        WORKER_GROUP,
        consumer,
        minIdleMs,
        entry.id,
      );
      for (const e of toEntries(reply)) claimed.push({ ...e, partition: entry.partition, deliveries: entry.deliveries + 1 });
    }
    return claimed;
  }

  /**
   * Removes a consumer from every partition's group where it has nothing pending (checked and
   * deleted in one script per partition). Returns whether it is gone from all of them.
   */
  async deleteConsumer(consumer: string): Promise<boolean> {
    const results = await Promise.all(
      this.keys.partitions.map((p) => runScript(this.redis.commands, 'leave_group', [p.incoming], [WORKER_GROUP, consumer])),
    );
    return results.every((r) => r.result !== 'pending');
  }

  /** Whether an entry is still in its stream (not acknowledged and deleted, nor lost with Redis's data). */
  async exists(entry: PartitionEntry): Promise<boolean> {
    const reply: unknown = await this.redis.commands.xrange(entry.partition.incoming, entry.id, entry.id);
    return Array.isArray(reply) && reply.length > 0;
  }

  private entries(reply: unknown, deliveries: number): PartitionEntry[] {
    if (!Array.isArray(reply)) return [];
    const out: PartitionEntry[] = [];
    for (const item of reply) {
      if (!Array.isArray(item) || typeof item[0] !== 'string') continue;
      const partition = this.byStream.get(item[0]);
      if (!partition) continue;
      for (const entry of toEntries(item[1])) out.push({ ...entry, partition, deliveries });
    }
    return out;
  }
}

function rotate<T>(items: readonly T[], from: number): T[] {
  const start = ((from % items.length) + items.length) % items.length;
  return [...items.slice(start), ...items.slice(0, start)];
}

function toEntries(items: unknown): StreamEntry[] {
  if (!Array.isArray(items)) return [];
  const entries: StreamEntry[] = [];
  for (const item of items) {
    if (!Array.isArray(item) || typeof item[0] !== 'string') continue;
    const rawFields: unknown = item[1];
    // A null field list: the entry was deleted while pending (its message ended meanwhile).
    const fields = Array.isArray(rawFields) ? rawFields.filter((f): f is string => typeof f === 'string') : [];
    entries.push({ id: item[0], fields });
  }
  return entries;
}
