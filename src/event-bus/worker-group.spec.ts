import type { Redis } from 'ioredis';
import { appConnections, freshRedis } from '../../test/support/test-redis';
import { RedisConnections } from './redis-connections';
import { KeyLayout, WORKER_GROUP } from './stream-names';
import { WorkerGroup } from './worker-group';

/** The consumer group plumbing against a real Redis: leaving the groups never drops a pending entry. */
describe('WorkerGroup (real Redis)', () => {
  let redis: Redis;
  let connections: RedisConnections;
  let layout: KeyLayout;
  let group: WorkerGroup;

  beforeAll(async () => {
    redis = await freshRedis();
    const app = await appConnections();
    connections = app.connections;
    layout = new KeyLayout(app.config.redis.partitions);
    group = new WorkerGroup(connections, layout);
    await group.ensure();
  });

  afterAll(async () => {
    await connections.onApplicationShutdown();
    await redis.quit();
  });

  const consumersOf = async (stream: string): Promise<string[]> => {
    const rows = (await redis.xinfo('CONSUMERS', stream, WORKER_GROUP)) as unknown[][];
    return rows.map((row) => String(row[1]));
  };

  it('deletes a consumer only from the partitions where it holds nothing; a held entry stays pending with it', async () => {
    const [held, empty] = layout.partitions;
    await redis.xadd(held.incoming, '*', 'v', '1');
    await redis.xreadgroup('GROUP', WORKER_GROUP, 'frozen', 'COUNT', 1, 'STREAMS', held.incoming, '>');
    await redis.xgroup('CREATECONSUMER', empty.incoming, WORKER_GROUP, 'frozen');
    expect(await consumersOf(empty.incoming)).toContain('frozen');

    expect(await group.deleteConsumer('frozen')).toBe(false);
    expect(await consumersOf(held.incoming)).toContain('frozen');
    expect(await consumersOf(empty.incoming)).not.toContain('frozen');
    expect(await group.pendingOf('frozen', 10)).toHaveLength(1);

    const [entry] = await group.claim(await group.pendingOf('frozen', 10), 'alive', 0);
    expect(entry.deliveries).toBe(2);
    expect(await group.deleteConsumer('frozen')).toBe(true);
    expect(await consumersOf(held.incoming)).not.toContain('frozen');
    expect(await group.exists(entry)).toBe(true);
    await group.ack(entry);
    expect(await group.exists(entry)).toBe(false);
  });
});
