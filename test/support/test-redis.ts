import { Redis } from 'ioredis';

/**
 * The Redis URL for this jest worker: its own database index (1-15), so test files running in
 * parallel never see each other's chat:incoming / chat:outgoing.
 */
export function testRedisUrl(): string {
  const base = process.env.TEST_REDIS_URL;
  if (!base) throw new Error('TEST_REDIS_URL is not set: run the tests through jest (npm test), whose global setup finds Redis');
  const worker = Number(process.env.JEST_WORKER_ID ?? '1');
  const db = ((worker - 1) % 15) + 1;
  return `${base}/${db}`;
}

/** A plain client for assertions, on a fresh (flushed) database. */
export async function freshRedis(url = testRedisUrl()): Promise<Redis> {
  const client = new Redis(url, { protocol: 2, lazyConnect: true });
  await client.connect();
  await client.flushdb();
  return client;
}
