import { Injectable, Logger } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { allWritten } from './all-written';
import { CancelSignal, ChatEvent, Command, encodeCancelSignal, encodeCommand, encodeEnvelope, encodeEvent } from './envelopes';
import { RedisConnections } from './redis-connections';
import { CANCEL_CHANNEL, sessionKeys, STREAMS } from './stream-names';

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
}

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

  /** Returns the entry id of the queued command. */
  async publishCommand(command: Command): Promise<string> {
    return this.xadd(STREAMS.incoming, encodeCommand(command));
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
   */
  async appendToSessionLogs(entries: SessionLogEntry[]): Promise<void> {
    const bySession = new Map<string, SessionLogEntry[]>();
    for (const entry of entries) {
      const list = bySession.get(entry.sessionId) ?? [];
      list.push(entry);
      bySession.set(entry.sessionId, list);
    }
    // Single commands, not a pipeline per session: the connection auto-pipelines whatever is
    // issued in this turn into one write (grouped per node on a Cluster).
    const writes: Promise<unknown>[] = [];
    const redis = this.redis.commands;
    for (const [sessionId, list] of bySession) {
      const key = sessionKeys(sessionId).events;
      for (const entry of list) {
        // Another API process copied it first: Redis refuses the duplicate id, which is fine.
        const xadd = redis.xadd(key, 'MAXLEN', '~', this.config.redis.sessionEventsMaxLen, entry.eventId, ...entry.fields);
        writes.push(xadd.catch((err: Error) => (/equal or smaller/i.test(err.message) ? null : Promise.reject(err))));
      }
      if (this.logTtlDue(sessionId, list)) writes.push(redis.expire(key, this.config.history.ttlSeconds));
    }
    await allWritten(writes);
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
