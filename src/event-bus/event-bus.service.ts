import { Injectable, Logger } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { CancelSignal, ChatEvent, Command, encodeCancelSignal, encodeCommand, encodeEnvelope, encodeEvent, EVENT_ID_FIELD } from './envelopes';
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
   * Appends the event to its session's log (whose entry id is the eventId clients see and resume
   * from), then to chat:outgoing for live delivery, carrying that eventId. The log is written first:
   * a reader that replays the log and then follows chat:outgoing never misses an event.
   */
  async publishEvent(event: ChatEvent): Promise<string> {
    const fields = encodeEvent(event);
    const keys = sessionKeys(event.payload.sessionId);
    const replies = await this.redis.commands
      .multi()
      .xadd(keys.events, 'MAXLEN', '~', this.config.redis.sessionEventsMaxLen, '*', ...fields)
      .expire(keys.events, this.config.history.ttlSeconds)
      .exec();
    const eventId: unknown = replies?.[0]?.[1];
    if (typeof eventId !== 'string') throw new Error(`XADD to ${keys.events} failed: ${String(replies?.[0]?.[0] ?? 'no reply')}`);
    await this.xadd(STREAMS.outgoing, [...fields, EVENT_ID_FIELD, eventId]);
    return eventId;
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
