import { Injectable, Logger } from '@nestjs/common';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AppConfig } from '../config/app-config';
import { RedisConnections } from '../event-bus/redis-connections';
import { GLOBAL_KEYS, isValidId } from '../event-bus/stream-names';

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
    this.secret ??= this.loadSecret().catch((err: unknown) => {
      this.secret = null; // Redis was away: try again on the next request
      throw err;
    });
    return this.secret;
  }

  private async loadSecret(): Promise<Buffer> {
    if (this.config.auth.sessionSecret) return Buffer.from(this.config.auth.sessionSecret);
    const candidate = randomBytes(32).toString('base64url');
    await this.redis.commands.set(GLOBAL_KEYS.authSecret, candidate, 'NX');
    const shared = await this.redis.commands.get(GLOBAL_KEYS.authSecret);
    if (!shared) throw new Error('session secret missing in Redis');
    if (shared === candidate) this.logger.log('created the shared session-token secret in Redis');
    return Buffer.from(shared);
  }
}
