import { Injectable, Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { CancelSignal, decodeCancelSignal } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { CANCEL_CHANNEL } from '../event-bus/stream-names';

/** Receives cancel signals (pub/sub) for the generations running in this process. */
@Injectable()
export class CancelListener {
  private readonly logger = new Logger(CancelListener.name);
  private connection: Redis | null = null;

  constructor(private readonly redis: RedisConnections) {}

  start(onCancel: (signal: CancelSignal) => void): void {
    if (this.connection) return;
    const connection = this.redis.openSubscriber('cancel-listener');
    this.connection = connection;
    connection.on('message', (channel: string, raw: string) => {
      if (channel !== CANCEL_CHANNEL) return;
      const decoded = decodeCancelSignal(raw);
      if (!decoded.ok) {
        this.logger.warn(`ignoring malformed cancel signal: ${decoded.reason}`);
        return;
      }
      onCancel(decoded.value);
    });
    connection.subscribe(CANCEL_CHANNEL).catch((err: unknown) => {
      // ioredis retries the subscription on reconnect; until then cancels fall back to the history flag.
      this.logger.warn(`subscribing to ${CANCEL_CHANNEL} failed: ${(err as Error).message}`);
    });
  }

  stop(): void {
    if (this.connection) this.redis.release(this.connection);
    this.connection = null;
  }
}
