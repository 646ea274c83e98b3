import { createHash } from 'node:crypto';
import type { RedisClient } from '../event-bus/redis-client';
import { addressGroup } from './address-group';

/** The fixed one-minute window `now` falls in, and the seconds until the next one starts. */
export function minuteWindow(now = Date.now()): { minute: number; retryAfterSeconds: number } {
  return { minute: Math.floor(now / 60_000), retryAfterSeconds: Math.max(1, Math.ceil((60_000 - (now % 60_000)) / 1000)) };
}

/**
 * Counts one more hit in a window's key and returns the count. The key lives a minute past its
 * window's end, so an instance whose clock is a little behind still finds it.
 */
export async function countHit(redis: RedisClient, key: string): Promise<number> {
  const replies = await redis.multi().incr(key).expire(key, 120).exec();
  const count: unknown = replies?.[0]?.[1];
  return typeof count === 'number' ? count : 0;
}

/** The part of a per-address key that names the client: hashed, so no key stores who it is. */
export function addressKeyPart(address: string): string {
  return createHash('sha256').update(addressGroup(address)).digest('base64url').slice(0, 16);
}
