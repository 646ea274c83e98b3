import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { RedisConnections } from './redis-connections';
import { STREAMS, WORKER_GROUP } from './stream-names';
import { parseAutoClaimReply, parseReadReply, StreamEntry } from './stream-reply';

export interface ClaimedEntry extends StreamEntry {
  /** How many times the entry has been delivered, this claim included. */
  deliveries: number;
}

/**
 * The `ai-workers` consumer group on chat:incoming: reading new commands, acknowledging them,
 * keeping claims of live work fresh, and taking over work whose consumer went silent.
 */
@Injectable()
export class WorkerGroup {
  constructor(private readonly redis: RedisConnections) {}

  /**
   * Creates the group if missing. Starting at 0 means commands queued before the first worker ever
   * ran are still processed. Pass the reader's own connection: it queues while Redis reconnects.
   */
  async ensure(connection: Redis = this.redis.commands): Promise<void> {
    try {
      await connection.xgroup('CREATE', STREAMS.incoming, WORKER_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!(err instanceof Error) || !err.message.includes('BUSYGROUP')) throw err;
    }
  }

  /** Blocks up to `blockMs` for at most `count` new commands (on a dedicated connection). */
  async readNew(connection: Redis, consumer: string, count: number, blockMs: number): Promise<StreamEntry[]> {
    const reply: unknown = await connection.xreadgroup(
      'GROUP', WORKER_GROUP, consumer, 'COUNT', count, 'BLOCK', blockMs, 'STREAMS', STREAMS.incoming, '>',
    );
    return parseReadReply(reply);
  }

  async ack(entryId: string): Promise<void> {
    await this.redis.commands.xack(STREAMS.incoming, WORKER_GROUP, entryId);
  }

  /** Resets the idle time of entries this consumer is working on, so nobody takes them over. */
  async keepAlive(consumer: string, entryIds: string[]): Promise<void> {
    if (entryIds.length === 0) return;
    await this.redis.commands.xclaim(STREAMS.incoming, WORKER_GROUP, consumer, 0, ...entryIds, 'JUSTID');
  }

  /**
   * Takes over up to `count` entries idle for `minIdleMs` or more (their worker died). Entries
   * trimmed from the stream while pending come back in `lost`: their content is gone.
   */
  async claimStalled(consumer: string, minIdleMs: number, count: number): Promise<{ claimed: ClaimedEntry[]; lost: string[] }> {
    const reply: unknown = await this.redis.commands.xautoclaim(
      STREAMS.incoming, WORKER_GROUP, consumer, minIdleMs, '0-0', 'COUNT', count,
    );
    const { entries, deleted } = parseAutoClaimReply(reply);
    const claimed: ClaimedEntry[] = [];
    for (const entry of entries) claimed.push({ ...entry, deliveries: await this.deliveries(entry.id) });
    return { claimed, lost: deleted };
  }

  /** Delivery count of a pending entry (1 if it is not pending any more). */
  private async deliveries(entryId: string): Promise<number> {
    const reply: unknown = await this.redis.commands.xpending(STREAMS.incoming, WORKER_GROUP, entryId, entryId, 1);
    if (Array.isArray(reply) && Array.isArray(reply[0]) && typeof reply[0][3] === 'number') return reply[0][3];
    return 1;
  }
}
