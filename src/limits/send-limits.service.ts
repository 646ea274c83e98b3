import { HttpException, HttpStatus, Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { RedisConnections } from '../event-bus/redis-connections';
import { addressRateKey, KeyLayout } from '../event-bus/stream-names';
import { addressKeyPart, countHit, minuteWindow } from './minute-window';

/** 429 / 503 with the seconds to wait, surfaced as `Retry-After` by the HTTP error filter. */
export class RetryLaterException extends HttpException {
  constructor(
    status: HttpStatus.TOO_MANY_REQUESTS | HttpStatus.SERVICE_UNAVAILABLE,
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message, status);
  }
}

/**
 * The refusal of a send while its partition's backlog is full (MAX_BACKLOG spread over the
 * partitions): checked and added atomically by the send script (docs/design.md).
 */
export function backlogFull(backlog: number): RetryLaterException {
  return new RetryLaterException(503, `the assistant is busy (${backlog} messages waiting); try again shortly`, 5);
}

/**
 * Rate limits on sends, shared by every instance through Redis: per session and per client address
 * (fixed one-minute windows). Checked in one place for HTTP and Socket.IO alike. The backlog limit,
 * which refuses new work while the workers are too far behind, is not here: the send script checks
 * and adds to its partition's backlog in one step (MessageStore.send), so it costs no round trip
 * of its own and concurrent sends cannot overshoot it.
 */
@Injectable()
export class SendLimits {
  constructor(
    private readonly config: AppConfig,
    private readonly redis: RedisConnections,
    private readonly keys: KeyLayout,
  ) {}

  async check(sessionId: string, address: string | null): Promise<void> {
    const { minute, retryAfterSeconds: retryAfter } = minuteWindow();
    const { sessionPerMinute, ipPerMinute } = this.config.limits;
    if (sessionPerMinute > 0) {
      const count = await countHit(this.redis.commands, this.keys.sessionRate(sessionId, minute));
      if (count > sessionPerMinute) {
        throw new RetryLaterException(429, `rate limit: at most ${sessionPerMinute} messages per minute in a session`, retryAfter);
      }
    }
    // Only a send the session window let through counts against its address.
    if (ipPerMinute > 0 && address) {
      const count = await countHit(this.redis.commands, addressRateKey(addressKeyPart(address), minute));
      if (count > ipPerMinute) {
        throw new RetryLaterException(429, `rate limit: at most ${ipPerMinute} messages per minute from one address`, retryAfter);
      }
    }
  }
}
