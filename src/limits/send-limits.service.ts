import { HttpException, HttpStatus, Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { RedisConnections } from '../event-bus/redis-connections';
import { addressRateKey, sessionRateKey, STREAMS } from '../event-bus/stream-names';
import { addressKeyPart, countHit, minuteWindow } from './minute-window';

const BACKLOG_REUSE_MS = 50;
/** A backlog reading is reused only while it (plus the sends since) is below this share of MAX_BACKLOG. */
const BACKLOG_REUSE_BELOW = 0.9;

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

/** The refusal of a send while chat:incoming holds MAX_BACKLOG commands or more. */
export function backlogFull(backlog: number): RetryLaterException {
  return new RetryLaterException(503, `the assistant is busy (${backlog} messages waiting); try again shortly`, 5);
}

/**
 * Limits on sends, shared by every instance through Redis: per session and per client address
 * (fixed one-minute windows), and a backlog limit that refuses new work while the workers are too
 * far behind. Checked in one place for HTTP and Socket.IO alike.
 */
@Injectable()
export class SendLimits {
  private lastBacklog: { backlog: number; at: number; sendsSince: number } | null = null;

  constructor(
    private readonly config: AppConfig,
    private readonly redis: RedisConnections,
  ) {}

  async check(sessionId: string, address: string | null): Promise<void> {
    await this.checkBacklog();
    const { minute, retryAfterSeconds: retryAfter } = minuteWindow();
    const { sessionPerMinute, ipPerMinute } = this.config.limits;
    if (sessionPerMinute > 0) {
      const count = await countHit(this.redis.commands, sessionRateKey(sessionId, minute));
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

  /**
   * chat:incoming holds only unacknowledged commands (acks delete), so its length is the backlog.
   * This is the early check; the guarantee is the command's XADD itself, which refuses at the
   * limit (EventBus.publishCommand): two sends can both pass this reading. It stays because a
   * refusal here costs one XLEN (often none), while one from the XADD has written and taken back
   * a history entry, which is what a flood against a full backlog would otherwise do on every send.
   * Far below the limit a reading is reused for BACKLOG_REUSE_MS, with this process's sends since
   * added to it: one round trip less per send under load.
   */
  private async checkBacklog(): Promise<void> {
    const max = this.config.limits.maxBacklog;
    const known = this.lastBacklog;
    if (known && Date.now() - known.at < BACKLOG_REUSE_MS && known.backlog + known.sendsSince < max * BACKLOG_REUSE_BELOW) {
      known.sendsSince++;
      return;
    }
    const backlog = await this.redis.commands.xlen(STREAMS.incoming);
    if (backlog >= max) {
      this.lastBacklog = null;
      throw backlogFull(backlog);
    }
    this.lastBacklog = { backlog, at: Date.now(), sendsSince: 1 };
  }
}
