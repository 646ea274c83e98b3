import { Injectable } from '@nestjs/common';
import type { DeliveredEvent } from '../event-bus/envelopes';
import { SessionEventLog } from '../event-bus/session-event-log';
import { compareStreamIds } from '../event-bus/stream-reply';
import { SessionEventHub } from './session-event-hub';

export interface EventTarget {
  deliver(event: DeliveredEvent): void;
  /** The events after the client's id are no longer retained: it must reload the history. */
  resync(): void;
}

/**
 * Resume without gap or duplicate: listen first (buffering), replay the session log after the
 * client's last id, then go live. Event ids follow one order (chat:outgoing), and this process's
 * relay writes each event into the session log before delivering it, so every event missing from
 * the replay arrives live with an id above the replay's last one; live events at or below it are
 * copies of replayed ones (this relay was behind) and are dropped.
 */
@Injectable()
export class ResumableEvents {
  constructor(
    private readonly hub: SessionEventHub,
    private readonly log: SessionEventLog,
  ) {}

  async open(sessionId: string, lastEventId: string | null, target: EventTarget): Promise<() => void> {
    const buffer: DeliveredEvent[] = [];
    let live = false;
    let boundary: string | null = null;
    const isNew = (event: DeliveredEvent) => boundary === null || compareStreamIds(event.eventId, boundary) > 0;
    const unsubscribe = this.hub.subscribe(sessionId, (event) => {
      if (!live) buffer.push(event);
      else if (isNew(event)) target.deliver(event);
    });
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
      unsubscribe();
      throw err;
    }
    return unsubscribe;
  }
}
