import { expect } from '@jest/globals';
import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import type { RedisClient } from '../event-bus/redis-client';
import { randomUUID } from 'node:crypto';
import { eventually } from '../../test/support/eventually';
import { appConnections, freshRedis, pendingEntries } from '../../test/support/test-redis';
import { within } from '../../test/support/within';
import { AppConfig } from '../config/app-config';
import { validateEnvironment } from '../config/environment';
import { DeadLetters } from '../event-bus/dead-letters';
import { decodeOutgoing, DeliveredEvent } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { parseRangeReply } from '../event-bus/stream-reply';
import { KeyLayout } from '../event-bus/stream-names';
import { PartitionEntry, WorkerGroup } from '../event-bus/worker-group';
import { MessageRef, MessageStore } from '../history/message-store';
import { Metrics } from '../observability/metrics.service';
import { CancelListener } from './cancel-listener';
import { GenerationError } from './generation-error';
import { countTokens, fixedPromptTokens, MESSAGE_FRAME_TOKENS } from '../history/token-count';
import { ContextBudget } from './context-budget';
import { TitleWriter } from './title-writer';
import { MessageRunner } from './message-runner';
import { AiProvider, GenerationChunk, ProviderHealth } from './providers/ai-provider';
import { pause } from '../event-bus/stream-tail';

/**
 * MessageRunner against a real Redis: every transition goes through the real Lua scripts, messages
 * are sent with `MessageStore.send` and read through the `ai-workers` group, and the events are read
 * back from the partition's outgoing stream. Only the model is scripted (our own AiProvider interface).
 */

/** One step of a scripted generation: a chunk after a pause, or a failure after a pause. */
type Step = { after?: number; chunk: GenerationChunk } | { after?: number; fail: Error };

/** A model that plays `attempts[n]` on its n-th request (the last one again after that), honouring the abort signal. */
class ScriptedProvider implements AiProvider {
  readonly name = 'scripted';
  calls = 0;
  /** The signals of every request, to see which were aborted. */
  readonly signals: AbortSignal[] = [];

  constructor(private readonly attempts: Step[][]) {}

  async *stream(_request: unknown, signal: AbortSignal): AsyncIterable<GenerationChunk> {
    const steps = this.attempts[Math.min(this.calls, this.attempts.length - 1)];
    this.calls++;
    this.signals.push(signal);
    for (const step of steps) {
      if (!(await pause(step.after ?? 0, signal))) return;
      if ('fail' in step) throw step.fail;
      yield step.chunk;
    }
  }

  listModels(): Promise<string[]> {
    return Promise.resolve([]);
  }

  health(): Promise<ProviderHealth> {
    return Promise.resolve({ ok: true, message: 'ok', details: {} });
  }
}

const content = (text: string, after = 20): Step => ({ after, chunk: { kind: 'content', text } });
const thinking = (text: string, after = 20): Step => ({ after, chunk: { kind: 'thinking', text } });
const done = (after = 10): Step => ({ after, chunk: { kind: 'done', usage: { promptTokens: 3, completionTokens: 4 } } });
/** `count` content chunks ` t0 t1 ...`, `every` ms apart, then done: a generation slow enough to interfere with. */
const slow = (count: number, every: number): Step[] => [...Array.from({ length: count }, (_, i) => content(` t${i}`, every)), done()];

const FINAL = new Set(['chat.completed', 'chat.failed', 'chat.cancelled']);

