import { Injectable, Logger } from '@nestjs/common';
import type { DeliveredEvent } from '../event-bus/envelopes';

export type EventListener = (event: DeliveredEvent) => void;

/**
 * Hands each event read from chat:outgoing (once per process) to the local listeners of its
 * session: SSE streams, plain WebSockets and Socket.IO sockets still replaying. A throwing or slow
 * listener never holds up the others: listeners only buffer or write to their own connection.
 */
@Injectable()
export class SessionEventHub {
  private readonly logger = new Logger(SessionEventHub.name);
  private readonly bySession = new Map<string, Set<EventListener>>();

  subscribe(sessionId: string, listener: EventListener): () => void {
    let listeners = this.bySession.get(sessionId);
    if (!listeners) {
      listeners = new Set();
      this.bySession.set(sessionId, listeners);
    }
    listeners.add(listener);
    return () => {
      const current = this.bySession.get(sessionId);
      current?.delete(listener);
      if (current?.size === 0) this.bySession.delete(sessionId);
    };
  }

  dispatch(event: DeliveredEvent): void {
    const listeners = this.bySession.get(event.payload.sessionId);
    if (!listeners) return;
    for (const listener of [...listeners]) {
      try {
        listener(event);
      } catch (err) {
        this.logger.warn(`a listener of session ${event.payload.sessionId} failed: ${(err as Error).message}`);
      }
    }
  }

  get sessionCount(): number {
    return this.bySession.size;
  }
}
