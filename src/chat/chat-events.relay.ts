import { Injectable, Logger } from '@nestjs/common';
import { ChatEventType, decodeOutgoing, DeliveredEvent, encodeEvent, FINAL_EVENT_TYPES } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { STREAMS } from '../event-bus/stream-names';
import { StreamEntry } from '../event-bus/stream-reply';
import { sleep, StreamTail } from '../event-bus/stream-tail';
import { EventBus, RefusedCopy, SessionLogEntry } from '../event-bus/event-bus.service';
import { SessionEventHub } from './session-event-hub';

export type EventSink = (event: DeliveredEvent) => void;

/**
 * Events that carry text of the conversation: logged only while their message is in the history
 * (see EventBus.appendToSessionLogs). chat.failed is among them: its message may quote the
 * provider's error reply, which the app does not control. chat.started and chat.cancelled carry
 * ids only.
 */
const TEXT_EVENT_TYPES: ReadonlySet<ChatEventType> = new Set<ChatEventType>([
  'chat.user_message',
  'chat.thinking',
  'chat.delta',
  'chat.completed',
  'chat.failed',
]);

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
    private readonly bus: EventBus,
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

  /**
   * Copies the batch into the session logs first, then delivers it: an event a client can receive
   * live is always already in the log a resuming client replays (see ResumableEvents). An event the
   * log refused (text of a deleted conversation) is not delivered either, or, if it ended its
   * message, is delivered as the chat.cancelled that was logged in its place.
   */
  private async deliver(entries: StreamEntry[], sink: EventSink): Promise<void> {
    const events: DeliveredEvent[] = [];
    const logEntries: SessionLogEntry[] = [];
    for (const entry of entries) {
      const decoded = decodeOutgoing(entry.id, entry.fields);
      if (!decoded.ok) {
        this.logger.warn(`skipping malformed event ${entry.id}: ${decoded.reason}`);
        continue;
      }
      events.push(decoded.value);
      const { type, payload } = decoded.value;
      logEntries.push({
        sessionId: payload.sessionId,
        eventId: entry.id,
        fields: entry.fields,
        refreshesTtl: type === 'chat.user_message' || FINAL_EVENT_TYPES.has(type),
        textOf: TEXT_EVENT_TYPES.has(type) ? payload.messageId : null,
        finalReplacement:
          TEXT_EVENT_TYPES.has(type) && FINAL_EVENT_TYPES.has(type)
            ? encodeEvent({ type: 'chat.cancelled', payload: { sessionId: payload.sessionId, messageId: payload.messageId } })
            : null,
      });
    }
    const refused = await this.logWithRetry(logEntries);
    for (const original of events) {
      const fate = refused.get(original.eventId);
      if (fate === 'dropped') continue;
      const event: DeliveredEvent =
        fate === 'replaced'
          ? {
              type: 'chat.cancelled',
              payload: { sessionId: original.payload.sessionId, messageId: original.payload.messageId },
              eventId: original.eventId,
            }
          : original;
      try {
        sink(event);
      } catch (err) {
        this.logger.error(`delivering ${event.eventId} failed: ${(err as Error).message}`);
      }
      this.hub.dispatch(event);
    }
  }

  /** A Redis hiccup must not drop live delivery: retry briefly, then deliver anyway (logged). */
  private async logWithRetry(entries: SessionLogEntry[]): Promise<ReadonlyMap<string, RefusedCopy>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.bus.appendToSessionLogs(entries);
      } catch (err) {
        if (attempt >= 5) {
          this.logger.error(`session logs not written for ${entries.length} event(s): ${(err as Error).message}`);
          return new Map();
        }
        await sleep(100 * attempt);
      }
    }
  }
}
