import { randomUUID } from 'node:crypto';
import { eventually } from '../../test/support/eventually';
import { RedisServer } from '../../test/support/redis-server';
import { appConnections, freshRedis } from '../../test/support/test-redis';
import { QUIT_TIMEOUT_MS } from './redis-connections';
import { within } from '../../test/support/within';

describe('RedisConnections shutdown (real Redis)', () => {
  it('does not wait for a QUIT stuck behind a blocking read that never ends', async () => {
    const { connections } = await appConnections();
    const observer = await freshRedis();
    try {
      const reader = connections.openBlocking('spec-blocked');
      // BLOCK 0 on a stream nobody writes: the QUIT sent after it is answered only when it ends.
      reader.xread('BLOCK', 0, 'STREAMS', `test:never:${randomUUID()}`, '$').catch(() => undefined);
      await eventually(
        async () => String(await observer.client('LIST')),
        (list) => list.split('\n').some((line) => line.includes('name=ai-assistant:spec-blocked ') && /flags=b/.test(line)),
      );
      expect(await within(connections.onApplicationShutdown(), QUIT_TIMEOUT_MS + 1000)).toBe('done');
    } finally {
      await observer.quit();
    }
  });

  it('does not wait for a Redis that hangs with its connections open (SIGSTOP)', async () => {
    const server = await RedisServer.start();
    const { connections } = await appConnections(server.url);
    try {
      // A subscriber: no command timeout, unlike the shared connection.
      const subscriber = connections.openSubscriber('spec-hung');
      await subscriber.subscribe('spec-channel');
      process.kill(server.pid!, 'SIGSTOP');
      expect(await within(connections.onApplicationShutdown(), QUIT_TIMEOUT_MS + 1000)).toBe('done');
    } finally {
      process.kill(server.pid!, 'SIGCONT');
      await server.dispose();
    }
  });
});
