import { Injectable, Logger } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { allWritten } from './all-written';
import { CancelSignal, ChatEvent, Command, encodeCancelSignal, encodeCommand, encodeEnvelope, encodeEvent } from './envelopes';
import { LuaScript } from './lua-script';
import { RedisConnections } from './redis-connections';
import { CANCEL_CHANNEL, sessionKeys, STREAMS, userPartField } from './stream-names';
import { parseRangeReply } from './stream-reply';

/** A decoded chat:outgoing entry, to be copied into its session's log. */
export interface SessionLogEntry {
  sessionId: string;
  eventId: string;
  fields: readonly string[];
  /**
   * Set on the first and last event of every message (chat.user_message, the final event): the
   * log's expiry is refreshed then, and otherwise at most once a minute per session, not on every
   * batch of deltas.
   */
  refreshesTtl: boolean;
  /**
   * Set when the event carries text of the conversation (the user's message, reasoning, answer, a
   * provider's error text): such an event is logged only while its message is still in the
   * history, so a deleted conversation's text is not written back by events that were still on
   * their way.
   */
  textOf: string | null;
  /**
   * For a final event with text (chat.completed, chat.failed): the encoded text-free chat.cancelled
   * logged and delivered in its place when its text is refused, so the message still ends with
   * exactly one final event for the clients that saw it start.
   */
  finalReplacement: readonly string[] | null;
}

/** What became of a relayed event whose text was refused: left out, or replaced by a chat.cancelled. */
export type RefusedCopy = 'dropped' | 'replaced';

/** A command queued (its entry id), or refused because chat:incoming held MAX_BACKLOG commands. */
export type Enqueued = { queued: true; id: string } | { queued: false; backlog: number };

/**
 * XADD that refuses while the stream holds ARGV[1] entries or more, so no number of concurrent
 * sends can push the backlog past it. KEYS: chat:incoming. ARGV: limit, MAXLEN, fields...
 * Returns the entry id, or the backlog (a number) when refused.
 */
const BOUNDED_XADD = new LuaScript(`
local backlog = redis.call('XLEN', KEYS[1])
if backlog >= tonumber(ARGV[1]) then return backlog end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
`);

/**
 * Copies one event into a session's log under its own id. KEYS: the log, the session's messages
 * hash, the session's deleted mark. ARGV: MAXLEN, event id, history field that must exist
 * ('' = none), TTL seconds, n, n replacement fields, the event's fields... Returns 1 (copied), 2
 * (already there: a duplicate id, another relay was first), 0 (dropped) or 3 (replaced): refused
 * because the conversation was deleted and the message is not in the history; a final event is then
 * logged as its text-free replacement instead (every relay decides alike, duplicates included). Only
 * a deleted conversation refuses: a message merely trimmed from a long history keeps its events. A
 * log created here gets its expiry at once: a deleted conversation's log is created anew by its
 * chat.cancelled, with no chat.user_message to refresh it.
 */
const LOG_COPY = new LuaScript(`
local n = tonumber(ARGV[5])
local refused = ARGV[3] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 and redis.call('HEXISTS', KEYS[2], ARGV[3]) == 0
if refused and n == 0 then return 0 end
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local added
if refused then
  added = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[2], unpack(ARGV, 6, 5 + n))
else
  added = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[2], unpack(ARGV, 6 + n))
end
if type(added) == 'table' and added.err then
  if not string.find(added.err, 'equal or smaller', 1, true) then return added end
  if refused then return 3 end
  return 2
end
if fresh then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
if refused then return 3 end
return 1
`);

/** Ids per XDEL: a deleted conversation's log may hold SESSION_EVENTS_MAX_LEN of them. */
const XDEL_CHUNK = 500;
/**
 * A cleared conversation's dead letters are looked for among the newest DEAD_LETTER_SCAN entries
 * of chat:dead, read DEAD_LETTER_PAGE at a time: each may hold a 16,000-character message.
 */
const DEAD_LETTER_SCAN = 1000;
const DEAD_LETTER_PAGE = 100;

