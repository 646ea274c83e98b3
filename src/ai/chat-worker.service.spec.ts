import { expect } from '@jest/globals';
import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { eventually } from '../../test/support/eventually';
import { freshRedis, groupConsumers, pendingCount, pendingEntries, testRedisUrl, workerHeartbeats } from '../../test/support/test-redis';
import { within } from '../../test/support/within';
import { AppConfig } from '../config/app-config';
import { validateEnvironment } from '../config/environment';
import { DeadLetters } from '../event-bus/dead-letters';
import { decodeOutgoing, DeliveredEvent } from '../event-bus/envelopes';
import { partitionOf } from '../event-bus/partitions';
import { RedisConnections } from '../event-bus/redis-connections';
import { parseRangeReply } from '../event-bus/stream-reply';
import { GLOBAL_KEYS, KeyLayout } from '../event-bus/stream-names';
import { WorkerGroup } from '../event-bus/worker-group';
import { WorkerRegistry } from '../event-bus/worker-registry';
import { MessageRef, MessageStore } from '../history/message-store';
import { Metrics } from '../observability/metrics.service';
import { CancelListener } from './cancel-listener';
import { ChatWorker } from './chat-worker.service';
import { ContextBudget } from './context-budget';
import { MessageRunner } from './message-runner';
import { TitleWriter } from './title-writer';
import { AiProvider, GenerationChunk, GenerationRequest, ProviderHealth } from './providers/ai-provider';
import { pause } from '../event-bus/stream-tail';

/**
 * ChatWorker against a real Redis, built from the real providers (no Nest app): messages are sent
 * with MessageStore.send, read by the worker through the `ai-workers` groups and run by the real
 * MessageRunner; only the model is ours. Each test starts on an empty database (chat:workers is global).
 */

/**
 * A model that answers `re: <the user's text>` in `chunks` pieces `every` ms apart, honouring the
 * abort signal, and records which messages it was asked, in order.
 */
class SlowProvider implements AiProvider {
  readonly name = 'slow';
  readonly asked: string[] = [];

  constructor(
    private readonly chunks: number,
    private readonly every: number,
    private readonly onAsk: (content: string) => Promise<void> = () => Promise.resolve(),
  ) {}

  async *stream(request: GenerationRequest, signal: AbortSignal): AsyncIterable<GenerationChunk> {
    const content = request.messages[request.messages.length - 1].content;
    this.asked.push(content);
    await this.onAsk(content);
    for (let i = 0; i < this.chunks; i++) {
      if (!(await pause(this.every, signal))) return;
      yield { kind: 'content', text: i === 0 ? `re: ${content}` : '.' };
    }
    yield { kind: 'done', usage: { promptTokens: 1, completionTokens: this.chunks } };
  }

  listModels(): Promise<string[]> {
    return Promise.resolve([]);
  }

  health(): Promise<ProviderHealth> {
    return Promise.resolve({ ok: true, message: 'ok', details: {} });
  }
}

/** A model that sends one token and then hangs, deaf to the abort signal, until `release()`. */
class HangingProvider implements AiProvider {
  readonly name = 'hanging';
  private readonly released: Promise<void>;
  release: () => void = () => undefined;

  constructor() {
    this.released = new Promise((resolve) => (this.release = resolve));
  }

  async *stream(): AsyncIterable<GenerationChunk> {
    yield { kind: 'content', text: 'starting' };
    await this.released;
  }

  listModels(): Promise<string[]> {
    return Promise.resolve([]);
  }

  health(): Promise<ProviderHealth> {
    return Promise.resolve({ ok: true, message: 'ok', details: {} });
  }
}

interface Fixture {
  config: AppConfig;
  connections: RedisConnections;
  keys: KeyLayout;
  store: MessageStore;
  group: WorkerGroup;
  worker: ChatWorker;
}

const FINAL = new Set(['chat.completed', 'chat.failed', 'chat.cancelled']);

