import { HttpException, Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { eventually } from '../../test/support/eventually';
import { appConnections, freshRedis, testRedisUrl } from '../../test/support/test-redis';
import { AppConfig } from '../config/app-config';
import { validateEnvironment } from '../config/environment';
import { CancelSignals } from '../event-bus/cancel-signals';
import { DeadLetters } from '../event-bus/dead-letters';
import { decodeCommand, decodeEvent, DeliveredEvent } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { SessionEventLog } from '../event-bus/session-event-log';
import { GLOBAL_KEYS, KeyLayout, WORKER_GROUP } from '../event-bus/stream-names';
import { parseRangeReply, parseReadReply } from '../event-bus/stream-reply';
import { WorkerRegistry } from '../event-bus/worker-registry';
import { MessageRef, MessageStore } from '../history/message-store';
import { RetryLaterException, SendLimits } from '../limits/send-limits.service';
import { Metrics } from '../observability/metrics.service';
import { ModelCatalog } from '../ai/model-catalog';
import { MockProvider } from '../ai/providers/mock.provider';
import { ChatService } from './chat.service';

describe('ChatService (real Redis)', () => {
  let redis: Redis;
  let connections: RedisConnections;
  let config: AppConfig;
  let layout: KeyLayout;
  let store: MessageStore;
  let metrics: Metrics;
  /** Set by a test to make the rate limits refuse. */
  let refuseRate: Error | null = null;

  /** A ChatService over the shared connections, with its own config when given. */
  function service(withConfig = config): ChatService {
    // The limits are not under test here (they have their own e2e tests): they refuse when told to.
    const limits = { check: () => (refuseRate ? Promise.reject(refuseRate) : Promise.resolve()) } as unknown as SendLimits;
    const messages = new MessageStore(connections, withConfig, layout);
    return new ChatService(
      messages,
      withConfig,
      limits,
      new SessionEventLog(connections, layout),
      new CancelSignals(connections, layout),
      new WorkerRegistry(connections, withConfig),
      new DeadLetters(connections, withConfig, layout),
      connections,
      layout,
      metrics,
      new ModelCatalog(new MockProvider(0, withConfig.ai.model), withConfig),
    );
  }

  beforeAll(async () => {
    Logger.overrideLogger(['error']);
    redis = await freshRedis();
    const app = await appConnections();
    config = app.config;
    connections = app.connections;
    layout = new KeyLayout(config.redis.partitions);
    store = new MessageStore(connections, config, layout);
    metrics = new Metrics(connections, layout);
  });

  afterEach(() => {
    refuseRate = null;
  });

  afterAll(async () => {
    await connections.onApplicationShutdown();
    await redis.quit();
  });

  const newSession = () => `s-${randomUUID()}`;

  async function eventsOf(sessionId: string): Promise<DeliveredEvent[]> {
    const entries = parseRangeReply(await redis.xrange(layout.partitionOf(sessionId).outgoing, '-', '+'));
    return entries.flatMap((entry) => {
      const decoded = decodeEvent(entry.fields);
      return decoded.ok && decoded.value.payload.sessionId === sessionId ? [{ ...decoded.value, eventId: entry.id }] : [];
    });
  }

  async function commandsOf(sessionId: string): Promise<{ entryId: string; ref: MessageRef }[]> {
    const entries = parseRangeReply(await redis.xrange(layout.partitionOf(sessionId).incoming, '-', '+'));
    return entries.flatMap((entry) => {
      const decoded = decodeCommand(entry.fields);
      return decoded.ok && decoded.value.payload.sessionId === sessionId ? [{ entryId: entry.id, ref: decoded.value.payload }] : [];
    });
  }

  /** Starts the session's head as worker `consumer` would. */
  async function startAs(sessionId: string, consumer: string): Promise<{ ref: MessageRef; attempt: number }> {
    const partition = layout.partitionOf(sessionId);
    await redis.xgroup('CREATE', partition.incoming, WORKER_GROUP, '0', 'MKSTREAM').catch(() => undefined);
    const read = parseReadReply(await redis.xreadgroup('GROUP', WORKER_GROUP, consumer, 'COUNT', 100, 'STREAMS', partition.incoming, '>'));
    for (const entry of read) {
      const decoded = decodeCommand(entry.fields);
      if (!decoded.ok || decoded.value.payload.sessionId !== sessionId) continue;
      const started = await store.start(decoded.value.payload, entry.id, consumer, null);
      if (started.result === 'started') return { ref: decoded.value.payload, attempt: started.attempt };
    }
    throw new Error('nothing to start');
  }

  async function refusal(work: Promise<unknown>): Promise<HttpException> {
    try {
      await work;
    } catch (err) {
      if (err instanceof HttpException) return err;
      throw err;
    }
    throw new Error('not refused');
  }

  describe('send', () => {
    it('stores the message, queues it for the workers and announces it, in one step', async () => {
      const sessionId = newSession();
      const sent = await service().send({ sessionId, content: 'hello', think: 'high' });
      expect(Object.keys(sent).sort()).toEqual(['messageId', 'sessionId', 'status']);
      expect(sent).toMatchObject({ sessionId, status: 'queued' });
      expect((await commandsOf(sessionId)).map((c) => c.ref)).toEqual([{ sessionId, messageId: sent.messageId }]);
      expect((await eventsOf(sessionId)).map((e) => e.type)).toEqual(['chat.user_message']);
      expect(await store.history(sessionId)).toEqual([
        expect.objectContaining({ messageId: sent.messageId, role: 'user', content: 'hello', status: 'queued' }),
      ]);
      expect(JSON.parse((await redis.hget(layout.session(sessionId).hash, `${sent.messageId}:user`)) ?? '{}') as unknown).toMatchObject({
        think: 'high',
      });
    });

    it('refuses content over MAX_MESSAGE_CHARS', async () => {
      const long = 'x'.repeat(config.limits.maxMessageChars + 1);
      expect((await refusal(service().send({ sessionId: newSession(), content: long }))).getStatus()).toBe(400);
    });

    it('answers a repeated clientMessageId with the first messageId, even when the rate limit would refuse', async () => {
      const sessionId = newSession();
      const chat = service();
      const first = await chat.send({ sessionId, content: 'hi', clientMessageId: 'c-1' });
      refuseRate = new RetryLaterException(429, 'rate limit', 30);
      expect(await chat.send({ sessionId, content: 'hi', clientMessageId: 'c-1' })).toEqual(first);
      // a new message is refused by the limit
      expect((await refusal(chat.send({ sessionId, content: 'hi', clientMessageId: 'c-2' }))).getStatus()).toBe(429);
      refuseRate = null;
      expect((await chat.send({ sessionId, content: 'hi', clientMessageId: 'c-2' })).messageId).not.toBe(first.messageId);
      expect((await eventsOf(sessionId)).filter((e) => e.type === 'chat.user_message')).toHaveLength(2);
    });

    it('refuses a deleted session with 401', async () => {
      const sessionId = newSession();
      const chat = service();
      await chat.send({ sessionId, content: 'hi' });
      await chat.clear(sessionId, 60);
      const refused = await refusal(chat.send({ sessionId, content: 'again' }));
      expect(refused.getStatus()).toBe(401);
      expect(refused.message).toBe('invalid token: its session was deleted');
    });

    it("refuses with 503 and Retry-After when the partition's backlog is full, and with 429 when the session's queue is", async () => {
      const tight = new AppConfig(validateEnvironment({ REDIS_URL: testRedisUrl(), MAX_BACKLOG: '128', MAX_QUEUED_PER_SESSION: '1' }));
      const chat = service(tight);
      // two per partition (128 / 64)
      const sessionId = newSession();
      await chat.send({ sessionId, content: '1' });
      await chat.send({ sessionId, content: '2' });
      const full = await refusal(chat.send({ sessionId: sessionId, content: '3' }));
      expect(full).toBeInstanceOf(RetryLaterException);
      expect(full.getStatus()).toBe(503);
      expect(full.message).toMatch(/busy \(2 messages waiting\)/);
      expect((full as RetryLaterException).retryAfterSeconds).toBeGreaterThan(0);

      const roomy = service(new AppConfig(validateEnvironment({ REDIS_URL: testRedisUrl(), MAX_QUEUED_PER_SESSION: '1' })));
      const other = newSession();
      await roomy.send({ sessionId: other, content: '1' });
      await roomy.send({ sessionId: other, content: '2' });
      const queueFull = await refusal(roomy.send({ sessionId: other, content: '3' }));
      expect(queueFull).toBeInstanceOf(RetryLaterException);
      expect(queueFull.getStatus()).toBe(429);
      expect(queueFull.message).toMatch(/MAX_QUEUED_PER_SESSION=1/);
      expect((queueFull as RetryLaterException).retryAfterSeconds).toBeGreaterThan(0);
    });
  });

  describe('cancel', () => {
    it('404s an unknown message and leaves an ended one as it is', async () => {
      const sessionId = newSession();
      const chat = service();
      expect((await refusal(chat.cancel(sessionId, 'nope'))).getStatus()).toBe(404);
      const { messageId } = await chat.send({ sessionId, content: 'hi' });
      await chat.cancel(sessionId, messageId);
      await chat.cancel(sessionId, messageId);
      expect((await eventsOf(sessionId)).filter((e) => e.type === 'chat.cancelled')).toHaveLength(1);
    });

    it('signals the worker of a running message when it is alive, and leaves the ending to it', async () => {
      const sessionId = newSession();
      const chat = service();
      await chat.send({ sessionId, content: 'hi' });
      const held = await startAs(sessionId, 'w-alive');
      await new WorkerRegistry(connections, config).heartbeat('w-alive');
      const subscriber = redis.duplicate();
      const signals: string[] = [];
      try {
        subscriber.on('smessage', (_channel: string, message: string) => signals.push(message));
        await subscriber.ssubscribe(layout.partitionOf(sessionId).cancel);
        await chat.cancel(sessionId, held.ref.messageId);
        await eventually(
          () => signals.length,
          (n) => n === 1,
        );
        expect(JSON.parse(signals[0])).toMatchObject(held.ref);
        expect((await eventsOf(sessionId)).map((e) => e.type)).not.toContain('chat.cancelled');
        expect(await redis.hget(layout.session(sessionId).hash, `${held.ref.messageId}:status`)).toBe('streaming');
      } finally {
        subscriber.disconnect();
        await redis.zrem(GLOBAL_KEYS.workers, 'w-alive');
      }
    });

    it('ends a running message at once when its worker is not alive', async () => {
      const sessionId = newSession();
      const chat = service();
      await chat.send({ sessionId, content: 'hi' });
      const held = await startAs(sessionId, 'w-dead');
      await store.emit(
        held.ref,
        held.attempt,
        { type: 'chat.delta', payload: { ...held.ref, delta: 'part' } },
        {
          content: 'part',
          createdAt: new Date().toISOString(),
        },
      );
      await chat.cancel(sessionId, held.ref.messageId);
      expect((await eventsOf(sessionId)).at(-1)).toMatchObject({ type: 'chat.cancelled', payload: held.ref });
      expect((await store.history(sessionId)).find((m) => m.role === 'assistant')).toMatchObject({ content: 'part', status: 'cancelled' });
    });
  });

  describe('clear', () => {
    it('cancels what is unfinished, tells running workers to stop, and deletes the dead letters', async () => {
      const sessionId = newSession();
      const chat = service();
      await chat.send({ sessionId, content: 'one' });
      await chat.send({ sessionId, content: 'two' });
      const held = await startAs(sessionId, 'w-1');
      const dead = layout.partitionOf(sessionId).dead;
      await redis.xadd(
        dead,
        '*',
        'v',
        '1',
        'type',
        'chat.dead_letter',
        'data',
        JSON.stringify({ sessionId, messageId: 'old', reason: 'x' }),
      );
      const subscriber = redis.duplicate();
      const signals: string[] = [];
      try {
        subscriber.on('smessage', (_channel: string, message: string) => signals.push(message));
        await subscriber.ssubscribe(layout.partitionOf(sessionId).cancel);
        await chat.clear(sessionId, 0);
        await eventually(
          () => signals.length,
          (n) => n === 1,
        );
        expect(JSON.parse(signals[0])).toMatchObject(held.ref);
      } finally {
        subscriber.disconnect();
      }
      expect((await eventsOf(sessionId)).filter((e) => e.type !== 'chat.status').map((e) => e.type)).toEqual([
        'chat.cancelled',
        'chat.cancelled',
      ]);
      expect(JSON.stringify(await redis.xrange(dead, '-', '+'))).not.toContain(sessionId);
      expect(await store.history(sessionId)).toEqual([]);
    });
  });

  describe('getHistory', () => {
    it("gives the newest event id of the session's log, or where a streaming answer's content reaches", async () => {
      const sessionId = newSession();
      const chat = service();
      expect(await chat.getHistory(sessionId)).toEqual({ messages: [], lastEventId: null });
      await chat.send({ sessionId, content: 'one' });
      const [userMessage] = await eventsOf(sessionId);
      expect((await chat.getHistory(sessionId)).lastEventId).toBe(userMessage.eventId);
      const held = await startAs(sessionId, 'w-1');
      const emitted = await store.emit(
        held.ref,
        held.attempt,
        { type: 'chat.delta', payload: { ...held.ref, delta: 'Hel' } },
        {
          content: 'Hel',
          createdAt: new Date().toISOString(),
        },
      );
      await store.emit(held.ref, held.attempt, { type: 'chat.delta', payload: { ...held.ref, delta: 'lo' } });
      if (emitted.result !== 'emitted') throw new Error(emitted.result);
      const history = await chat.getHistory(sessionId);
      expect(history.lastEventId).toBe(emitted.eventId);
      expect(history.messages.find((m) => m.role === 'assistant')).toMatchObject({
        content: 'Hel',
        status: 'streaming',
        resumeFrom: emitted.eventId,
      });
    });
  });
});
