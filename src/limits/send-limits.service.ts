import { HttpException, HttpStatus, Injectable } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { AppConfig } from '../config/app-config';
import { RedisConnections } from '../event-bus/redis-connections';
import { addressRateKey, sessionRateKey, STREAMS } from '../event-bus/stream-names';

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
 * Limits on sends, shared by every instance through Redis: per session and per client address
 * (fixed one-minute windows), and a backlog limit that refuses new work while the workers are too
 * far behind. Checked in one place for HTTP and Socket.IO alike.
 */
@Injectable()
export class SendLimits {
  constructor(
    private readonly config: AppConfig,
    private readonly redis: RedisConnections,
  ) {}

  async check(sessionId: string, address: string | null): Promise<void> {
    await this.checkBacklog();
    const now = Date.now();
    const minute = Math.floor(now / 60_000);
    const retryAfter = Math.max(1, Math.ceil((60_000 - (now % 60_000)) / 1000));
    const { sessionPerMinute, ipPerMinute } = this.config.limits;
    if (sessionPerMinute > 0) {
      const count = await this.hit(sessionRateKey(sessionId, minute));
      if (count > sessionPerMinute) {
        throw new RetryLaterException(429, `rate limit: at most ${sessionPerMinute} messages per minute in a session`, retryAfter);
      }
    }
    if (ipPerMinute > 0 && address) {
      const hash = createHash('sha256').update(address).digest('base64url').slice(0, 16);
      const count = await this.hit(addressRateKey(hash, minute));
      if (count > ipPerMinute) {
        throw new RetryLaterException(429, `rate limit: at most ${ipPerMinute} messages per minute from one address`, retryAfter);
      }
    }
  }

  /** chat:incoming holds only unacknowledged commands (acks delete), so its length is the backlog. */
  private async checkBacklog(): Promise<void> {
    const backlog = await this.redis.commands.xlen(STREAMS.incoming);
    if (backlog >= this.config.limits.maxBacklog) {
      throw new RetryLaterException(503, `the assistant is busy (${backlog} messages waiting); try again shortly`, 5);
    }
  }

  private async hit(key: string): Promise<number> {
    const replies = await this.redis.commands.multi().incr(key).expire(key, 120).exec();
    const count: unknown = replies?.[0]?.[1];
    return typeof count === 'number' ? count : 0;
  }
}
