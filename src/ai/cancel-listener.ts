import { Injectable, Logger } from '@nestjs/common';
import type { RedisClient } from '../event-bus/redis-client';
import { CancelSignal, decodeCancelSignal } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { PartitionKeys } from '../event-bus/stream-names';

/** A partition's channel stays subscribed this long after its last message here: no churn per message. */
const LINGER_MS = 30_000;

/**
 * Receives cancel signals for the generations running in this process: a sharded subscription to
 * the channel of each partition it holds a message of, so a cancel reaches only the workers that
 * may hold the message (docs/design.md, "Cancel").
 */
@Injectable()
export class CancelListener {
  private readonly logger = new Logger(CancelListener.name);
  private connection: RedisClient | null = null;
  private onCancel: (signal: CancelSignal) => void = () => undefined;
  private readonly held = new Map<string, { count: number; timer: NodeJS.Timeout | null }>();

  constructor(private readonly redis: RedisConnections) {}

  start(onCancel: (signal: CancelSignal) => void): void {
    if (this.connection) return;
    this.onCancel = onCancel;
    const connection = this.redis.openSubscriber('cancel-listener');
    this.connection = connection;
    connection.on('smessage', (channel: string, raw: string) => {
      if (!this.held.has(channel)) return;
      const decoded = decodeCancelSignal(raw);
      if (!decoded.ok) {
        this.logger.warn(`ignoring malformed cancel signal: ${decoded.reason}`);
        return;
      }
      this.onCancel(decoded.value);
    });
  }

  /** Listens to the partition's channel until the returned function is called (ref-counted). */
  hold(partition: PartitionKeys): () => void {
    const channel = partition.cancel;
    let entry = this.held.get(channel);
    if (!entry) {
      entry = { count: 0, timer: null };
      this.held.set(channel, entry);
      this.connection?.ssubscribe(channel).catch((err: unknown) => {
        this.logger.warn(`subscribing to ${channel} failed: ${(err as Error).message}`);
      });
    }
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = null;
    entry.count++;
    let released = false;
    return () => {
      if (released || !entry) return;
      released = true;
      entry.count--;
      if (entry.count > 0) return;
      entry.timer = setTimeout(() => {
        if (entry?.count !== 0) return;
        this.held.delete(channel);
        this.connection?.sunsubscribe(channel).catch(() => undefined);
      }, LINGER_MS);
      entry.timer.unref();
    };
  }

  stop(): void {
    for (const entry of this.held.values()) if (entry.timer) clearTimeout(entry.timer);
    this.held.clear();
    if (this.connection) this.redis.release(this.connection);
    this.connection = null;
  }
}
