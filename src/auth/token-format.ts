import { createHmac, timingSafeEqual } from 'node:crypto';
import { isValidId } from '../event-bus/stream-names';

/**
 * Session token v2: `<sessionId>.<expiresAt>.<signature>`, where expiresAt is unix seconds in base36
 * and signature is base64url HMAC-SHA256(secret, `session:v2:<sessionId>:<expiresAt>`). The expiry is
 * inside the signed text, so it cannot be stretched; v1 tokens (`<sessionId>.<signature>`, no
 * expiry) have two parts and are refused as malformed.
 */

/** Real tokens are about 90 characters; anything far longer is refused before any work. */
const MAX_TOKEN_LENGTH = 200;
/** base36 unix seconds: 6 characters until the year 2038+, 10 is far beyond any use. */
const EXPIRY = /^[0-9a-z]{1,10}$/;
/** base64url of a SHA-256: 43 characters, no padding. */
const SIGNATURE = /^[A-Za-z0-9_-]{43}$/;

export interface ParsedToken {
  sessionId: string;
  /** Unix seconds. */
  expiresAt: number;
  /** The base36 expiry exactly as it was signed. */
  expiryText: string;
  signature: string;
}

export function signToken(secret: Buffer, sessionId: string, expiryText: string): string {
  return createHmac('sha256', secret).update(`session:v2:${sessionId}:${expiryText}`).digest('base64url');
}

export function encodeToken(secret: Buffer, sessionId: string, expiresAt: number): string {
  const expiryText = expiresAt.toString(36);
  return `${sessionId}.${expiryText}.${signToken(secret, sessionId, expiryText)}`;
}

/** The parts of a well-formed v2 token, or null. Says nothing about the signature. */
export function parseToken(token: unknown): ParsedToken | null {
  if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  const [sessionId, expiryText, signature] = parts;
  if (!isValidId(sessionId) || !EXPIRY.test(expiryText) || !SIGNATURE.test(signature)) return null;
  const expiresAt = Number.parseInt(expiryText, 36);
  // One spelling per expiry (no leading zeros): a token has exactly one valid form.
  if (expiresAt.toString(36) !== expiryText) return null;
  return { sessionId, expiresAt, expiryText, signature };
}

/** Constant-time: does any of `secrets` produce this token's signature? */
export function signedByAny(parsed: ParsedToken, secrets: readonly Buffer[]): boolean {
  const given = Buffer.from(parsed.signature);
  let match = false;
  // Every secret is tried, also after a match: the time taken does not say which secret signed it.
  for (const secret of secrets) {
    const expected = Buffer.from(signToken(secret, parsed.sessionId, parsed.expiryText));
    if (expected.length === given.length && timingSafeEqual(expected, given)) match = true;
  }
  return match;
}
