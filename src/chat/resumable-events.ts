import { Injectable } from '@nestjs/common';
import type { DeliveredEvent } from '../event-bus/envelopes';
import { SessionEventLog } from '../event-bus/session-event-log';
import { compareStreamIds } from '../event-bus/stream-reply';
import { SessionEventHub } from './session-event-hub';

export interface EventTarget {
  deliver(event: DeliveredEvent): void;
  /** The events after the client's id are no longer retained: it must reload the history. */
  resync(): void;
  /**
   * Called, synchronously, once the replay is done. Return true to take over live delivery (a
   * Socket.IO socket joins its room); otherwise live events keep coming through `deliver`.
   */
  goLive?(): boolean;
}

/**
 * Resume without gap or duplicate: listen first (buffering), replay the session log after the
 * client's last id, then hand over the buffer minus what the replay already sent, then go live.
 * The log is written before chat:outgoing, so anything missing from the replay arrives live.
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
    let unsubscribe = this.hub.subscribe(sessionId, (event) => (live ? target.deliver(event) : buffer.push(event)));
    try {
      let newest = lastEventId;
      if (lastEventId) {
        const replay = await this.log.after(sessionId, lastEventId);
        if (replay.incomplete) target.resync();
        for (const event of replay.events) target.deliver(event);
        newest = replay.events.at(-1)?.eventId ?? lastEventId;
      }
      for (const event of buffer) {
        if (newest === null || compareStreamIds(event.eventId, newest) > 0) target.deliver(event);
      }
      buffer.length = 0;
      live = true;
      if (target.goLive?.()) {
        unsubscribe();
        unsubscribe = () => undefined;
      }
    } catch (err) {
      unsubscribe();
      throw err;
    }
    return () => unsubscribe();
  }
}
