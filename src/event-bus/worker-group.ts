import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { LuaScript } from './lua-script';
import { RedisConnections } from './redis-connections';
import { STREAMS, WORKER_GROUP } from './stream-names';
import { parseAutoClaimReply, parseReadReply, StreamEntry } from './stream-reply';

export interface ClaimedEntry extends StreamEntry {
  /** How many times the entry has been delivered, this claim included. */
  deliveries: number;
}

/** KEYS: the stream. ARGV: group, entry id. One command on the wire instead of MULTI, XACK, XDEL, EXEC. */
const ACK_AND_DELETE = new LuaScript(`
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
`);

/** KEYS: the stream. ARGV: group, consumer, entry ids. Returns the ids now pending with another consumer. */
const KEEP_ALIVE = new LuaScript(`
local lost = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if pending[1] then
    if pending[1][2] == ARGV[2] then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID')
    else
      table.insert(lost, id)
    end
  end
end
return lost
`);

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
      'GROUP',
      WORKER_GROUP,
      consumer,
      'COUNT',
      count,
      'BLOCK',
      blockMs,
      'STREAMS',
      STREAMS.incoming,
      '>',
    );
    return parseReadReply(reply);
  }

  /**
   * Acknowledges a command and deletes it: chat:incoming then holds only work not yet done, so its
   * length bound can never cut off a command that was not delivered.
   */
  async ack(entryId: string): Promise<void> {
    await ACK_AND_DELETE.run(this.redis.commands, [STREAMS.incoming], [WORKER_GROUP, entryId]);
  }

  /**
   * Resets the idle time of entries this consumer still owns, so nobody takes them over, and
   * returns those it no longer owns (taken over after this process stalled): their work must stop.
   * One script, so an entry taken over meanwhile is never claimed back.
   */
  async keepAlive(consumer: string, entryIds: string[]): Promise<string[]> {
    if (entryIds.length === 0) return [];
    const lost: unknown = await KEEP_ALIVE.run(this.redis.commands, [STREAMS.incoming], [WORKER_GROUP, consumer, ...entryIds]);
    return Array.isArray(lost) ? lost.filter((id): id is string => typeof id === 'string') : [];
  }

  /**
   * Takes over up to `count` entries idle for `minIdleMs` or more (their worker died). Entries
   * trimmed from the stream while pending come back in `lost`: their content is gone.
   */
  async claimStalled(consumer: string, minIdleMs: number, count: number): Promise<{ claimed: ClaimedEntry[]; lost: string[] }> {
    const reply: unknown = await this.redis.commands.xautoclaim(STREAMS.incoming, WORKER_GROUP, consumer, minIdleMs, '0-0', 'COUNT', count);
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
