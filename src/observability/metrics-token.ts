import { createHash, timingSafeEqual } from 'node:crypto';
import { bearerToken } from '../auth/bearer';

/**
 * Whether an Authorization header carries METRICS_TOKEN (`Bearer <token>`, scheme in any case).
 * Compared as SHA-256 digests, so the comparison takes the same time whatever the guess's length.
 * With no token configured, /metrics is open (a scraper on a private network).
 */
export function metricsAccessAllowed(expected: string | null, authorization: string | undefined): boolean {
  if (expected === null) return true;
  const given = bearerToken(authorization);
  if (given === null) return false;
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(given), digest(expected));
}