describe('ChatWorker (real Redis)', () => {
  let redis: Redis;
  const fixtures: Fixture[] = [];
  const hanging: HangingProvider[] = [];

  /** The worker and everything it runs on, as the AI module builds them, with `provider` as the model. */
  async function build(provider: AiProvider, env: Record<string, string> = {}, connect = true): Promise<Fixture> {
    const config = new AppConfig(
      validateEnvironment({
        REDIS_URL: testRedisUrl(),
        WORKER_ENABLED: 'false',
        WORKER_CONCURRENCY: '1',
        DELTA_COALESCE_MS: '0',
        TITLES: 'false',
        ...env,
      }),
    );
    const connections = new RedisConnections(config);
    if (connect) await connections.onModuleInit();
    const keys = new KeyLayout(config.redis.partitions);
    const store = new MessageStore(connections, config, keys);
    const group = new WorkerGroup(connections, keys);
    const cancels = new CancelListener(connections);
    const runner = new MessageRunner(
      store,
      group,
      new DeadLetters(connections, config, keys),
      cancels,
      config,
      provider,
      new Metrics(connections, keys),
      new ContextBudget(config),
      new TitleWriter(provider, store, config),
    );
    const worker = new ChatWorker(config, connections, group, new WorkerRegistry(connections, config), runner, cancels, keys);
    const fixture = { config, connections, keys, store, group, worker };
    fixtures.push(fixture);
    return fixture;
  }

  beforeAll(async () => {
    Logger.overrideLogger(['error']);
    redis = await freshRedis();
  });

  beforeEach(async () => {
    await redis.flushdb();
  });

  afterEach(async () => {
    for (const h of hanging.splice(0)) h.release();
    for (const f of fixtures.splice(0)) {
      await within(f.worker.stop(), 3000);
      await f.connections.onApplicationShutdown();
    }
  });

  afterAll(async () => {
    await redis.quit();
  });

  async function send(store: MessageStore, sessionId: string, content: string): Promise<MessageRef> {
    const ref = { sessionId, messageId: `m-${randomUUID()}` };
    const sent = await store.send(ref, null, { content, createdAt: new Date().toISOString() });
    expect(sent.result).toBe('queued');
    return ref;
  }

  async function eventsOf(keys: KeyLayout, sessionId: string): Promise<DeliveredEvent[]> {
    const raw: unknown = await redis.xrange(keys.partitionOf(sessionId).outgoing, '-', '+');
    const events: DeliveredEvent[] = [];
    for (const entry of parseRangeReply(raw)) {
      const decoded = decodeOutgoing(entry.id, entry.fields);
      if (decoded.ok && decoded.value.payload.sessionId === sessionId) events.push(decoded.value);
    }
    return events;
  }

  /** A session id of the given partition (of the default 64). */
  function sessionIn(partition: number): string {
    for (;;) {
      const id = `s-${randomUUID()}`;
      if (partitionOf(id, 64) === partition) return id;
    }
  }

  // First: the connections it opened to a closed port linger ~2 s (ioredis's disconnect timeout) after it stops.
  it('stops within 3 s when Redis is unreachable', async () => {
    const f = await build(new SlowProvider(1, 10), { REDIS_URL: 'redis://127.0.0.1:1' }, false);
    f.worker.start();
    await new Promise((r) => setTimeout(r, 300));
    const began = Date.now();
    expect(await within(f.worker.stop(), 3000)).toBe('done');
    expect(Date.now() - began).toBeLessThan(3000);
  });

  describe('no head-of-line blocking across sessions (one worker, concurrency 1)', () => {
    // Where the two sessions live matters to how the worker reads: one stream, or two streams read
    // in a rotating order (session A's partition first, or session B's).
    it.each([
      ['the same partition', 21, 21],
      ["different partitions, A's first", 3, 40],
      ["different partitions, B's first", 40, 3],
    ])("starts B's one message before A's third of five slow ones (%s)", async (_where, partitionA, partitionB) => {
      const [a, b] = [sessionIn(partitionA), sessionIn(partitionB)];
      /** messageId -> A1..A5, B1 */
      const labels = new Map<string, string>();
      const labelOf = (fields: string[]) => {
        const { messageId } = JSON.parse(fields[fields.indexOf('data') + 1]) as { messageId: string };
        return labels.get(messageId) ?? messageId;
      };
      let heldWhileA1: { pending: number; inStreams: string[]; waitingInA: number } | null = null;
      const provider = new SlowProvider(4, 40, async (content) => {
        if (content !== 'A1') return;
        const entries = await Promise.all(f.keys.partitions.map(async (p) => parseRangeReply(await redis.xrange(p.incoming, '-', '+'))));
        heldWhileA1 = {
          pending: (await pendingEntries(redis)).length,
          inStreams: entries.flat().map((e) => labelOf(e.fields)),
          waitingInA: await redis.llen(f.keys.session(a).queue),
        };
      });
      const f = await build(provider);
      const refsA: MessageRef[] = [];
      for (let i = 1; i <= 5; i++) {
        refsA.push(await send(f.store, a, `A${i}`));
        labels.set(refsA[i - 1].messageId, `A${i}`);
      }
      const refB = await send(f.store, b, 'B1');
      labels.set(refB.messageId, 'B1');

      f.worker.start();
      await eventually(
        async () =>
          (await eventsOf(f.keys, a)).filter((e) => FINAL.has(e.type)).length +
          (await eventsOf(f.keys, b)).filter((e) => FINAL.has(e.type)).length,
        (n) => n === 6,
        8000,
      );

      // the worker held one message at a time; A's later messages waited in A's queue, in no stream
      expect(heldWhileA1).toMatchObject({ pending: 1, waitingInA: 4 });
      expect(heldWhileA1!.inStreams.filter((m) => m !== 'A1' && m !== 'B1')).toEqual([]);
      expect(provider.asked.filter((c) => c.startsWith('A'))).toEqual(['A1', 'A2', 'A3', 'A4', 'A5']);
      expect(provider.asked.indexOf('B1')).toBeLessThan(provider.asked.indexOf('A3'));

      // per-session order: each of A's messages starts after the previous one's final event
      const eventsA = await eventsOf(f.keys, a);
      const order = eventsA.filter((e) => e.type === 'chat.started' || FINAL.has(e.type)).map((e) => `${e.type}:${e.payload.messageId}`);
      expect(order).toEqual(refsA.flatMap((r) => [`chat.started:${r.messageId}`, `chat.completed:${r.messageId}`]));
      const eventsB = await eventsOf(f.keys, b);
      expect(eventsB.filter((e) => FINAL.has(e.type)).map((e) => `${e.type}:${e.payload.messageId}`)).toEqual([
        `chat.completed:${refB.messageId}`,
      ]);
    });
  });

  it('runs a message again above the lost attempt when Redis lost its start (failover to a replica that missed it)', async () => {
    let f: Fixture | null = null;
    let rewound = false;
    const provider = new SlowProvider(4, 50, async () => {
      if (rewound || !f) return;
      rewound = true;
      // the promoted replica never received `start`: the message is queued again, with no attempt
      const hash = f.keys.session(ref.sessionId).hash;
      await redis.hset(hash, `${ref.messageId}:status`, 'queued');
      await redis.hdel(hash, `${ref.messageId}:attempt`);
    });
    f = await build(provider);
    const ref = await send(f.store, sessionIn(5), 'again');
    f.worker.start();
    await eventually(
      async () => (await eventsOf(f.keys, ref.sessionId)).filter((e) => FINAL.has(e.type)).map((e) => e.type),
      (finals) => finals.length > 0,
      10_000,
    );
    const events = await eventsOf(f.keys, ref.sessionId);
    expect(events.filter((e) => FINAL.has(e.type)).map((e) => e.type)).toEqual(['chat.completed']);
    // attempt 2 announces itself: a client that saw attempt 1 discards what it streamed
    expect(events.filter((e) => e.type === 'chat.started').map((e) => (e.payload as { attempt: number }).attempt)).toEqual([1, 2]);
    expect(provider.asked).toEqual(['again', 'again']);
    expect((await f.store.history(ref.sessionId)).find((m) => m.role === 'assistant')).toMatchObject({
      content: 're: again...',
      status: 'completed',
    });
    expect(await pendingCount(redis)).toBe(0);
  });

  it("takes over a dead consumer's message within two liveness periods, and removes the dead consumer", async () => {
    const provider = new SlowProvider(3, 20);
    const f = await build(provider, { WORKER_LIVENESS_MS: '400' });
    const ref = await send(f.store, `s-${randomUUID()}`, 'orphan');
    // A worker that read the message, started it (attempt 1), then died without a word.
    const conn = f.connections.openBlocking('dead-consumer-spec');
    await f.group.ensure(conn);
    const [entry] = await f.group.readNew(conn, f.keys.partitions, 'dead-consumer', 100, 0);
    expect(entry).toBeDefined();
    expect((await f.store.start(ref, entry.id, 'dead-consumer', null)).result).toBe('started');
    f.connections.release(conn);
    await redis.zadd(GLOBAL_KEYS.workers, 0, 'dead-consumer');

    const began = Date.now();
    f.worker.start();
    const events = await eventually(
      () => eventsOf(f.keys, ref.sessionId),
      (e) => e.some((x) => x.type === 'chat.started' && x.payload.attempt === 2),
      3000,
    );
    expect(Date.now() - began).toBeLessThan(2 * f.config.worker.livenessMs + 300);
    expect(events.filter((e) => e.type === 'chat.started').map((e) => e.type === 'chat.started' && e.payload.attempt)).toEqual([1, 2]);

    const all = await eventually(
      () => eventsOf(f.keys, ref.sessionId),
      (e) => e.some((x) => FINAL.has(x.type)),
      3000,
    );
    expect(all.filter((e) => FINAL.has(e.type)).map((e) => e.type)).toEqual(['chat.completed']);
    expect((await f.store.history(ref.sessionId))[1]).toMatchObject({ status: 'completed', content: 're: orphan..' });
    expect(await pendingEntries(redis)).toEqual([]);

    // with nothing left pending, the dead consumer leaves every group and chat:workers
    await eventually(
      async () => ({ consumers: (await groupConsumers(redis)).map((c) => c.name), workers: [...(await workerHeartbeats(redis)).keys()] }),
      ({ consumers, workers }) => !consumers.includes('dead-consumer') && !workers.includes('dead-consumer'),
      2000,
    );
  });

  it('stops within the grace period and a bound when a generation never ends: the entry stays pending, the worker marked dead', async () => {
    const model = new HangingProvider();
    hanging.push(model);
    const f = await build(model, { SHUTDOWN_GRACE_MS: '100', WORKER_LIVENESS_MS: '400' });
    const ref = await send(f.store, `s-${randomUUID()}`, 'forever');
    f.worker.start();
    await eventually(
      () => eventsOf(f.keys, ref.sessionId),
      (e) => e.some((x) => x.type === 'chat.delta'),
    );

    const began = Date.now();
    const stopped = await within(f.worker.stop(), 2500);
    expect(stopped).toBe('done');
    expect(Date.now() - began).toBeLessThan(2500);

    const pending = await pendingEntries(redis);
    expect(pending.map((p) => p.consumer)).toEqual([f.worker.consumer]);
    expect((await workerHeartbeats(redis)).get(f.worker.consumer)).toBe(0);
    const events = await eventsOf(f.keys, ref.sessionId);
    expect(events.filter((e) => FINAL.has(e.type))).toEqual([]);

    // marked dead, so a live worker continues the message at once (not after a claim timeout)
    const next = await build(new SlowProvider(2, 10), { WORKER_LIVENESS_MS: '400' });
    const handedOver = Date.now();
    next.worker.start();
    const after = await eventually(
      () => eventsOf(f.keys, ref.sessionId),
      (e) => e.some((x) => FINAL.has(x.type)),
      3000,
    );
    expect(Date.now() - handedOver).toBeLessThan(1500);
    expect(after.filter((e) => FINAL.has(e.type)).map((e) => e.type)).toEqual(['chat.completed']);
    expect(after.filter((e) => e.type === 'chat.started').map((e) => e.type === 'chat.started' && e.payload.attempt)).toEqual([1, 2]);
  });
});
