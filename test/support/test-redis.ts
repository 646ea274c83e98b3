import { Redis } from 'ioredis';
import { AppConfig } from '../../src/config/app-config';
import { validateEnvironment } from '../../src/config/environment';
import { RedisConnections } from '../../src/event-bus/redis-connections';
import { replyField } from '../../src/event-bus/stream-reply';

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

/**
 * The app's validated config and its Redis connections, as a spec builds the providers under test.
 * Connected first unless `connect` is false (a spec against a Redis that is not there: connecting
 * would wait for it).
 */
export async function appConnections(url = testRedisUrl(), connect = true): Promise<{ config: AppConfig; connections: RedisConnections }> {
  const config = new AppConfig(validateEnvironment({ REDIS_URL: url }));
  const connections = new RedisConnections(config);
  if (connect) await connections.onModuleInit();
  return { config, connections };
}

/** A plain client for assertions, on a fresh (flushed) database. */
export async function freshRedis(url = testRedisUrl()): Promise<Redis> {
  const client = new Redis(url, { protocol: 2, lazyConnect: true });
  await client.connect();
  await client.flushdb();
  return client;
}

/** Commands read by the `ai-workers` group and not yet acknowledged. */
export async function pendingCount(redis: Redis): Promise<number> {
  const summary = (await redis.xpending('chat:incoming', 'ai-workers')) as [number];
  return summary[0];
}

/**
 * Commands ever added to chat:incoming. With a worker running, XLEN is no measure: acknowledged
 * commands are deleted, so it drops while a test looks.
 */
export async function commandsAdded(redis: Redis): Promise<number> {
  const info = (await redis.xinfo('STREAM', 'chat:incoming').catch(() => [])) as unknown[];
  return Number(replyField(info, 'entries-added') ?? 0);
}
