import { expect } from '@jest/globals';
import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { appConnections, freshRedis } from '../../test/support/test-redis';
import { AppConfig } from '../config/app-config';
import { validateEnvironment } from '../config/environment';
import { decodeOutgoing, DeliveredEvent } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { compareStreamIds, parseRangeReply } from '../event-bus/stream-reply';
import { KeyLayout } from '../event-bus/stream-names';
import { MessageRef, MessageStore } from '../history/message-store';
import { Metrics } from '../observability/metrics.service';
import { ABORT_CANCELLED, ABORT_SHUTDOWN } from './abort-reasons';
import { AttemptResult, ProviderAttempt, STATUS_INTERVAL_MS } from './provider-attempt';
import { AiProvider, GenerationChunk, ProviderHealth } from './providers/ai-provider';
import { pause } from '../event-bus/stream-tail';

/**
 * One ProviderAttempt against a real Redis (a message sent and started through the real scripts),
 * with a model of our own that says what it is told to, when it is told to.
 */

/** A model whose whole stream is `play`; it stops when the request is aborted. */
class FunctionProvider implements AiProvider {
  readonly name = 'function';
  signal: AbortSignal | null = null;

  constructor(private readonly play: (signal: AbortSignal) => AsyncIterable<GenerationChunk>) {}

  stream(_request: unknown, signal: AbortSignal): AsyncIterable<GenerationChunk> {
    this.signal = signal;
    return this.play(signal);
  }

  listModels(): Promise<string[]> {
    return Promise.resolve([]);
  }

  health(): Promise<ProviderHealth> {
    return Promise.resolve({ ok: true, message: 'ok', details: {} });
  }
}

const USAGE = { promptTokens: 1, completionTokens: 1 };
const REQUEST = { messages: [{ role: 'user' as const, content: 'hi' }] };

