import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { RedisConnections } from '../event-bus/redis-connections';
import { newSessionRateKey } from '../event-bus/stream-names';
import { addressKeyPart, countHit, minuteWindow } from './minute-window';
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
    const { minute, retryAfterSeconds } = minuteWindow();
    const count = await countHit(this.redis.commands, newSessionRateKey(addressKeyPart(address), minute));
    if (count > perMinute) {
      throw new RetryLaterException(429, `rate limit: at most ${perMinute} new sessions per minute from one address`, retryAfterSeconds);
    }
  }
}
