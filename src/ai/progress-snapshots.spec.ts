import type { Redis } from 'ioredis';
import { freePort } from '../../test/support/redis-server';
import { appConnections, freshRedis, testRedisUrl } from '../../test/support/test-redis';
import { RedisConnections } from '../event-bus/redis-connections';
import { ChatHistoryStore } from '../history/chat-history.store';
import { ProgressSnapshots } from './progress-snapshots';

async function storeAt(url: string, connect: boolean): Promise<{ connections: RedisConnections; store: ChatHistoryStore }> {
  const { config, connections } = await appConnections(url, connect);
  return { connections, store: new ChatHistoryStore(connections, config) };
}

describe('ProgressSnapshots', () => {
  let redis: Redis;

  beforeAll(async () => {
    redis = await freshRedis();
  });

  afterAll(async () => {
    await redis.quit();
  });

  it('saves the empty answer once chat.started is written, resuming right after it', async () => {
    const { connections, store } = await storeAt(testRedisUrl(), true);
    try {
      const ref = { sessionId: 's-progress', messageId: 'm1' };
      await store.appendUserMessage(ref.sessionId, ref.messageId, { content: 'hi', createdAt: new Date().toISOString() });
      await store.markStreaming(ref.sessionId, ref.messageId);
      let written: (id: string) => void = () => undefined;
      const started = new Promise<string>((resolve) => (written = resolve));
      const progress = new ProgressSnapshots(store, ref, started);
      progress.begin();
      written('5-0');
      await progress.settled();
      const answer = (await store.history(ref.sessionId)).find((m) => m.role === 'assistant');
      expect(answer).toMatchObject({ content: '', status: 'streaming', resumeFrom: '5-0' });
    } finally {
      await connections.onApplicationShutdown();
    }
  });

  it('never fails the answer when a snapshot cannot be saved', async () => {
    // Nothing listens there: every write fails at once (no offline queue).
    const { connections, store } = await storeAt(`redis://127.0.0.1:${await freePort()}`, false);
    try {
      const progress = new ProgressSnapshots(store, { sessionId: 's-down', messageId: 'm1' }, Promise.resolve('1-0'));
      progress.begin();
      await expect(progress.settled()).resolves.toBeUndefined();
      await expect(progress.published('content', 'Hel', '2-0')).resolves.toBeUndefined();
    } finally {
      await connections.onApplicationShutdown();
    }
  });
});