describe('ProviderAttempt (real Redis)', () => {
  let redis: Redis;
  let connections: RedisConnections;
  let config: AppConfig;
  let keys: KeyLayout;
  let store: MessageStore;
  let metrics: Metrics;

  beforeAll(async () => {
    Logger.overrideLogger(['error']);
    redis = await freshRedis();
    const app = await appConnections();
    connections = app.connections;
    // One event per chunk, and a first-token timeout short enough to watch.
    config = new AppConfig(
      validateEnvironment({ REDIS_URL: app.config.redis.url, DELTA_COALESCE_MS: '0', OLLAMA_FIRST_TOKEN_TIMEOUT_MS: '15000' }),
    );
    keys = new KeyLayout(config.redis.partitions);
    store = new MessageStore(connections, config, keys);
    metrics = new Metrics(connections, keys);
  });

  afterAll(async () => {
    await connections.onApplicationShutdown();
    await redis.quit();
  });

  /** A sent message, started as attempt 1 (chat.started written) the way a worker starts it. */
  async function started(): Promise<{ ref: MessageRef; attempt: number }> {
    const ref = { sessionId: `s-${randomUUID()}`, messageId: `m-${randomUUID()}` };
    expect((await store.send(ref, null, { content: 'hi', createdAt: new Date().toISOString() })).result).toBe('queued');
    const start = await store.start(ref, '', 'attempt-spec', null);
    if (start.result !== 'started') throw new Error(`start answered ${start.result}`);
    return { ref, attempt: start.attempt };
  }

  function attempt(
    provider: AiProvider,
    ref: MessageRef,
    number: number,
    signal = new AbortController().signal,
    cfg = config,
  ): Promise<AttemptResult> {
    return new ProviderAttempt({ provider, store, config: cfg, metrics }, ref, number, signal).run(REQUEST);
  }

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

  const waitingStatus = (e: DeliveredEvent) => e.type === 'chat.status' && e.payload.state === 'waiting_for_model';

  it(`tells clients it waits for the model when nothing comes for STATUS_INTERVAL_MS (${STATUS_INTERVAL_MS} ms)`, async () => {
    const { ref, attempt: number } = await started();
    const began = Date.now();
    let toldAfterMs: number | null = null;
    // Silent until the status is in the stream (or well past two intervals), then a short answer.
    const provider = new FunctionProvider(async function* (signal) {
      while (Date.now() - began < 2 * STATUS_INTERVAL_MS + 1500) {
        if (!(await pause(100, signal))) return;
        if ((await eventsOf(ref)).some(waitingStatus)) {
          toldAfterMs = Date.now() - began;
          break;
        }
      }
      yield { kind: 'content', text: 'here' };
      yield { kind: 'done', usage: USAGE };
    });

    const result = await attempt(provider, ref, number);

    expect(result).toMatchObject({ kind: 'completed', content: 'here' });
    expect(toldAfterMs).not.toBeNull();
    // once per interval of silence: the first one after one interval, not two
    expect(toldAfterMs).toBeGreaterThanOrEqual(STATUS_INTERVAL_MS - 50);
    expect(toldAfterMs).toBeLessThan(STATUS_INTERVAL_MS + 1000);
    const events = await eventsOf(ref);
    expect(events.map((e) => e.type)).toEqual(['chat.user_message', 'chat.started', 'chat.status', 'chat.delta']);
    const status = events[2];
    expect(status.type === 'chat.status' && status.payload.state).toBe('waiting_for_model');
    expect(status.type === 'chat.status' && status.payload.detail).toMatch(/waiting for the model/i);
    // status events are not logged for resume
    const logged = parseRangeReply(await redis.xrange(keys.session(ref.sessionId).events, '-', '+')).map((e) => e.id);
    expect(logged).not.toContain(status.eventId);
    expect(logged).toContain(events[3].eventId);
  }, 20_000);

  it('keeps the progress snapshot (history content and resumeFrom) with a delta at most once a second', async () => {
    const { ref, attempt: number } = await started();
    /** Every distinct (resumeFrom, content) a history reader saw while the answer streamed. */
    const seen = new Map<string, string>();
    const look = async () => {
      const reply = (await store.history(ref.sessionId)).find((m) => m.role === 'assistant');
      if (reply?.resumeFrom && !seen.has(reply.resumeFrom)) seen.set(reply.resumeFrom, reply.content);
    };
    const provider = new FunctionProvider(async function* (signal) {
      for (let i = 0; i < 65; i++) {
        if (!(await pause(40, signal))) return;
        await look();
        yield { kind: 'content', text: ` w${i}` };
      }
      await pause(60, signal);
      await look();
      yield { kind: 'done', usage: USAGE };
    });

    const result = await attempt(provider, ref, number);
    expect(result.kind).toBe('completed');

    const events = await eventsOf(ref);
    const startedId = events.find((e) => e.type === 'chat.started')?.eventId ?? '';
    const deltas = events.filter((e) => e.type === 'chat.delta');
    expect(deltas).toHaveLength(65);
    const snapshots = [...seen.entries()].filter(([id]) => id !== startedId).sort(([a], [b]) => compareStreamIds(a, b));
    // ~2.7 s of deltas: a snapshot after about 1 s and 2 s, not one per delta
    expect(snapshots.length).toBeGreaterThanOrEqual(2);
    expect(snapshots.length).toBeLessThanOrEqual(3);
    let previous = startedId;
    for (const [id, content] of snapshots) {
      // each snapshot is kept with a delta's id and holds exactly the deltas up to it
      const upTo = deltas.filter((d) => compareStreamIds(d.eventId, id) <= 0);
      expect(upTo[upTo.length - 1]?.eventId).toBe(id);
      expect(content).toBe(upTo.map((d) => (d.type === 'chat.delta' ? d.payload.delta : '')).join(''));
      // the ids carry Redis's clock: a second apart at least (a little slack for the round trips)
      expect(msOf(id) - msOf(previous)).toBeGreaterThanOrEqual(950);
      previous = id;
    }
  }, 20_000);

  it('fails as first_token_timeout (transient) and closes the model request when no token comes in time', async () => {
    const { ref, attempt: number } = await started();
    const quick = new AppConfig(validateEnvironment({ REDIS_URL: config.redis.url, OLLAMA_FIRST_TOKEN_TIMEOUT_MS: '200' }));
    const provider = new FunctionProvider(async function* (signal) {
      await pause(60_000, signal);
      if (!signal.aborted) yield { kind: 'done', usage: USAGE };
    });
    const began = Date.now();

    const result = await attempt(provider, ref, number, new AbortController().signal, quick);

    expect(result.kind === 'error' && result.error.code).toBe('first_token_timeout');
    expect(result.kind === 'error' && result.error.transient).toBe(true);
    expect(Date.now() - began).toBeLessThan(2000);
    expect(provider.signal?.aborted).toBe(true);
  });

  it('ends as cancelled with what was published when the worker cancels it, and as shutdown when it stops', async () => {
    for (const reason of [ABORT_CANCELLED, ABORT_SHUTDOWN]) {
      const { ref, attempt: number } = await started();
      const controller = new AbortController();
      const provider = new FunctionProvider(async function* (signal) {
        for (let i = 0; ; i++) {
          if (!(await pause(20, signal))) return;
          yield { kind: 'content', text: `c${i} ` };
          if (i === 3) controller.abort(reason);
        }
      });

      const result = await attempt(provider, ref, number, controller.signal);

      expect(provider.signal?.aborted).toBe(true);
      if (reason === ABORT_SHUTDOWN) {
        expect(result).toEqual({ kind: 'shutdown' });
        continue;
      }
      expect(result.kind).toBe('cancelled');
      const published = (await eventsOf(ref)).map((e) => (e.type === 'chat.delta' ? e.payload.delta : '')).join('');
      expect(result.kind === 'cancelled' && result.partial.content).toBe(published);
    }
  });

  it('is fenced once a newer attempt started: its next write is refused and the model request closed', async () => {
    const { ref, attempt: number } = await started();
    let newer = false;
    const provider = new FunctionProvider(async function* (signal) {
      for (let i = 0; i < 50; i++) {
        if (!(await pause(20, signal))) return;
        yield { kind: 'content', text: `x${i}` };
        if (i === 2 && !newer) {
          newer = true;
          await store.start(ref, '', 'newer-worker', null);
        }
      }
      yield { kind: 'done', usage: USAGE };
    });

    expect(await attempt(provider, ref, number)).toEqual({ kind: 'fenced' });
    expect(provider.signal?.aborted).toBe(true);
    const events = await eventsOf(ref);
    const at = events.findIndex((e) => e.type === 'chat.started' && e.payload.attempt === number + 1);
    expect(at).toBeGreaterThan(0);
    expect(events.slice(at + 1)).toEqual([]);
  });

  it('reports a stream that ends without done as stream_interrupted (transient)', async () => {
    const { ref, attempt: number } = await started();
    const provider = new FunctionProvider(async function* (signal) {
      await pause(10, signal);
      yield { kind: 'content', text: 'half' };
    });
    const result = await attempt(provider, ref, number);
    expect(result.kind === 'error' && result.error.code).toBe('stream_interrupted');
    expect(result.kind === 'error' && result.error.transient).toBe(true);
    expect(result.kind === 'error' && result.partial.content).toBe('half');
  });
});

/** The millisecond part of a stream id (Redis's clock when it was added). */
function msOf(id: string): number {
  return Number(id.split('-')[0]);
}