describe('MessageRunner (real Redis)', () => {
  let redis: Redis;
  let reader: RedisClient;
  let config: AppConfig;
  let connections: RedisConnections;
  let keys: KeyLayout;
  let store: MessageStore;
  let group: WorkerGroup;
  let deadLetters: DeadLetters;
  let cancels: CancelListener;
  let metrics: Metrics;

  beforeAll(async () => {
    Logger.overrideLogger(['error']);
    redis = await freshRedis();
    const app = await appConnections();
    // One event per chunk: the deltas seen are exactly the chunks.
    config = new AppConfig(
      validateEnvironment({ REDIS_URL: app.config.redis.url, DELTA_COALESCE_MS: '0', WORKER_MAX_DELIVERIES: '3', TITLES: 'false' }),
    );
    connections = app.connections;
    keys = new KeyLayout(config.redis.partitions);
    store = new MessageStore(connections, config, keys);
    group = new WorkerGroup(connections, keys);
    deadLetters = new DeadLetters(connections, config, keys);
    cancels = new CancelListener(connections);
    metrics = new Metrics(connections, keys);
    reader = connections.openBlocking('message-runner-spec');
    await group.ensure(reader);
  });

  afterAll(async () => {
    cancels.stop();
    await connections.onApplicationShutdown();
    await redis.quit();
  });

  const runner = (provider: AiProvider) =>
    new MessageRunner(
      store,
      group,
      deadLetters,
      cancels,
      config,
      provider,
      metrics,
      new ContextBudget(config),
      new TitleWriter(provider, store, config),
    );

  /** Sends a message to a fresh session and reads its command through the group. */
  async function sendAndDeliver(text = 'hello'): Promise<{ ref: MessageRef; entry: PartitionEntry }> {
    const ref = { sessionId: `s-${randomUUID()}`, messageId: `m-${randomUUID()}` };
    const sent = await store.send(ref, null, { content: text, createdAt: new Date().toISOString() });
    expect(sent.result).toBe('queued');
    for (let i = 0; i < 20; i++) {
      const entries = await group.readNew(reader, keys.partitions, 'runner-spec', 100, i);
      const mine = entries.find((e) => e.fields.join(' ').includes(ref.messageId));
      if (mine) return { ref, entry: mine };
    }
    throw new Error(`the command of ${ref.messageId} was never delivered`);
  }

  /** The session's events, in stream order, from its partition's outgoing stream. */
  async function eventsOf(ref: MessageRef): Promise<DeliveredEvent[]> {
    const raw: unknown = await redis.xrange(keys.partitionOf(ref.sessionId).outgoing, '-', '+');
    const events: DeliveredEvent[] = [];
    for (const entry of parseRangeReply(raw)) {
      const decoded = decodeOutgoing(entry.id, entry.fields);
      if (!decoded.ok) throw new Error(`undecodable event ${entry.id}: ${decoded.reason}`);
      if (decoded.value.payload.sessionId === ref.sessionId) events.push(decoded.value);
    }
    return events;
  }

  const typesOf = (events: DeliveredEvent[]) => events.map((e) => e.type);
  const deltaText = (events: DeliveredEvent[]) =>
    events
      .filter((e) => e.type === 'chat.delta')
      .map((e) => (e.type === 'chat.delta' ? e.payload.delta : ''))
      .join('');
  const finals = (events: DeliveredEvent[]) => events.filter((e) => FINAL.has(e.type));

  async function isPending(entry: PartitionEntry): Promise<boolean> {
    return (await pendingEntries(redis)).some((p) => p.id === entry.id && p.stream === entry.partition.incoming);
  }

  async function inIncoming(entry: PartitionEntry): Promise<boolean> {
    return (await redis.xrange(entry.partition.incoming, entry.id, entry.id)).length > 0;
  }

  /** Waits until the session has an event passing `accept`. */
  const eventSeen = (ref: MessageRef, accept: (e: DeliveredEvent) => boolean) =>
    eventually(
      () => eventsOf(ref),
      (events) => events.some(accept),
    );

  async function deadLettersOf(ref: MessageRef): Promise<Record<string, unknown>[]> {
    const raw: unknown = await redis.xrange(keys.partitionOf(ref.sessionId).dead, '-', '+');
    return parseRangeReply(raw)
      .map((e) => {
        const at = e.fields.indexOf('data');
        return JSON.parse(e.fields[at + 1]) as Record<string, unknown>;
      })
      .filter((letter) => letter.sessionId === ref.sessionId);
  }

  it('runs a message: user_message, started #1, deltas, completed with their text; acked, deleted, completed in history', async () => {
    const { ref, entry } = await sendAndDeliver();
    const provider = new ScriptedProvider([[thinking('hmm'), content('Hel'), content('lo'), content(' world'), done()]]);

    expect(await runner(provider).run(entry, 'runner-spec', new AbortController().signal)).toBe('done');

    const events = await eventsOf(ref);
    expect(typesOf(events)).toEqual([
      'chat.user_message',
      'chat.started',
      'chat.thinking',
      'chat.delta',
      'chat.delta',
      'chat.delta',
      'chat.completed',
    ]);
    const started = events[1];
    expect(started.type === 'chat.started' && started.payload.attempt).toBe(1);
    const completed = events[events.length - 1];
    expect(completed.type === 'chat.completed' && completed.payload.content).toBe('Hello world');
    expect(deltaText(events)).toBe('Hello world');
    expect(completed.type === 'chat.completed' && completed.payload.thinking).toBe('hmm');

    // acknowledged and deleted from the partition's incoming stream; out of the backlog
    expect(await isPending(entry)).toBe(false);
    expect(await inIncoming(entry)).toBe(false);
    expect(await redis.zscore(entry.partition.backlog, ref.messageId)).toBeNull();

    const history = await store.history(ref.sessionId);
    expect(history.map((m) => [m.role, m.status, m.content])).toEqual([
      ['user', 'completed', 'hello'],
      ['assistant', 'completed', 'Hello world'],
    ]);
    // the session log holds every logged event under the same ids as the partition's stream
    const logged = parseRangeReply(await redis.xrange(keys.session(ref.sessionId).events, '-', '+')).map((e) => e.id);
    expect(logged).toEqual(events.map((e) => e.eventId));
  });

  it('retries a transient provider error as attempt 2 after a retrying status, and completes once', async () => {
    const { ref, entry } = await sendAndDeliver();
    const transient = new GenerationError('stream_interrupted', 'The model stream ended without finishing.', true);
    const provider = new ScriptedProvider([
      [content('lost '), { after: 20, fail: transient }],
      [content('fine'), done()],
    ]);

    expect(await runner(provider).run(entry, 'runner-spec', new AbortController().signal)).toBe('done');

    const events = await eventsOf(ref);
    expect(typesOf(events)).toEqual([
      'chat.user_message',
      'chat.started',
      'chat.delta',
      'chat.status',
      'chat.started',
      'chat.delta',
      'chat.completed',
    ]);
    const [, first, , status, second, , completed] = events;
    expect(first.type === 'chat.started' && first.payload.attempt).toBe(1);
    expect(status.type === 'chat.status' && status.payload.state).toBe('retrying');
    expect(second.type === 'chat.started' && second.payload.attempt).toBe(2);
    expect(completed.type === 'chat.completed' && completed.payload.content).toBe('fine');
    expect(provider.calls).toBe(2);
    expect(await isPending(entry)).toBe(false);
    expect((await store.history(ref.sessionId))[1]).toMatchObject({ role: 'assistant', status: 'completed', content: 'fine' });
  });

  it('fails a non-transient provider error: chat.failed, a dead letter in the partition, acked', async () => {
    const { ref, entry } = await sendAndDeliver('keep me');
    const provider = new ScriptedProvider([[{ after: 10, fail: new GenerationError('model_not_found', 'No such model.', false) }]]);

    expect(await runner(provider).run(entry, 'runner-spec', new AbortController().signal)).toBe('done');

    const events = await eventsOf(ref);
    expect(typesOf(events)).toEqual(['chat.user_message', 'chat.started', 'chat.failed']);
    const failed = events[2];
    expect(failed.type === 'chat.failed' && failed.payload.error.code).toBe('model_not_found');
    expect(provider.calls).toBe(1);
    const letters = await deadLettersOf(ref);
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ messageId: ref.messageId, entryId: entry.id, fields: ['content', 'keep me'] });
    expect(String(letters[0].reason)).toContain('model_not_found');
    expect(await isPending(entry)).toBe(false);
    expect(await inIncoming(entry)).toBe(false);
    expect((await store.history(ref.sessionId))[1]).toMatchObject({
      role: 'assistant',
      status: 'failed',
      error: { code: 'model_not_found' },
    });
  });

  it('fails a message the window no longer holds (the correction grew since send) as context_overflow, never asking the model', async () => {
    const small = new AppConfig(
      validateEnvironment({
        REDIS_URL: config.redis.url,
        DELTA_COALESCE_MS: '0',
        TITLES: 'false',
        OLLAMA_NUM_CTX: '1024',
        CONTEXT_RESERVE_TOKENS: '256',
      }),
    );
    const budget = new ContextBudget(small);
    const text = Array.from({ length: 450 }, (_, i) => ['stone', 'river', 'house'][i % 3]).join(' ');
    // it fitted at send (~450 tokens of the 768 left beside the reserve) ...
    expect(countTokens(text)).toBeLessThan(budget.conversationTokens);
    // ... but the model reported prompts half again as long as the estimates: the budget shrank below it
    budget.observe(100, Math.ceil(1.5 * (100 + fixedPromptTokens(small.ai.systemPrompt))));
    expect(budget.factor).toBe(1.5);
    expect(countTokens(text) + MESSAGE_FRAME_TOKENS).toBeGreaterThan(budget.conversationTokens);

    const { ref, entry } = await sendAndDeliver(text);
    const provider = new ScriptedProvider([[{ chunk: { kind: 'content', text: 'never' } }]]);
    const overflowing = new MessageRunner(
      store,
      group,
      deadLetters,
      cancels,
      small,
      provider,
      metrics,
      budget,
      new TitleWriter(provider, store, small),
    );
    expect(await overflowing.run(entry, 'runner-spec', new AbortController().signal)).toBe('done');

    const events = await eventsOf(ref);
    expect(typesOf(events)).toEqual(['chat.user_message', 'chat.started', 'chat.failed']);
    const failed = events[2];
    expect(failed.type === 'chat.failed' && failed.payload.error).toEqual({
      code: 'context_overflow',
      message: expect.stringContaining('OLLAMA_NUM_CTX=1024'),
    });
    expect(provider.calls).toBe(0);
    expect(await isPending(entry)).toBe(false);
  });

  it('stops a stale attempt: a takeover (start #2) while #1 streams leaves it, with nothing of #1 after started #2', async () => {
    const { ref, entry } = await sendAndDeliver();
    const provider = new ScriptedProvider([slow(60, 30)]);
    const running = runner(provider).run(entry, 'runner-spec', new AbortController().signal);
    await eventSeen(ref, (e) => e.type === 'chat.delta');

    const takeover = await store.start(ref, entry.id, 'another-worker', null);
    expect(takeover).toMatchObject({ result: 'started', attempt: 2 });

    expect(await within(running, 2000)).toBe('done');
    expect(await running).toBe('left');
    // the model request of the stale attempt was closed
    expect(provider.signals[0].aborted).toBe(true);
    await new Promise((r) => setTimeout(r, 100)); // anything late would have landed by now
    const events = await eventsOf(ref);
    const at = events.findIndex((e) => e.type === 'chat.started' && e.payload.attempt === 2);
    expect(at).toBeGreaterThan(0);
    expect(typesOf(events.slice(at + 1))).toEqual([]);
    expect(finals(events)).toEqual([]);
    // left pending for the newer attempt's worker, which still owns the message
    expect(await isPending(entry)).toBe(true);
    expect((await store.history(ref.sessionId))[1]).toMatchObject({ status: 'streaming', content: '' });
    const newer = await store.finish(
      ref,
      entry.id,
      2,
      { content: 'b', createdAt: new Date().toISOString() },
      { type: 'chat.completed', payload: { ...ref, content: 'b', usage: { promptTokens: 0, completionTokens: 1 } } },
    );
    expect(newer.result).toBe('completed');
  });

  it('ends a message cancelled mid-stream (cancel mark) as cancelled, with exactly one chat.cancelled', async () => {
    const { ref, entry } = await sendAndDeliver();
    const provider = new ScriptedProvider([slow(60, 30)]);
    const running = runner(provider).run(entry, 'runner-spec', new AbortController().signal);
    await eventSeen(ref, (e) => e.type === 'chat.delta');

    expect(await store.cancel(ref, false)).toEqual({ result: 'signal', owner: 'runner-spec' });

    expect(await within(running, 2000)).toBe('done');
    expect(await running).toBe('done');
    expect(provider.signals[0].aborted).toBe(true);
    const events = await eventsOf(ref);
    expect(typesOf(finals(events))).toEqual(['chat.cancelled']);
    expect(events[events.length - 1].type).toBe('chat.cancelled');
    expect(await isPending(entry)).toBe(false);
    const reply = (await store.history(ref.sessionId))[1];
    // the stored reply is what clients were sent before the cancel
    expect(reply).toMatchObject({ role: 'assistant', status: 'cancelled', content: deltaText(events) });
    expect(reply.content).not.toBe('');
  });

  describe('a message whose state vanished mid-stream (no deleted mark)', () => {
    let ref: MessageRef;
    let entry: PartitionEntry;
    let result: string;

    beforeAll(async () => {
      ({ ref, entry } = await sendAndDeliver());
      const provider = new ScriptedProvider([slow(60, 30)]);
      const running = runner(provider).run(entry, 'runner-spec', new AbortController().signal);
      await eventSeen(ref, (e) => e.type === 'chat.delta');
      await redis.del(keys.session(ref.sessionId).hash);
      expect(await within(running, 2000)).toBe('done');
      result = await running;
    });

    it('is failed visibly: exactly one chat.failed message_lost', async () => {
      expect(result).toBe('done');
      const events = await eventsOf(ref);
      expect(typesOf(finals(events))).toEqual(['chat.failed']);
      const failed = finals(events)[0];
      expect(failed.type === 'chat.failed' && failed.payload.error.code).toBe('message_lost');
    });

    it('has its command acknowledged (RunResult done: the entry is settled)', async () => {
      expect(await isPending(entry)).toBe(false);
    });

    it('is announced once only: the worker re-reading its own pending entries does not fail it again', async () => {
      // What ChatWorker does after any read error (and a takeover does after its death): run every
      // entry still pending with this consumer.
      const own = (await group.readOwnPending(reader, keys.partitions, 'runner-spec')).filter((e) => e.id === entry.id);
      for (const again of own) await runner(new ScriptedProvider([slow(1, 1)])).run(again, 'runner-spec', new AbortController().signal);
      expect(typesOf(finals(await eventsOf(ref)))).toEqual(['chat.failed']);
    });
  });

  it('fails a command delivered more than WORKER_MAX_DELIVERIES times: delivery_limit, dead letter, acked, no model call', async () => {
    const { ref, entry } = await sendAndDeliver('poison');
    const provider = new ScriptedProvider([[content('never'), done()]]);
    const redelivered = { ...entry, deliveries: config.worker.maxDeliveries + 1 };

    expect(await runner(provider).run(redelivered, 'runner-spec', new AbortController().signal)).toBe('done');

    const events = await eventsOf(ref);
    expect(typesOf(events)).toEqual(['chat.user_message', 'chat.started', 'chat.failed']);
    const failed = events[2];
    expect(failed.type === 'chat.failed' && failed.payload.error.code).toBe('delivery_limit');
    expect(provider.calls).toBe(0);
    expect(await deadLettersOf(ref)).toHaveLength(1);
    expect(await isPending(entry)).toBe(false);
    expect(await inIncoming(entry)).toBe(false);
  });
});
