import { Injectable, Logger } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { CancelSignal, ChatEvent, Command, encodeCancelSignal, encodeCommand, encodeEnvelope, encodeEvent } from './envelopes';
import { RedisConnections } from './redis-connections';
import { CANCEL_CHANNEL, STREAMS } from './stream-names';

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

  /** Returns the event id. */
  async publishEvent(event: ChatEvent): Promise<string> {
    return this.xadd(STREAMS.outgoing, encodeEvent(event));
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
