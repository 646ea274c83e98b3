import { Injectable } from '@nestjs/common';
import { CancelSignal, encodeCancelSignal } from './envelopes';
import { RedisConnections } from './redis-connections';
import { KeyLayout } from './stream-names';

/**
 * Tells the worker holding a message to stop it now: a sharded publish on the message's partition
 * channel, which reaches only the workers that hold a message of that partition (they subscribe
 * while they do). Best effort: the cancel is also recorded where the worker's next write sees it.
 */
@Injectable()
export class CancelSignals {
  constructor(
    private readonly redis: RedisConnections,
    private readonly keys: KeyLayout,
  ) {}

  async send(signal: CancelSignal): Promise<void> {
    await this.redis.commands.spublish(this.keys.partitionOf(signal.sessionId).cancel, encodeCancelSignal(signal));
  }
}
