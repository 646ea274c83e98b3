import type { Redis } from 'ioredis';
import { appConnections, freshRedis, testRedisUrl } from '../../test/support/test-redis';
import { AppConfig } from '../config/app-config';
import { validateEnvironment } from '../config/environment';
import { RedisConnections } from '../event-bus/redis-connections';
import { sessionKeys } from '../event-bus/stream-names';
import { ChatHistoryStore } from './chat-history.store';

describe('ChatHistoryStore (real Redis)', () => {
  let redis: Redis;
  let connections: RedisConnections;
  let store: ChatHistoryStore;

  beforeAll(async () => {
    redis = await freshRedis();
    const app = await appConnections();
    connections = app.connections;
    store = new ChatHistoryStore(connections, app.config);
  });

  afterAll(async () => {
    await connections.onApplicationShutdown();
    await redis.quit();
  });

  const user = (content: string) => ({ content, createdAt: new Date().toISOString() });
  const answer = { content: 'ok', createdAt: new Date().toISOString() };

  describe('markStreaming', () => {
    it('starts a queued message, and refuses one with a recorded cancel or that already ended', async () => {
      await store.appendUserMessage('s-start', 'm1', user('a'));
      expect(await store.markStreaming('s-start', 'm1')).toBe('applied');
      // a cancel of a running message is recorded; a redelivery must not start it again
      expect(await store.requestCancel('s-start', 'm1')).toBe('signal');
      expect(await store.markStreaming('s-start', 'm1')).toBe('cancel-requested');
      await store.finish('s-start', 'm1', 'cancelled', answer);
      expect(await store.markStreaming('s-start', 'm1')).toBe('already-ended');
      expect(await store.markStreaming('s-start', 'unknown')).toBe('gone');
    });
  });

  describe('appendUserMessage', () => {
    it('keeps HISTORY_MAX_MESSAGES / 2 turns, dropping only ended and announced ones, and sets the expiry', async () => {
      const small = new ChatHistoryStore(
        connections,
        new AppConfig(validateEnvironment({ REDIS_URL: testRedisUrl(), HISTORY_MAX_MESSAGES: '4' })),
      );
      const keys = sessionKeys('s-cap');
      const ended = async (id: string) => {
        await small.finish('s-cap', id, 'completed', answer);
        await small.markAnnounced('s-cap', id, '1-0');
      };
      await small.appendUserMessage('s-cap', 'm1', user('a'));
      await small.appendUserMessage('s-cap', 'm2', user('b'));
      // m1 ended but its final event has not gone out: it is kept past the cap
      await small.finish('s-cap', 'm1', 'completed', answer);
      await small.appendUserMessage('s-cap', 'm3', user('c'));
      expect(await redis.lrange(keys.order, 0, -1)).toEqual(['m1', 'm2', 'm3']);
      await small.markAnnounced('s-cap', 'm1', '1-0');
      await ended('m2');
      await small.appendUserMessage('s-cap', 'm4', user('d'));
      expect(await redis.lrange(keys.order, 0, -1)).toEqual(['m3', 'm4']);
      expect((await redis.hkeys(keys.messages)).filter((f) => f.startsWith('m1:') || f.startsWith('m2:'))).toEqual([]);
      expect((await small.history('s-cap')).map((m) => `${m.messageId}:${m.role}`)).toEqual(['m3:user', 'm4:user']);
      // m3 is still queued: nothing after it is dropped either
      await small.appendUserMessage('s-cap', 'm5', user('e'));
      expect(await redis.lrange(keys.order, 0, -1)).toEqual(['m3', 'm4', 'm5']);
      expect(await redis.ttl(keys.order)).toBeGreaterThan(0);
      expect(await redis.ttl(keys.messages)).toBeGreaterThan(0);
    });
  });

  describe('clear', () => {
    it('deletes the conversation with its event log and returns the unfinished messages and every logged id', async () => {
      const keys = sessionKeys('s-clear');
      await store.appendUserMessage('s-clear', 'm1', user('a'));
      await store.markUserAnnounced('s-clear', 'm1');
      await store.finish('s-clear', 'm1', 'completed', answer);
      await store.markAnnounced('s-clear', 'm1', '1-0');
      await store.appendUserMessage('s-clear', 'm2', user('b'));
      await store.bindClientMessageId('s-clear', 'c1', 'm2');
      // more than one page of the script's read
      const logged: string[] = [];
      for (let i = 1; i <= 2500; i++) logged.push(String(await redis.xadd(keys.events, `${i}-1`, 'data', 'text')));
      const cleared = await store.clear('s-clear');
      expect(cleared.unfinished).toEqual(['m2']);
      expect(cleared.eventIds).toEqual(logged);
      expect(await redis.exists(keys.order, keys.messages, keys.clientIds, keys.events)).toBe(0);
      // the mark that keeps events still on their way out of the log, for an hour
      expect(await redis.ttl(keys.deleted)).toBeGreaterThan(3500);
      expect(await redis.exists(keys.revoked)).toBe(0); // no tokens to revoke unless asked
      expect(await store.clear('s-clear', 600)).toEqual({ unfinished: [], eventIds: [] });
      expect(await redis.ttl(keys.revoked)).toBeGreaterThan(590);
    });
  });

  describe('marks', () => {
    it('never recreate a cleared conversation (it would have no expiry)', async () => {
      await store.appendUserMessage('s-mark', 'm1', user('a'));
      await store.markUserAnnounced('s-mark', 'm1');
      expect((await store.turn('s-mark', 'm1')).userAnnounced).toBe(true);
      await store.clear('s-mark');
      await store.markUserAnnounced('s-mark', 'm1');
      await store.markAnnounced('s-mark', 'm1', '1-0');
      expect(await redis.exists(sessionKeys('s-mark').messages)).toBe(0);
    });
  });

  describe('turn', () => {
    it('starts a message when asked, only once it is ready, announced, not ended and not cancelled', async () => {
      await store.appendUserMessage('s-go', 'm1', user('a'));
      await store.appendUserMessage('s-go', 'm2', user('b'));
      // not announced yet: not started
      expect((await store.turn('s-go', 'm1', { start: true })).started).toBe(null);
      expect(await store.getStatus('s-go', 'm1')).toBe('queued');
      await store.markUserAnnounced('s-go', 'm1');
      await store.markUserAnnounced('s-go', 'm2');
      // m2 is not ready (m1 is open): not started
      expect((await store.turn('s-go', 'm2', { start: true })).started).toBe(null);
      expect(await store.getStatus('s-go', 'm2')).toBe('queued');
      // without the option nothing is started
      expect((await store.turn('s-go', 'm1')).started).toBe(null);
      expect(await store.getStatus('s-go', 'm1')).toBe('queued');
      const go = await store.turn('s-go', 'm1', { start: true });
      expect(go).toMatchObject({ ready: true, started: 'started' });
      expect(await store.getStatus('s-go', 'm1')).toBe('streaming');
      expect((await store.history('s-go')).find((m) => m.messageId === 'm1' && m.role === 'assistant')).toMatchObject({
        content: '',
        status: 'streaming',
      });
      // a cancel recorded while it ran refuses a restart (a redelivery), as markStreaming does
      expect(await store.requestCancel('s-go', 'm1')).toBe('signal');
      expect((await store.turn('s-go', 'm1', { start: true })).started).toBe('cancel-requested');
      await store.finish('s-go', 'm1', 'cancelled', answer);
      // an ended message is never started again
      expect((await store.turn('s-go', 'm1', { start: true })).started).toBe(null);
      expect(await store.getStatus('s-go', 'm1')).toBe('cancelled');
    });

    it('with announcedOnly, reads only the message itself until it is announced or ended', async () => {
      await store.appendUserMessage('s-poll', 'm1', user('a'));
      await store.appendUserMessage('s-poll', 'm2', user('b'));
      // ready (first message) but not announced: not looked at, not started
      expect(await store.turn('s-poll', 'm1', { start: true, announcedOnly: true })).toEqual({
        status: 'queued',
        userAnnounced: false,
        ready: false,
        started: null,
        context: [],
      });
      expect(await store.getStatus('s-poll', 'm1')).toBe('queued');
      expect(await store.turn('s-poll', 'unknown', { announcedOnly: true })).toEqual({
        status: null,
        userAnnounced: false,
        ready: null,
        started: null,
        context: [],
      });
      await store.markUserAnnounced('s-poll', 'm1');
      expect(await store.turn('s-poll', 'm1', { start: true, announcedOnly: true })).toMatchObject({
        userAnnounced: true,
        ready: true,
        started: 'started',
      });
      await store.finish('s-poll', 'm1', 'completed', answer);
      await store.markAnnounced('s-poll', 'm1', '1-1');
      // an ended message is read in full even without its mark (a redelivery announces its outcome)
      await store.finish('s-poll', 'm2', 'cancelled', answer);
      expect(await store.turn('s-poll', 'm2', { announcedOnly: true })).toMatchObject({
        status: 'cancelled',
        userAnnounced: false,
        ready: true,
      });
    });

    it('is ready for the first message and null for one not in the history', async () => {
      await store.appendUserMessage('s-first', 'm1', user('a'));
      expect(await store.turn('s-first', 'm1')).toEqual({
        status: 'queued',
        userAnnounced: false,
        ready: true,
        started: null,
        context: [],
      });
      await store.markUserAnnounced('s-first', 'm1');
      expect((await store.turn('s-first', 'm1')).userAnnounced).toBe(true);
      expect(await store.turn('s-first', 'unknown')).toEqual({
        status: null,
        userAnnounced: false,
        ready: null,
        started: null,
        context: [],
      });
    });

    it('waits while an earlier message is queued or streaming', async () => {
      await store.appendUserMessage('s-open', 'm1', user('a'));
      await store.appendUserMessage('s-open', 'm2', user('b'));
      expect((await store.turn('s-open', 'm2')).ready).toBe(false);
      await store.markStreaming('s-open', 'm1');
      expect((await store.turn('s-open', 'm2')).ready).toBe(false);
    });

    // The race CI once caught: the next chat.started went out before the earlier chat.completed.
    it('waits for an ended earlier message until its final event is announced', async () => {
      await store.appendUserMessage('s-ann', 'm1', user('a'));
      await store.appendUserMessage('s-ann', 'm2', user('b'));
      await store.appendUserMessage('s-ann', 'm3', user('c'));
      expect(await store.finish('s-ann', 'm1', 'completed', answer)).toBe('applied');
      expect((await store.turn('s-ann', 'm2')).ready).toBe(false);
      await store.markAnnounced('s-ann', 'm1', '1-0');
      expect((await store.turn('s-ann', 'm2')).ready).toBe(true);
      expect((await store.turn('s-ann', 'm3')).ready).toBe(false);
      await store.finish('s-ann', 'm2', 'failed', { ...answer, error: { code: 'model_error', message: 'x' } });
      expect((await store.turn('s-ann', 'm3')).ready).toBe(false);
      await store.markAnnounced('s-ann', 'm2', '2-0');
      expect((await store.turn('s-ann', 'm3')).ready).toBe(true);
    });

    it('reads long conversations in chunks (more than 1,000 fields) and still finds an open one', async () => {
      const big = new ChatHistoryStore(
        connections,
        new AppConfig(validateEnvironment({ REDIS_URL: testRedisUrl(), HISTORY_MAX_MESSAGES: '2000', CONTEXT_MAX_MESSAGES: '4' })),
      );
      const sid = 's-long';
      const ids = Array.from({ length: 700 }, (_, i) => `m${i}`);
      await Promise.all(ids.map((id, i) => big.appendUserMessage(sid, id, user(`q${i}`)))); // one connection: in order
      await Promise.all(
        ids
          .slice(0, 699)
          .flatMap((id, i) => [
            big.finish(sid, id, 'completed', { ...answer, content: `a${i}` }),
            big.markAnnounced(sid, id, `${i + 1}-0`),
          ]),
      );
      const last = await big.turn(sid, 'm699');
      expect(last.ready).toBe(true);
      expect(last.context).toEqual([
        { role: 'user', content: 'q697' },
        { role: 'assistant', content: 'a697' },
        { role: 'user', content: 'q698' },
        { role: 'assistant', content: 'a698' },
      ]);
      // one message early in the conversation still open: everything after it waits
      await redis.hset(sessionKeys(sid).messages, 'm3:status', 'streaming');
      expect((await big.turn(sid, 'm699')).ready).toBe(false);
    });

    it('does not wait for an earlier message taken back (its send failed)', async () => {
      await store.appendUserMessage('s-rm', 'm1', user('a'));
      await store.appendUserMessage('s-rm', 'm2', user('b'));
      await store.remove('s-rm', 'm1');
      expect((await store.turn('s-rm', 'm2')).ready).toBe(true);
    });

    it('returns the completed exchanges before the message, newest CONTEXT_MAX_MESSAGES kept', async () => {
      const sid = 's-ctx';
      for (const [id, text] of [
        ['m1', 'one'],
        ['m2', 'two'],
        ['m3', 'three'],
        ['m4', 'four'],
      ])
        await store.appendUserMessage(sid, id, user(text));
      await store.finish(sid, 'm1', 'completed', { ...answer, content: 'ONE' });
      await store.finish(sid, 'm2', 'failed', { ...answer, content: '', error: { code: 'model_error', message: 'x' } });
      await store.finish(sid, 'm3', 'completed', { ...answer, content: 'THREE' });
      for (const id of ['m1', 'm2', 'm3']) await store.markAnnounced(sid, id, '1-0');
      const { ready, context } = await store.turn(sid, 'm4');
      expect(ready).toBe(true);
      expect(context).toEqual([
        { role: 'user', content: 'one' },
        { role: 'assistant', content: 'ONE' },
        { role: 'user', content: 'three' },
        { role: 'assistant', content: 'THREE' },
      ]);
      expect((await store.turn(sid, 'm3')).context).toEqual([
        { role: 'user', content: 'one' },
        { role: 'assistant', content: 'ONE' },
      ]);
      expect((await store.turn(sid, 'm1')).context).toEqual([]);

      const three = new ChatHistoryStore(
        connections,
        new AppConfig(validateEnvironment({ REDIS_URL: testRedisUrl(), CONTEXT_MAX_MESSAGES: '3' })),
      );
      expect((await three.turn(sid, 'm4')).context).toEqual([
        { role: 'assistant', content: 'ONE' },
        { role: 'user', content: 'three' },
        { role: 'assistant', content: 'THREE' },
      ]);
    });
  });
});
