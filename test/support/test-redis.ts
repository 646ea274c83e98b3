import { Cluster, Redis } from 'ioredis';
import { AppConfig } from '../../src/config/app-config';
import { validateEnvironment } from '../../src/config/environment';
import { RedisConnections } from '../../src/event-bus/redis-connections';
import { GLOBAL_KEYS, KeyLayout, WORKER_GROUP } from '../../src/event-bus/stream-names';
import { parseReadReply } from '../../src/event-bus/stream-reply';

/**
 * What a test runs against: one redis-server (projects unit, e2e) or a Redis Cluster (project
 * e2e-cluster, whose jest `globals` set TEST_REDIS_TARGET). The same specs run on both.
 */
export type TestRedisTarget = 'single' | 'cluster';

export function testRedisTarget(): TestRedisTarget {
  return (globalThis as { TEST_REDIS_TARGET?: string }).TEST_REDIS_TARGET === 'cluster' ? 'cluster' : 'single';
}

export function onCluster(): boolean {
  return testRedisTarget() === 'cluster';
}

/** `describe` on one target only, skipped on the other (say why beside the call). */
export function describeOn(target: TestRedisTarget): jest.Describe {
  return testRedisTarget() === target ? describe : describe.skip;
}

/** A client for assertions: a plain connection, or a Cluster that routes each key to its node. */
export type TestRedis = Redis | Cluster;

/**
 * The Redis URL for this jest worker: its own database index (1-15), so test files running in
 * parallel never see each other's streams and keys. Single target only (a cluster has database 0).
 */
export function testRedisUrl(): string {
  const base = process.env.TEST_REDIS_URL;
  if (!base) throw new Error('TEST_REDIS_URL is not set: run the tests through jest (npm test), whose global setup finds Redis');
  const worker = Number(process.env.JEST_WORKER_ID ?? '1');
  const db = ((worker - 1) % 15) + 1;
  return `${base}/${db}`;
}

/**
 * The seed nodes (`host:port,...`) of this jest worker's cluster: the global setup starts one per
 * worker (TEST_REDIS_CLUSTER_NODES lists them, `;` between clusters), since a cluster has only
 * database 0 and the app's keys are fixed: files running in parallel must not share one.
 */
export function testClusterNodes(): string {
  const all = process.env.TEST_REDIS_CLUSTER_NODES;
  if (!all)
    throw new Error('TEST_REDIS_CLUSTER_NODES is not set: run the e2e-cluster project through jest, whose global setup starts the cluster');
  const clusters = all.split(';');
  const worker = Number(process.env.JEST_WORKER_ID ?? '1');
  return clusters[(worker - 1) % clusters.length];
}

