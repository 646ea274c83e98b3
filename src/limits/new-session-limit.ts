import { Injectable } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { AppConfig } from '../config/app-config';
import { RedisConnections } from '../event-bus/redis-connections';
import { newSessionRateKey } from '../event-bus/stream-names';
import { addressGroup } from './address-group';
import { RetryLaterException } from './send-limits.service';

/**
 * POST /sessions per client address, in fixed one-minute windows shared by every instance through
 * Redis (as SendLimits does for sends). Sessions are free to create and each one brings its own
 * send allowance, so without this one address could mint sessions to sidestep the per-session limit.
 */
@Injectable()
export class NewSessionLimit {
  constructor(
    private readonly config: AppConfig,
    private readonly redis: RedisConnections,
  ) {}

  async check(address: string | undefined): Promise<void> {
    const perMinute = this.config.limits.newSessionsPerMinute;
    if (perMinute <= 0 || !address) return;
    const now = Date.now();
    const minute = Math.floor(now / 60_000);
    // The address is hashed: a key name never stores who the client is.
    const hash = createHash('sha256').update(addressGroup(address)).digest('base64url').slice(0, 16);
    const key = newSessionRateKey(hash, minute);
    // The window lives a minute past its end, so a slow clock elsewhere still finds it.
    const replies = await this.redis.commands.multi().incr(key).expire(key, 120).exec();
    const count: unknown = replies?.[0]?.[1];
    if (typeof count === 'number' && count > perMinute) {
      const retryAfter = Math.max(1, Math.ceil((60_000 - (now % 60_000)) / 1000));
      throw new RetryLaterException(429, `rate limit: at most ${perMinute} new sessions per minute from one address`, retryAfter);
    }
  }
}