export interface DeadLetter {
  /** Where the entry came from. */
  stream: string;
  entryId: string;
  reason: string;
  sessionId?: string;
  messageId?: string;
  /** The original fields, kept so the message can be inspected or replayed. */
  fields: string[];
}

/**
 * Writes to the bus: commands to the workers, events to the gateways, dead letters.
 * Every stream is bounded with an approximate MAXLEN so Redis memory stays flat.
 */
@Injectable()
export class EventBus {
  private readonly logger = new Logger(EventBus.name);
  /** When this process last refreshed each session log's expiry (only recent ones are kept). */
  private readonly logTtlRefreshedAt = new Map<string, number>();
  private logTtlSweptAt = 0;

  constructor(
    private readonly redis: RedisConnections,
    private readonly config: AppConfig,
  ) {}

  /**
   * Queues a command unless chat:incoming already holds MAX_BACKLOG commands: the check and the
   * XADD are one script, the only guarantee of the limit under concurrent sends.
   */
  async publishCommand(command: Command): Promise<Enqueued> {
    const args = [this.config.limits.maxBacklog, this.config.redis.streamMaxLen, ...encodeCommand(command)];
    const reply = await BOUNDED_XADD.run(this.redis.commands, [STREAMS.incoming], args);
    if (typeof reply === 'string') return { queued: true, id: reply };
    if (typeof reply === 'number') return { queued: false, backlog: reply };
    throw new Error(`unexpected reply to the command XADD: ${String(reply)}`);
  }

  /**
   * Publishes an event to chat:outgoing; its entry id is the eventId. One stream, one order, for
   * every publisher: the relays copy each event, in that order, into its session's log for resuming.
   */
  async publishEvent(event: ChatEvent): Promise<string> {
    return this.xadd(STREAMS.outgoing, encodeEvent(event));
  }

  /**
   * Copies relayed events into their sessions' logs (`chat:{sid}:events`) under their own ids. Every
   * relay does it, in chat:outgoing order, so the logs are complete and ordered; an entry another
   * relay wrote first is refused by Redis (id not above the top) and that refusal is the expected
   * outcome. The entries' fields are copied as read (already checked), not encoded again.
   * An event with text whose message has left the history (its conversation was deleted while it
   * was on its way) is not logged, and is deleted from chat:outgoing too, where it would otherwise
   * keep the text until trimmed; relays that have not read it yet never see it. Returns what became
   * of those events by id: a dropped one is not delivered either, a replaced one is delivered as its
   * replacement.
   */
  async appendToSessionLogs(entries: SessionLogEntry[]): Promise<ReadonlyMap<string, RefusedCopy>> {
    const bySession = new Map<string, SessionLogEntry[]>();
    for (const entry of entries) {
      const list = bySession.get(entry.sessionId) ?? [];
      list.push(entry);
      bySession.set(entry.sessionId, list);
    }
    // One script call per entry, not a pipeline per session: the connection auto-pipelines whatever
    // is issued in this turn into one write (grouped per node on a Cluster).
    const writes: Promise<unknown>[] = [];
    const refused = new Map<string, RefusedCopy>();
    const redis = this.redis.commands;
    const ttl = this.config.history.ttlSeconds;
    for (const [sessionId, list] of bySession) {
      const keys = sessionKeys(sessionId);
      for (const entry of list) {
        const required = entry.textOf === null ? '' : userPartField(entry.textOf);
        const replacement = entry.finalReplacement ?? [];
        const args = [
          this.config.redis.sessionEventsMaxLen,
          entry.eventId,
          required,
          ttl,
          replacement.length,
          ...replacement,
          ...entry.fields,
        ];
        const copy = LOG_COPY.run(redis, [keys.events, keys.messages, keys.deleted], args).then((copied) => {
          if (copied === 0) refused.set(entry.eventId, 'dropped');
          else if (copied === 3) refused.set(entry.eventId, 'replaced');
        });
        writes.push(copy);
      }
      if (this.logTtlDue(sessionId, list)) writes.push(redis.expire(keys.events, ttl));
    }
    await allWritten(writes);
    if (refused.size) await this.deleteEvents([...refused.keys()]);
    return refused;
  }

