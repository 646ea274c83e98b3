import { Injectable } from '@nestjs/common';
import { decodeEvent, DeliveredEvent } from './envelopes';
import { RedisConnections } from './redis-connections';
import { KeyLayout } from './stream-names';
import { compareStreamIds, isStreamId, parseRangeReply, replyField } from './stream-reply';

export interface Replay {
  events: DeliveredEvent[];
  /**
   * The log cannot vouch for every event after the requested id (trimmed, expired, deleted, or Redis
   * lost its data): the client must reload the history. `events` are still what the log holds after it.
   */
  incomplete: boolean;
}

const PAGE = 500;
const START = '0-0';

/**
 * Reads a session's event log (`chat:s:{T}:<sid>:events`) for resuming clients. The log is written
 * by the scripts of the state machine, in the same step as the partition's stream and under the
 * same ids (docs/design.md), so it holds every logged event of the session up to its trim.
 */
@Injectable()
export class SessionEventLog {
  constructor(
    private readonly redis: RedisConnections,
    private readonly keys: KeyLayout,
  ) {}

  /** Every retained event after `afterId`, oldest first, and whether that is all of them. */
  async after(sessionId: string, afterId: string): Promise<Replay> {
    const key = this.keys.session(sessionId).events;
    const complete = await this.vouchesFor(sessionId, key, afterId);
    const events: DeliveredEvent[] = [];
    let cursor = afterId;
    for (;;) {
      const page = parseRangeReply(await this.redis.commands.xrange(key, `(${cursor}`, '+', 'COUNT', PAGE));
      for (const entry of page) {
        const decoded = decodeEvent(entry.fields);
        if (decoded.ok) events.push({ ...decoded.value, eventId: entry.id });
      }
      if (page.length < PAGE) break;
      cursor = page[page.length - 1].id;
    }
    return { events, incomplete: !complete };
  }

  /** The newest event id of the session, or null when its log is empty. */
  async newestId(sessionId: string): Promise<string | null> {
    const newest = parseRangeReply(await this.redis.commands.xrevrange(this.keys.session(sessionId).events, '+', '-', 'COUNT', 1));
    return newest[0]?.id ?? null;
  }

  /**
   * Whether the log still holds every logged event after `afterId`. It does when the entry `afterId`
   * itself is in it: the log only loses its oldest entries (trim) or everything (expiry, delete, a
   * Redis without its data), so nothing after a retained entry can be missing. `0-0` ("from the
   * start") is vouched for while nothing was ever trimmed. An id of a chat.status event (delivered
   * live, never logged) is vouched for when that event is still in the partition's stream and the
   * log still reaches back to it.
   */
  private async vouchesFor(sessionId: string, key: string, afterId: string): Promise<boolean> {
    if (afterId === START) return !(await this.trimmed(key));
    const [same, oldest] = await Promise.all([
      this.redis.commands.xrange(key, afterId, afterId, 'COUNT', 1),
      this.redis.commands.xrange(key, '-', '+', 'COUNT', 1),
    ]);
    if (parseRangeReply(same).length > 0) return true;
    const first = parseRangeReply(oldest)[0]?.id;
    if (!first || compareStreamIds(first, afterId) > 0) return false;
    return this.isStatusOf(sessionId, afterId);
  }

  private async isStatusOf(sessionId: string, eventId: string): Promise<boolean> {
    const stream = this.keys.partitionOf(sessionId).outgoing;
    const [entry] = parseRangeReply(await this.redis.commands.xrange(stream, eventId, eventId, 'COUNT', 1));
    if (!entry) return false;
    const decoded = decodeEvent(entry.fields);
    return decoded.ok && decoded.value.type === 'chat.status' && decoded.value.payload.sessionId === sessionId;
  }

  /** Whether entries were ever trimmed from the log (a missing log has lost nothing a client could know of). */
  private async trimmed(key: string): Promise<boolean> {
    let info: unknown;
    try {
      info = await this.redis.commands.xinfo('STREAM', key);
    } catch (err) {
      if (err instanceof Error && /no such key/i.test(err.message)) return false;
      throw err;
    }
    if (!Array.isArray(info)) return false;
    const added = Number(replyField(info, 'entries-added'));
    const length = Number(replyField(info, 'length'));
    const first: unknown = replyField(info, 'first-entry');
    if (!Number.isFinite(added) || !Number.isFinite(length) || !isStreamId(Array.isArray(first) ? first[0] : undefined)) return false;
    return added > length;
  }
}