/** The environment the app's processes need to reach this worker's Redis, on either target. */
export function testRedisEnv(): { REDIS_URL: string } | { REDIS_CLUSTER_NODES: string } {
  return onCluster() ? { REDIS_CLUSTER_NODES: testClusterNodes() } : { REDIS_URL: testRedisUrl() };
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

function seedsOf(nodes: string): { host: string; port: number }[] {
  return nodes.split(',').map((node) => {
    const [host, port] = node.trim().split(':');
    return { host, port: Number(port) };
  });
}

/** A client for assertions on this worker's Redis (either target), connected, not flushed. */
export async function testRedisClient(): Promise<TestRedis> {
  if (onCluster()) {
    const cluster = new Cluster(seedsOf(testClusterNodes()), { redisOptions: { protocol: 2 }, lazyConnect: true });
    await cluster.connect();
    return cluster;
  }
  const client = new Redis(testRedisUrl(), { protocol: 2, lazyConnect: true });
  await client.connect();
  return client;
}

/**
 * A client for assertions on a fresh (flushed) keyspace of this worker's Redis, on either target:
 * what the e2e specs use.
 */
export async function freshTestRedis(): Promise<TestRedis> {
  const client = await testRedisClient();
  await flush(client);
  return client;
}

/** A plain client on a fresh (flushed) database of one redis-server: the unit specs' (single target only). */
export async function freshRedis(url = testRedisUrl()): Promise<Redis> {
  const client = new Redis(url, { protocol: 2, lazyConnect: true });
  await client.connect();
  await client.flushdb();
  return client;
}

/** FLUSHDB, or on a cluster FLUSHALL on every master (each holds its slots' keys). */
export async function flush(redis: TestRedis): Promise<void> {
  if (redis instanceof Cluster) await Promise.all(redis.nodes('master').map((node) => node.flushall()));
  else await redis.flushdb();
}

/** Every key matching `pattern` (KEYS, which sees one node only: on a cluster asked of every master). */
export async function allKeys(redis: TestRedis, pattern = '*'): Promise<string[]> {
  if (redis instanceof Cluster) return (await Promise.all(redis.nodes('master').map((node) => node.keys(pattern)))).flat();
  return redis.keys(pattern);
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
 * Runs one command per partition's chat:incoming stream and returns the replies of the streams that
 * exist (a stream or group not created yet answers nothing). One command each, not one pipeline:
 * on a cluster a pipeline's keys must live on one node.
 */
async function perIncomingStream(redis: TestRedis, command: (redis: TestRedis, stream: string) => Promise<unknown>) {
  const streams = keyLayout().partitions.map((p) => p.incoming);
  const results = await Promise.all(
    streams.map((stream) =>
      command(redis, stream).then(
        (reply) => ({ stream, reply, missing: false }),
        (error: Error) => {
          if (MISSING.test(error.message)) return { stream, reply: undefined, missing: true };
          throw error;
        },
      ),
    ),
  );
  return results.filter((r) => !r.missing).map(({ stream, reply }) => ({ stream, reply }));
}

/** A field of a flat `[name, value, name, value, ...]` reply (XINFO with RESP2). */
function field(reply: unknown, name: string): unknown {
  if (!Array.isArray(reply)) return undefined;
  for (let i = 0; i + 1 < reply.length; i += 2) if (reply[i] === name) return reply[i + 1];
  return undefined;
}

/**
 * Reads a message's `chat.generate` through the `ai-workers` group as worker `consumer` does (the
 * group made when missing) and returns its entry id: what a spec needs to `start` it by hand.
 */
export async function readCommandOf(
  redis: TestRedis,
  layout: KeyLayout,
  ref: { sessionId: string; messageId: string },
  consumer = 'w1',
): Promise<string> {
  const { incoming } = layout.partitionOf(ref.sessionId);
  await redis.xgroup('CREATE', incoming, WORKER_GROUP, '0', 'MKSTREAM').catch((err: Error) => {
    if (!/BUSYGROUP/.test(err.message)) throw err;
  });
  const read = parseReadReply(await redis.xreadgroup('GROUP', WORKER_GROUP, consumer, 'COUNT', 100, 'STREAMS', incoming, '>'));
  const entry = read.find((e) => e.fields.join(' ').includes(ref.messageId));
  if (!entry) throw new Error(`no command for ${ref.messageId}`);
  return entry.id;
}

/** Commands read by the `ai-workers` group and not yet acknowledged, over every partition. */
export async function pendingCount(redis: TestRedis): Promise<number> {
  const replies = await perIncomingStream(redis, (r, stream) => r.xpending(stream, WORKER_GROUP));
  return replies.reduce((sum, { reply }) => sum + Number((reply as [number])[0] ?? 0), 0);
}

export interface PendingEntry {
  stream: string;
  id: string;
  consumer: string;
  deliveries: number;
}

/** Every pending entry of the `ai-workers` group, over every partition. */
export async function pendingEntries(redis: TestRedis): Promise<PendingEntry[]> {
  const replies = await perIncomingStream(redis, (r, stream) => r.xpending(stream, WORKER_GROUP, '-', '+', 1000));
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
export async function commandsAdded(redis: TestRedis): Promise<number> {
  const replies = await perIncomingStream(redis, (r, stream) => r.xinfo('STREAM', stream));
  return replies.reduce((sum, { reply }) => sum + Number(field(reply, 'entries-added') ?? 0), 0);
}

export interface GroupConsumer {
  stream: string;
  name: string;
  pending: number;
}

/** Every consumer of the `ai-workers` group, over every partition (one row per stream it is known in). */
export async function groupConsumers(redis: TestRedis): Promise<GroupConsumer[]> {
  const replies = await perIncomingStream(redis, (r, stream) => r.xinfo('CONSUMERS', stream, WORKER_GROUP));
  return replies.flatMap(({ stream, reply }) =>
    (reply as unknown[]).map((consumer) => ({
      stream,
      name: String(field(consumer, 'name')),
      pending: Number(field(consumer, 'pending') ?? 0),
    })),
  );
}

/** The `consumers` count XINFO GROUPS gives for the `ai-workers` group, summed over every partition. */
export async function groupConsumerCount(redis: TestRedis): Promise<number> {
  const replies = await perIncomingStream(redis, (r, stream) => r.xinfo('GROUPS', stream));
  return replies.reduce((sum, { reply }) => {
    const group = (reply as unknown[]).find((g) => field(g, 'name') === WORKER_GROUP);
    return sum + Number(field(group, 'consumers') ?? 0);
  }, 0);
}

/** chat:workers: worker consumer name -> last heartbeat (Redis clock, ms). */
export async function workerHeartbeats(redis: TestRedis): Promise<Map<string, number>> {
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
export async function acceptedCount(redis: TestRedis): Promise<number> {
  const counts = await Promise.all(keyLayout().partitions.map((p) => redis.zcard(p.backlog)));
  return counts.reduce((sum, count) => sum + count, 0);
}

/** CLIENT LIST, one line per connection: of the server, or of every master of a cluster. */
export async function clientList(redis: TestRedis): Promise<string[]> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
  const lists = await Promise.all(nodes.map(async (node) => String(await node.client('LIST')).split('\n')));
  return lists.flat().filter((line) => line.trim());
}
