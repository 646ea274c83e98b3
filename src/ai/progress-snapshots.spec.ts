import { jest } from '@jest/globals';
import type { Redis } from 'ioredis';
import { freePort } from '../../test/support/redis-server';
import { appConnections, freshRedis, testRedisUrl } from '../../test/support/test-redis';
import { RedisConnections } from '../event-bus/redis-connections';
import { ChatHistoryStore } from '../history/chat-history.store';
import { ProgressSnapshots } from './progress-snapshots';

type SavedPart = Parameters<ChatHistoryStore['saveProgress']>[2];

/** A history whose saves fail while `failing` is set; records every attempt. */
function flakyHistory() {
  const attempts: { part: SavedPart; ok: boolean }[] = [];
  const history = {
    failing: false,
    attempts,
    saveProgress(_sessionId: string, _messageId: string, part: SavedPart): Promise<void> {
      const ok = !history.failing;
      attempts.push({ part: { ...part }, ok });
      return ok ? Promise.resolve() : Promise.reject(new Error('redis down'));
    },
  };
  return { history, store: history as unknown as ChatHistoryStore };
}

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

  describe('with a history that fails and comes back', () => {
    let now = 1_000_000;
    beforeEach(() => {
      now = 1_000_000;
      jest.spyOn(Date, 'now').mockImplementation(() => now);
    });
    afterEach(() => jest.restoreAllMocks());

    it('tries a failed save again a second later, with everything published so far', async () => {
      const { history, store } = flakyHistory();
      const progress = new ProgressSnapshots(store, { sessionId: 's-retry', messageId: 'm1' }, Promise.resolve('1-0'));
      progress.begin();
      await progress.settled();
      expect(history.attempts).toEqual([{ part: expect.objectContaining({ content: '', resumeFrom: '1-0' }) as unknown, ok: true }]);

      now += 1000;
      history.failing = true;
      await expect(progress.published('content', 'Hel', '2-0')).resolves.toBeUndefined();
      expect(history.attempts).toHaveLength(2);
      expect(history.attempts[1]).toMatchObject({ part: { content: 'Hel', resumeFrom: '2-0' }, ok: false });

      history.failing = false;
      now += 500; // within a second of the failed attempt: no write yet
      await progress.published('content', 'lo', '3-0');
      expect(history.attempts).toHaveLength(2);

      now += 500; // a second after it: the retry, carrying what was published since
      await progress.published('thinking', 'hm', '4-0');
      expect(history.attempts).toHaveLength(3);
      expect(history.attempts[2]).toMatchObject({ part: { content: 'Hello', thinking: 'hm', resumeFrom: '4-0' }, ok: true });
    });

    it('saves a failed first snapshot with the next delta', async () => {
      const { history, store } = flakyHistory();
      history.failing = true;
      const progress = new ProgressSnapshots(store, { sessionId: 's-retry', messageId: 'm1' }, Promise.resolve('1-0'));
      progress.begin();
      await expect(progress.settled()).resolves.toBeUndefined();
      expect(history.attempts).toMatchObject([{ ok: false }]);

      history.failing = false;
      now += 10; // well within a second, yet the empty answer was never saved
      await progress.published('content', 'Hi', '2-0');
      expect(history.attempts).toHaveLength(2);
      expect(history.attempts[1]).toMatchObject({ part: { content: 'Hi', resumeFrom: '2-0' }, ok: true });
    });
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
