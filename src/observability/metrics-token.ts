import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Whether an Authorization header carries METRICS_TOKEN (`Bearer <token>`, scheme in any case).
 * Compared as SHA-256 digests, so the comparison takes the same time whatever the guess's length.
 * With no token configured, /metrics is open (a scraper on a private network).
 */
export function metricsAccessAllowed(expected: string | null, authorization: string | undefined): boolean {
  if (expected === null) return true;
  const match = /^bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  if (!match) return false;
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(match[1]), digest(expected));
}
