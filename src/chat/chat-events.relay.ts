import { Injectable, Logger } from '@nestjs/common';
import { decodeOutgoing, DeliveredEvent } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { STREAMS } from '../event-bus/stream-names';
import { StreamEntry } from '../event-bus/stream-reply';
import { StreamTail } from '../event-bus/stream-tail';
import { SessionEventHub } from './session-event-hub';

export type EventSink = (event: DeliveredEvent) => void;

/**
 * The process's single reader of chat:outgoing. Each entry is decoded once and handed to the sink
 * (the gateway's room broadcast) and to the session hub (SSE, plain WebSocket, sockets resuming),
 * whatever the number of clients; a malformed entry is logged and skipped.
 */
@Injectable()
export class ChatEventsRelay {
  private readonly logger = new Logger(ChatEventsRelay.name);
  private tail: StreamTail | null = null;

  constructor(
    private readonly redis: RedisConnections,
    private readonly hub: SessionEventHub,
  ) {}

  start(sink: EventSink): void {
    if (this.tail) return;
    this.tail = new StreamTail(this.redis, STREAMS.outgoing, (entries) => this.deliver(entries, sink));
    this.tail.start();
  }

  async stop(): Promise<void> {
    await this.tail?.stop();
    this.tail = null;
  }

  private deliver(entries: StreamEntry[], sink: EventSink): void {
    for (const entry of entries) {
      const decoded = decodeOutgoing(entry.id, entry.fields);
      if (!decoded.ok) {
        this.logger.warn(`skipping malformed event ${entry.id}: ${decoded.reason}`);
        continue;
      }
      try {
        sink(decoded.value);
      } catch (err) {
        this.logger.error(`delivering ${entry.id} failed: ${(err as Error).message}`);
      }
      this.hub.dispatch(decoded.value);
    }
  }
}
