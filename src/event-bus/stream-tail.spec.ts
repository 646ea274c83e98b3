import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { eventually } from '../../test/support/eventually';
import { freePort } from '../../test/support/redis-server';
import { appConnections, freshRedis } from '../../test/support/test-redis';
import { RedisConnections } from './redis-connections';
import { StreamEntry } from './stream-reply';
import { StreamTail } from './stream-tail';

describe('StreamTail (real Redis)', () => {
  let redis: Redis;
  let connections: RedisConnections;

  beforeAll(async () => {
    redis = await freshRedis();
    ({ connections } = await appConnections());
  });

  afterAll(async () => {
    await connections.onApplicationShutdown();
    await redis.quit();
  });

  /** The CLIENT LIST line of the tail's own connection. */
  async function tailClient(stream: string): Promise<string | undefined> {
    const list = await redis.client('LIST');
    return String(list)
      .split('\n')
      .find((line) => line.includes(`name=ai-assistant:tail:${stream} `));
  }

  it('reads the next batch while one is handled, and hands batches over one at a time, in order', async () => {
    const stream = `test:tail:${randomUUID()}`;
    const seen: string[] = [];
    let active = 0;
    let mostActive = 0;
    let calls = 0;
    let openGate: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const tail = new StreamTail(connections, stream, async (entries: StreamEntry[]) => {
      calls++;
      active++;
      mostActive = Math.max(mostActive, active);
      seen.push(...entries.map((e) => e.fields[1]));
      if (calls === 1) await gate;
      active--;
    });
    tail.start();
    try {
      // The tail starts from the stream's newest entry: wait until it is blocked reading.
      await eventually(
        () => tailClient(stream),
        (line) => /flags=b/.test(line ?? ''),
      );
      await redis.xadd(stream, '*', 'n', '1');
      await eventually(
        () => calls,
        (n) => n === 1,
      );
      // While the first batch is still being handled, the next read is already waiting in Redis.
      await eventually(
        () => tailClient(stream),
        (line) => /flags=b.* cmd=xread/.test(line ?? ''),
      );
      await redis.xadd(stream, '*', 'n', '2');
      await redis.xadd(stream, '*', 'n', '3');
      // Read (the blocked XREAD returned) but not handed over before the first batch is done.
      await eventually(
        () => tailClient(stream),
        (line) => line !== undefined && !/flags=b/.test(line),
      );
      expect(calls).toBe(1);
      openGate();
      await eventually(
        () => seen.join(),
        (all) => all === '1,2,3',
      );
      expect(mostActive).toBe(1);
    } finally {
      openGate();
      await tail.stop();
    }
  });

  it('keeps reading after a handler fails, and stop() waits for the batch in hand', async () => {
    const stream = `test:tail:${randomUUID()}`;
    const seen: string[] = [];
    let finishedLast = false;
    const tail = new StreamTail(connections, stream, async (entries: StreamEntry[]) => {
      const values = entries.map((e) => e.fields[1]);
      seen.push(...values);
      if (values.includes('bad')) throw new Error('handler broke');
      if (values.includes('slow')) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        finishedLast = true;
      }
    });
    tail.start();
    await eventually(
      () => tailClient(stream),
      (line) => /flags=b/.test(line ?? ''),
    );
    await redis.xadd(stream, '*', 'n', 'bad');
    await eventually(
      () => seen.join(),
      (all) => all === 'bad',
    );
    await redis.xadd(stream, '*', 'n', 'slow');
    await eventually(
      () => seen.join(),
      (all) => all === 'bad,slow',
    );
    await tail.stop();
    expect(finishedLast).toBe(true);
    await eventually(
      () => tailClient(stream),
      (line) => line === undefined,
    );
  });

  it('hands over a batch read ahead before stop() returns', async () => {
    const stream = `test:tail:${randomUUID()}`;
    const seen: string[] = [];
    let openGate: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const tail = new StreamTail(connections, stream, async (entries: StreamEntry[]) => {
      seen.push(...entries.map((e) => e.fields[1]));
      if (seen.length === 1) await gate;
    });
    tail.start();
    await eventually(
      () => tailClient(stream),
      (line) => /flags=b/.test(line ?? ''),
    );
    await redis.xadd(stream, '*', 'n', '1');
    await eventually(
      () => seen.join(),
      (all) => all === '1',
    );
    await eventually(
      () => tailClient(stream),
      (line) => /flags=b/.test(line ?? ''),
    );
    await redis.xadd(stream, '*', 'n', '2');
    // entry 2 is read (the blocked read returned) while batch 1 is still in hand
    await eventually(
      () => tailClient(stream),
      (line) => line !== undefined && !/flags=b/.test(line),
    );
    const stopped = tail.stop();
    openGate();
    await stopped;
    expect(seen).toEqual(['1', '2']);
    await eventually(
      () => tailClient(stream),
      (line) => line === undefined,
    );
  });

  it('stop() returns while Redis refuses connections, though the read it queued never settles', async () => {
    // Nothing listens there: the tail's connection keeps waiting to reconnect, its read queued.
    const { connections: nowhere } = await appConnections(`redis://127.0.0.1:${await freePort()}`, false);
    const tail = new StreamTail(nowhere, 'test:tail:unreachable', () => undefined);
    tail.start();
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        tail.stop().then(() => 'stopped'),
        new Promise((resolve) => (timer = setTimeout(resolve, 1000, 'still waiting after 1 s'))),
      ]);
      clearTimeout(timer);
      expect(outcome).toBe('stopped');
    } finally {
      await nowhere.onApplicationShutdown();
    }
  });
});
