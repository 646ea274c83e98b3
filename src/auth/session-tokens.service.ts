import { Injectable, Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { AppConfig } from '../config/app-config';
import { RedisConnections } from '../event-bus/redis-connections';
import { GLOBAL_KEYS, KeyLayout } from '../event-bus/stream-names';
import { encodeToken, parseToken, signedByAny } from './token-format';

const SECRET_REFRESH_MS = 60_000;
/**
 * Instances' clocks may differ a little: a revocation outlives the longest token by this much, and
 * a token may claim an expiry up to this far beyond TOKEN_TTL_SECONDS from now.
 */
const CLOCK_SKEW_SECONDS = 300;

export type TokenCheck = 'ok' | 'unauthorized' | 'forbidden';

/** Why a token was refused; only the last two are said out loud (they come after the signature check). */
export type TokenRefusal = 'invalid' | 'expired' | 'revoked';

export type TokenReading = { sessionId: string; expiresAt: number } | { refused: TokenRefusal };

export interface IssuedToken {
  token: string;
  expiresAt: Date;
}

/**
 * Session tokens (format in token-format.ts). Any instance can verify any token. Tokens are signed
 * with SESSION_SECRET, or else one random secret created once in Redis (SET NX) so that instances
 * agree with zero configuration; SESSION_SECRET_PREVIOUS still verifies (rotation). A token expires
 * TOKEN_TTL_SECONDS after it was issued, and stops working at once when its session is deleted
 * (revoked key, kept until every token of the session has expired anyway).
 */
@Injectable()
export class SessionTokens {
  private readonly logger = new Logger(SessionTokens.name);
  private secret: Promise<Buffer> | null = null;
  private loadedAt = 0;
  private readonly previousSecrets: Buffer[];

  constructor(
    private readonly config: AppConfig,
    private readonly redis: RedisConnections,
    private readonly keys: KeyLayout,
  ) {
    this.previousSecrets = config.auth.previousSecrets.map((s) => Buffer.from(s));
  }

  get enabled(): boolean {
    return this.config.auth.mode === 'token';
  }

  async issue(sessionId: string): Promise<IssuedToken> {
    const expiresAt = nowSeconds() + this.config.auth.tokenTtlSeconds;
    return { token: encodeToken(await this.key(), sessionId, expiresAt), expiresAt: new Date(expiresAt * 1000) };
  }

  /** Constant-time check of `token` for `sessionId`: bad, expired or revoked → unauthorized; another session's → forbidden. */
  async verify(sessionId: string, token: unknown): Promise<TokenCheck> {
    if (!this.enabled) return 'ok';
    const reading = await this.read(token);
    if ('refused' in reading) return 'unauthorized';
    return reading.sessionId === sessionId ? 'ok' : 'forbidden';
  }

  /**
   * The session a genuine, live token was issued for, or why it is refused. Checks the cheap things
   * first; only a correctly signed, unexpired token costs a Redis round trip (EXISTS revoked). A
   * Redis failure is thrown, so callers answer 503 rather than let a revoked token through.
   */
  async read(token: unknown): Promise<TokenReading> {
    const parsed = parseToken(token);
    if (!parsed) return { refused: 'invalid' };
    if (!signedByAny(parsed, [await this.key(), ...this.previousSecrets])) return { refused: 'invalid' };
    const now = nowSeconds();
    if (parsed.expiresAt <= now) return { refused: 'expired' };
    // Longer than this deployment would issue now (TOKEN_TTL_SECONDS was lowered): the revocation
    // key would not outlive it, so it is treated as expired.
    if (parsed.expiresAt > now + this.config.auth.tokenTtlSeconds + CLOCK_SKEW_SECONDS) return { refused: 'expired' };
    if ((await this.redis.commands.exists(this.keys.session(parsed.sessionId).revoked)) > 0) return { refused: 'revoked' };
    return { sessionId: parsed.sessionId, expiresAt: parsed.expiresAt };
  }

  /**
   * How long a revocation (`KeyLayout.session(sid).revoked`, set by the delete script itself) must last: until every
   * token of the session has expired anyway. 0 without tokens (AUTH_MODE=none): nothing to revoke.
   */
  get revocationSeconds(): number {
    return this.enabled ? this.config.auth.tokenTtlSeconds + CLOCK_SKEW_SECONDS : 0;
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
    if (created === 'OK')
      this.logger.log(previous ? 'restored the shared session-token secret in Redis' : 'created the shared session-token secret in Redis');
    return Buffer.from(shared);
  }
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
