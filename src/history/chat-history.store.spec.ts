import type { Redis } from 'ioredis';
import { freshRedis, testRedisUrl } from '../../test/support/test-redis';
import { AppConfig } from '../config/app-config';
import { validateEnvironment } from '../config/environment';
import { RedisConnections } from '../event-bus/redis-connections';
import { ChatHistoryStore } from './chat-history.store';

describe('ChatHistoryStore (real Redis)', () => {
  let redis: Redis;
  let connections: RedisConnections;
  let store: ChatHistoryStore;

  beforeAll(async () => {
    redis = await freshRedis();
    const config = new AppConfig(validateEnvironment({ REDIS_URL: testRedisUrl() }));
    connections = new RedisConnections(config);
    await connections.onModuleInit();
    store = new ChatHistoryStore(connections, config);
  });

  afterAll(async () => {
    await connections.onApplicationShutdown();
    await redis.quit();
  });

  const user = (content: string) => ({ content, createdAt: new Date().toISOString() });
  const answer = { content: 'ok', createdAt: new Date().toISOString() };

  describe('earlierMessagesDone', () => {
    it('is true for the first message and null for one not in the history', async () => {
      await store.appendUserMessage('s-first', 'm1', user('a'));
      expect(await store.earlierMessagesDone('s-first', 'm1')).toBe(true);
      expect(await store.earlierMessagesDone('s-first', 'unknown')).toBeNull();
    });

    it('waits while an earlier message is queued or streaming', async () => {
      await store.appendUserMessage('s-open', 'm1', user('a'));
      await store.appendUserMessage('s-open', 'm2', user('b'));
      expect(await store.earlierMessagesDone('s-open', 'm2')).toBe(false);
      await store.markStreaming('s-open', 'm1');
      expect(await store.earlierMessagesDone('s-open', 'm2')).toBe(false);
    });

    // The race CI once caught: the next chat.started went out before the earlier chat.completed.
    it('waits for an ended earlier message until its final event is announced', async () => {
      await store.appendUserMessage('s-ann', 'm1', user('a'));
      await store.appendUserMessage('s-ann', 'm2', user('b'));
      await store.appendUserMessage('s-ann', 'm3', user('c'));
      expect(await store.finish('s-ann', 'm1', 'completed', answer)).toBe('applied');
      expect(await store.earlierMessagesDone('s-ann', 'm2')).toBe(false);
      await store.markAnnounced('s-ann', 'm1', '1-0');
      expect(await store.earlierMessagesDone('s-ann', 'm2')).toBe(true);
      expect(await store.earlierMessagesDone('s-ann', 'm3')).toBe(false);
      await store.finish('s-ann', 'm2', 'failed', { ...answer, error: { code: 'model_error', message: 'x' } });
      expect(await store.earlierMessagesDone('s-ann', 'm3')).toBe(false);
      await store.markAnnounced('s-ann', 'm2', '2-0');
      expect(await store.earlierMessagesDone('s-ann', 'm3')).toBe(true);
    });

    it('does not wait for an earlier message taken back (its send failed)', async () => {
      await store.appendUserMessage('s-rm', 'm1', user('a'));
      await store.appendUserMessage('s-rm', 'm2', user('b'));
      await store.remove('s-rm', 'm1');
      expect(await store.earlierMessagesDone('s-rm', 'm2')).toBe(true);
    });
  });
});
