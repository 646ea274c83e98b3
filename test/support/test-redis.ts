import type { ChainableCommander } from 'ioredis';
import { Redis } from 'ioredis';
import { AppConfig } from '../../src/config/app-config';
import { validateEnvironment } from '../../src/config/environment';
import { RedisConnections } from '../../src/event-bus/redis-connections';
import { GLOBAL_KEYS, KeyLayout, WORKER_GROUP } from '../../src/event-bus/stream-names';

/**
 * The Redis URL for this jest worker: its own database index (1-15), so test files running in
 * parallel never see each other's streams and keys.
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

/** The partition count of the apps under test: PARTITIONS is never set by the tests, so the default. */
export const TEST_PARTITIONS = 64;

let layout: KeyLayout | undefined;

/** Every key of the apps under test (built once: the partition tags are computed). */
export function keyLayout(): KeyLayout {
  layout ??= new KeyLayout(TEST_PARTITIONS);
  return layout;
}

/** A stream or group that was never created: nothing in it, nothing pending. */
const MISSING = /NOGROUP|no such key/i;

/**
 * Runs one command per partition's chat:incoming stream in one pipeline and returns the replies of
 * the streams that exist (a stream or group not created yet answers nothing).
 */
async function perIncomingStream(redis: Redis, command: (pipeline: ChainableCommander, stream: string) => void) {
  const streams = keyLayout().partitions.map((p) => p.incoming);
  const pipeline = redis.pipeline();
  for (const stream of streams) command(pipeline, stream);
  const results = (await pipeline.exec()) ?? [];
  const replies: { stream: string; reply: unknown }[] = [];
  results.forEach(([error, reply], i) => {
    if (error) {
      if (MISSING.test(error.message)) return;
      throw error;
    }
    replies.push({ stream: streams[i], reply });
  });
  return replies;
}

/** A field of a flat `[name, value, name, value, ...]` reply (XINFO with RESP2). */
function field(reply: unknown, name: string): unknown {
  if (!Array.isArray(reply)) return undefined;
  for (let i = 0; i + 1 < reply.length; i += 2) if (reply[i] === name) return reply[i + 1];
  return undefined;
}

/** Commands read by the `ai-workers` group and not yet acknowledged, over every partition. */
export async function pendingCount(redis: Redis): Promise<number> {
  const replies = await perIncomingStream(redis, (p, stream) => p.xpending(stream, WORKER_GROUP));
  return replies.reduce((sum, { reply }) => sum + Number((reply as [number])[0] ?? 0), 0);
}

export interface PendingEntry {
  stream: string;
  id: string;
  consumer: string;
  deliveries: number;
}

/** Every pending entry of the `ai-workers` group, over every partition. */
export async function pendingEntries(redis: Redis): Promise<PendingEntry[]> {
  const replies = await perIncomingStream(redis, (p, stream) => p.xpending(stream, WORKER_GROUP, '-', '+', 1000));
  return replies.flatMap(({ stream, reply }) =>
    (reply as [string, string, number, number][]).map(([id, consumer, , deliveries]) => ({
      stream,
      id,
      consumer,
      deliveries: Number(deliveries),
    })),
  );
}

/**
 * Commands ever added to the chat:incoming streams. With a worker running, XLEN is no measure:
 * acknowledged commands are deleted, so it drops while a test looks.
 */
export async function commandsAdded(redis: Redis): Promise<number> {
  const replies = await perIncomingStream(redis, (p, stream) => p.xinfo('STREAM', stream));
  return replies.reduce((sum, { reply }) => sum + Number(field(reply, 'entries-added') ?? 0), 0);
}

export interface GroupConsumer {
  stream: string;
  name: string;
  pending: number;
}

/** Every consumer of the `ai-workers` group, over every partition (one row per stream it is known in). */
export async function groupConsumers(redis: Redis): Promise<GroupConsumer[]> {
  const replies = await perIncomingStream(redis, (p, stream) => p.xinfo('CONSUMERS', stream, WORKER_GROUP));
  return replies.flatMap(({ stream, reply }) =>
    (reply as unknown[]).map((consumer) => ({
      stream,
      name: String(field(consumer, 'name')),
      pending: Number(field(consumer, 'pending') ?? 0),
    })),
  );
}

/** The `consumers` count XINFO GROUPS gives for the `ai-workers` group, summed over every partition. */
export async function groupConsumerCount(redis: Redis): Promise<number> {
  const replies = await perIncomingStream(redis, (p, stream) => p.xinfo('GROUPS', stream));
  return replies.reduce((sum, { reply }) => {
    const group = (reply as unknown[]).find((g) => field(g, 'name') === WORKER_GROUP);
    return sum + Number(field(group, 'consumers') ?? 0);
  }, 0);
}

/** chat:workers: worker consumer name -> last heartbeat (Redis clock, ms). */
export async function workerHeartbeats(redis: Redis): Promise<Map<string, number>> {
  const flat = await redis.zrange(GLOBAL_KEYS.workers, 0, '-1', 'WITHSCORES');
  const beats = new Map<string, number>();
  for (let i = 0; i + 1 < flat.length; i += 2) beats.set(flat[i], Number(flat[i + 1]));
  return beats;
}

/**
 * Messages accepted and not ended, over every partition (the members of the `chat:backlog:{T}`
 * zsets): each session's head, in its partition's chat:incoming, and those waiting in its queue.
 * With no worker running, every message accepted so far.
 */
export async function acceptedCount(redis: Redis): Promise<number> {
  const pipeline = redis.pipeline();
  for (const p of keyLayout().partitions) pipeline.zcard(p.backlog);
  return ((await pipeline.exec()) ?? []).reduce((sum, [error, count]) => {
    if (error) throw error;
    return sum + Number(count);
  }, 0);
}