  /** Deletes events from chat:outgoing (ids that are not there are ignored). */
  async deleteEvents(eventIds: readonly string[]): Promise<void> {
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < eventIds.length; i += XDEL_CHUNK) {
      writes.push(this.redis.commands.xdel(STREAMS.outgoing, ...eventIds.slice(i, i + XDEL_CHUNK)));
    }
    await allWritten(writes);
  }

  /**
   * Deletes a session's dead letters (they keep its commands, with the user's text) among the
   * newest DEAD_LETTER_SCAN entries of chat:dead: dead letters are rare, so a conversation's are
   * almost always there; older ones stay until STREAM_MAX_LEN trims them. Returns how many went.
   */
  async deleteDeadLetters(sessionId: string): Promise<number> {
    const ids: string[] = [];
    let before = '+';
    for (let read = 0; read < DEAD_LETTER_SCAN; read += DEAD_LETTER_PAGE) {
      const page = parseRangeReply(await this.redis.commands.xrevrange(STREAMS.dead, before, '-', 'COUNT', DEAD_LETTER_PAGE));
      for (const entry of page) if (deadLetterSession(entry.fields) === sessionId) ids.push(entry.id);
      if (page.length < DEAD_LETTER_PAGE) break;
      before = `(${page[page.length - 1].id}`;
    }
    if (ids.length) await this.redis.commands.xdel(STREAMS.dead, ...ids);
    return ids.length;
  }

  /**
   * A long answer (or a short HISTORY_TTL_SECONDS) must not let the log expire mid-message, so
   * besides the first and last event of each message the expiry is refreshed every
   * min(60 s, TTL / 4) a session is active.
   */
  private logTtlDue(sessionId: string, entries: SessionLogEntry[]): boolean {
    const now = Date.now();
    const every = Math.min(60_000, (this.config.history.ttlSeconds * 1000) / 4);
    const last = this.logTtlRefreshedAt.get(sessionId);
    if (!entries.some((e) => e.refreshesTtl) && last !== undefined && now - last < every) return false;
    // Bounded by the sessions active within one interval: older marks are swept once per interval.
    if (this.logTtlRefreshedAt.size >= 10_000 && now - this.logTtlSweptAt >= every) {
      this.logTtlSweptAt = now;
      for (const [id, at] of this.logTtlRefreshedAt) if (now - at >= every) this.logTtlRefreshedAt.delete(id);
    }
    this.logTtlRefreshedAt.set(sessionId, now);
    return true;
  }

  /** Tells whichever worker runs this message to stop now. */
  async signalCancel(signal: CancelSignal): Promise<void> {
    await this.redis.commands.publish(CANCEL_CHANNEL, encodeCancelSignal(signal));
  }

  async deadLetter(letter: DeadLetter): Promise<void> {
    const payload = {
      stream: letter.stream,
      entryId: letter.entryId,
      reason: letter.reason,
      sessionId: letter.sessionId ?? null,
      messageId: letter.messageId ?? null,
      fields: letter.fields,
      at: new Date().toISOString(),
    };
    await this.xadd(STREAMS.dead, encodeEnvelope('chat.dead_letter', payload));
    this.logger.warn(`dead-lettered ${letter.stream} ${letter.entryId}: ${letter.reason}`);
  }

  private async xadd(stream: string, fields: string[]): Promise<string> {
    const id = await this.redis.commands.xadd(stream, 'MAXLEN', '~', this.config.redis.streamMaxLen, '*', ...fields);
    if (!id) throw new Error(`XADD to ${stream} returned no id`);
    return id;
  }
}

/** The sessionId a dead letter's envelope names, or null. */
function deadLetterSession(fields: readonly string[]): string | null {
  const at = fields.indexOf('data');
  if (at < 0 || at % 2 !== 0 || at + 1 >= fields.length) return null;
  try {
    const data: unknown = JSON.parse(fields[at + 1]);
    if (typeof data !== 'object' || data === null) return null;
    const { sessionId } = data as { sessionId?: unknown };
    return typeof sessionId === 'string' ? sessionId : null;
  } catch {
    return null;
  }
}
