import { Injectable } from '@nestjs/common';
import { decodeEvent, DeliveredEvent } from './envelopes';
import { RedisConnections } from './redis-connections';
import { sessionKeys } from './stream-names';
import { compareStreamIds, isStreamId, parseRangeReply, replyField } from './stream-reply';

export interface Replay {
  events: DeliveredEvent[];
  /** Events after the requested id were dropped (log trimmed or expired): the client must reload the history. */
  incomplete: boolean;
}

const PAGE = 500;

/** Reads a session's event log (`chat:{sid}:events`) for resuming clients. */
@Injectable()
export class SessionEventLog {
  constructor(private readonly redis: RedisConnections) {}

  /** Every retained event after `afterId`, oldest first. */
  async after(sessionId: string, afterId: string): Promise<Replay> {
    const key = sessionKeys(sessionId).events;
    const incomplete = await this.lostAfter(key, afterId);
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
    return { events, incomplete };
  }

  /** The newest event id of the session, or null when its log is empty. */
  async newestId(sessionId: string): Promise<string | null> {
    const newest = parseRangeReply(await this.redis.commands.xrevrange(sessionKeys(sessionId).events, '+', '-', 'COUNT', 1));
    return newest[0]?.id ?? null;
  }

  /** Whether entries newer than `afterId` were trimmed away, or the whole log expired. */
  private async lostAfter(key: string, afterId: string): Promise<boolean> {
    let info: unknown;
    try {
      info = await this.redis.commands.xinfo('STREAM', key);
    } catch (err) {
      if (err instanceof Error && /no such key/i.test(err.message)) return afterId !== '0-0';
      throw err;
    }
    if (!Array.isArray(info)) return false;
    const field = (name: string): unknown => replyField(info, name);
    // Trimming (MAXLEN) drops the oldest entries: some are gone if more were added than remain,
    // and the client misses them if its id is older than the first one kept.
    const added = Number(field('entries-added'));
    const length = Number(field('length'));
    const first: unknown = field('first-entry');
    const firstId: unknown = Array.isArray(first) ? first[0] : undefined;
    if (!Number.isFinite(added) || !Number.isFinite(length) || added <= length || !isStreamId(firstId)) return false;
    return compareStreamIds(afterId, firstId) < 0;
  }
}
