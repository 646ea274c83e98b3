import { Injectable, Logger } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { CancelSignal, ChatEvent, Command, DeliveredEvent, encodeCancelSignal, encodeCommand, encodeEnvelope, encodeEvent } from './envelopes';
import { RedisConnections } from './redis-connections';
import { CANCEL_CHANNEL, sessionKeys, STREAMS } from './stream-names';

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
   * outcome. One pipeline per session keeps each within its cluster slot.
   */
  async appendToSessionLogs(events: DeliveredEvent[]): Promise<void> {
    const bySession = new Map<string, DeliveredEvent[]>();
    for (const event of events) {
      const list = bySession.get(event.payload.sessionId) ?? [];
      list.push(event);
      bySession.set(event.payload.sessionId, list);
    }
    await Promise.all(
      [...bySession].map(async ([sessionId, list]) => {
        const key = sessionKeys(sessionId).events;
        const pipeline = this.redis.commands.pipeline();
        for (const event of list) {
          pipeline.xadd(key, 'MAXLEN', '~', this.config.redis.sessionEventsMaxLen, event.eventId, ...encodeEvent(event));
        }
        pipeline.expire(key, this.config.history.ttlSeconds);
        const replies = (await pipeline.exec()) ?? [];
        for (const [err] of replies) {
          if (err && !/equal or smaller/i.test(err.message)) throw err;
        }
      }),
    );
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
