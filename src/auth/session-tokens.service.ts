import { Injectable, Logger } from '@nestjs/common';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AppConfig } from '../config/app-config';
import { RedisConnections } from '../event-bus/redis-connections';
import { GLOBAL_KEYS, isValidId } from '../event-bus/stream-names';

const SECRET_REFRESH_MS = 60_000;

export type TokenCheck = 'ok' | 'unauthorized' | 'forbidden';

/**
 * Session tokens: `<sessionId>.<HMAC-SHA256(secret, sessionId)>`. Any instance can verify any token.
 * The secret is SESSION_SECRET, or else one random secret created once in Redis (SET NX), so that
 * instances agree with zero configuration.
 */
@Injectable()
export class SessionTokens {
  private readonly logger = new Logger(SessionTokens.name);
  private secret: Promise<Buffer> | null = null;
  private loadedAt = 0;

  constructor(
    private readonly config: AppConfig,
    private readonly redis: RedisConnections,
  ) {}

  get enabled(): boolean {
    return this.config.auth.mode === 'token';
  }

  async issue(sessionId: string): Promise<string> {
    return `${sessionId}.${await this.sign(sessionId)}`;
  }

  /** Constant-time check of `token` for `sessionId`: wrong or missing → unauthorized; another session's → forbidden. */
  async verify(sessionId: string, token: unknown): Promise<TokenCheck> {
    if (!this.enabled) return 'ok';
    const owner = await this.ownerOf(token);
    if (owner === null) return 'unauthorized';
    return owner === sessionId ? 'ok' : 'forbidden';
  }

  /** The session a genuine token was issued for, or null for anything else. */
  async ownerOf(token: unknown): Promise<string | null> {
    if (typeof token !== 'string' || token.length > 200) return null;
    const dot = token.lastIndexOf('.');
    if (dot <= 0) return null;
    const sessionId = token.slice(0, dot);
    if (!isValidId(sessionId)) return null;
    const given = Buffer.from(token.slice(dot + 1));
    const expected = Buffer.from(await this.sign(sessionId));
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    return sessionId;
  }

  private async sign(sessionId: string): Promise<string> {
    return createHmac('sha256', await this.key()).update(`session:v1:${sessionId}`).digest('base64url');
  }

  private key(): Promise<Buffer> {
    if (this.secret && Date.now() - this.loadedAt < SECRET_REFRESH_MS) return this.secret;
    const previous = this.secret;
    this.loadedAt = Date.now();
    this.secret = this.loadSecret(previous).catch((err: unknown) => {
      this.secret = previous; // Redis was away: keep what we had, try again on the next request
      this.loadedAt = 0;
      if (previous) return previous;
      throw err;
    });
    return this.secret;
  }

  /**
   * The shared secret: SESSION_SECRET, or the one in Redis. Re-read every minute and written back
   * if Redis lost it, so instances converge on one secret instead of splitting after a data loss.
   */
  private async loadSecret(previous: Promise<Buffer> | null): Promise<Buffer> {
    if (this.config.auth.sessionSecret) return Buffer.from(this.config.auth.sessionSecret);
    const candidate = previous ? (await previous).toString() : randomBytes(32).toString('base64url');
    const created = await this.redis.commands.set(GLOBAL_KEYS.authSecret, candidate, 'NX');
    const shared = await this.redis.commands.get(GLOBAL_KEYS.authSecret);
    if (!shared) throw new Error('session secret missing in Redis');
    if (created === 'OK') this.logger.log(previous ? 'restored the shared session-token secret in Redis' : 'created the shared session-token secret in Redis');
    return Buffer.from(shared);
  }
}
