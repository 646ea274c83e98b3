import { Injectable } from '@nestjs/common';
import type { DeliveredEvent } from '../event-bus/envelopes';
import { SessionEventLog } from '../event-bus/session-event-log';
import { compareStreamIds } from '../event-bus/stream-reply';
import { ChatEventsRelay } from './chat-events.relay';
import { SessionEventHub } from './session-event-hub';

export interface EventTarget {
  deliver(event: DeliveredEvent): void;
  /** The events after the client's id are no longer all retained: it must reload the history. */
  resync(): void;
}

/**
 * Resume without gap or duplicate: watch the session's partition (the relay fixes where it reads
 * from before that resolves), listen (buffering), replay the session log after the client's last
 * id, then go live. Every event is written to the partition's stream and to the session log by one
 * script under one id, so an event the relay has not delivered yet is either in the replay (it was
 * written before the log was read) or arrives live with a higher id; live events at or below the
 * replay's last id are copies of replayed ones and are dropped. chat.status events are never logged:
 * they only arrive live.
 *
 * A replay is complete when the log still holds the client's own id (see SessionEventLog.after);
 * otherwise the client gets chat.resync first, then what the log has after that id.
 */
@Injectable()
export class ResumableEvents {
  constructor(
    private readonly relay: ChatEventsRelay,
    private readonly hub: SessionEventHub,
    private readonly log: SessionEventLog,
  ) {}

  /** Returns the function that ends delivery (and gives the partition's watch back). */
  async open(sessionId: string, lastEventId: string | null, target: EventTarget): Promise<() => void> {
    const unwatch = await this.relay.watch(sessionId);
    const buffer: DeliveredEvent[] = [];
    let live = false;
    let boundary: string | null = null;
    const isNew = (event: DeliveredEvent) => boundary === null || compareStreamIds(event.eventId, boundary) > 0;
    const unsubscribe = this.hub.subscribe(sessionId, (event) => {
      if (!live) buffer.push(event);
      else if (isNew(event)) target.deliver(event);
    });
    const close = () => {
      unsubscribe();
      unwatch();
    };
    try {
      if (lastEventId) {
        const replay = await this.log.after(sessionId, lastEventId);
        if (replay.incomplete) target.resync();
        for (const event of replay.events) target.deliver(event);
        boundary = replay.events.at(-1)?.eventId ?? lastEventId;
      }
      for (const event of buffer) if (isNew(event)) target.deliver(event);
      buffer.length = 0;
      live = true;
    } catch (err) {
      close();
      throw err;
    }
    return close;
  }
}
