import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { eventually } from '../../test/support/eventually';
import { appConnections, freshRedis, testRedisUrl } from '../../test/support/test-redis';
import { AppConfig } from '../config/app-config';
import { validateEnvironment } from '../config/environment';
import { decodeEvent } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { KeyLayout } from '../event-bus/stream-names';
import { parseRangeReply } from '../event-bus/stream-reply';
import { MessageRef, MessageStore } from '../history/message-store';
import { AiProvider, GenerationChunk, GenerationRequest, ProviderHealth } from './providers/ai-provider';
import { countTokens } from '../history/token-count';
import { cleanTitle, excerpt, TitleWriter } from './title-writer';

/** Resolves true when `gate` opens, false when `signal` aborts first. */
function openedBeforeAbort(gate: Promise<void>, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    signal.addEventListener('abort', () => resolve(false), { once: true });
    void gate.then(() => resolve(true));
  });
}

/**
 * A model that replies `replies[n]` to its n-th request (the last one again after that), in a few
 * pieces. While held, a request waits for `release()` after its first (thinking) chunk, and stops
 * when its signal aborts.
 */
class TitleModel implements AiProvider {
  readonly name = 'title-model';
  readonly requests: GenerationRequest[] = [];
  readonly signals: AbortSignal[] = [];
  private gate: Promise<void> | null = null;
  private open: () => void = () => undefined;

  constructor(private readonly replies: string[]) {}

  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }

  release(): void {
    this.gate = null;
    this.open();
  }

  async *stream(request: GenerationRequest, signal: AbortSignal): AsyncIterable<GenerationChunk> {
    const reply = this.replies[Math.min(this.requests.length, this.replies.length - 1)];
    this.requests.push(request);
    this.signals.push(signal);
    yield { kind: 'thinking', text: 'A short name.' };
    if (this.gate && !(await openedBeforeAbort(this.gate, signal))) return;
    for (const piece of reply.split(/(?<= )/)) yield { kind: 'content', text: piece };
    yield { kind: 'done', usage: { promptTokens: 10, completionTokens: 5 } };
  }

  listModels(): Promise<string[]> {
    return Promise.resolve([]);
  }

  health(): Promise<ProviderHealth> {
    return Promise.resolve({ ok: true, message: 'ok', details: {} });
  }
}

/** A real store that lets a test act right after a title was written (before the writer moves on). */
class WatchedStore extends MessageStore {
  afterTitle: (() => void) | null = null;

  override async setTitle(ref: MessageRef, title: string): Promise<'titled' | 'gone'> {
    const written = await super.setTitle(ref, title);
    const after = this.afterTitle;
    this.afterTitle = null;
    after?.();
    return written;
  }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 100));

describe('TitleWriter (real Redis)', () => {
  let redis: Redis;
  let connections: RedisConnections;
  let config: AppConfig;
  let layout: KeyLayout;
  let store: WatchedStore;

  beforeAll(async () => {
    Logger.overrideLogger(['error']);
    redis = await freshRedis();
    const app = await appConnections();
    connections = app.connections;
    config = app.config;
    layout = new KeyLayout(config.redis.partitions);
    store = new WatchedStore(connections, config, layout);
  });

  afterAll(async () => {
    await connections.onApplicationShutdown();
    await redis.quit();
  });

  /** A session with its first message sent: the conversation a title is for. */
  async function conversation(): Promise<MessageRef> {
    const ref = { sessionId: `s-${randomUUID()}`, messageId: `m-${randomUUID()}` };
    expect((await store.send(ref, null, { content: 'How do Redis streams work?', createdAt: new Date().toISOString() })).result).toBe(
      'queued',
    );
    return ref;
  }

  const job = (ref: MessageRef) => ({ ref, question: 'How do Redis streams work?', answer: 'They are append-only logs.' });

  async function titleEvents(ref: MessageRef): Promise<unknown[]> {
    return parseRangeReply(await redis.xrange(layout.session(ref.sessionId).events, '-', '+')).flatMap((entry) => {
      const decoded = decodeEvent(entry.fields);
      return decoded.ok && decoded.value.type === 'chat.title' ? [decoded.value.payload] : [];
    });
  }

  const storedTitle = (ref: MessageRef) => redis.hget(layout.session(ref.sessionId).hash, 'title');
  const titled = (ref: MessageRef) =>
    eventually(
      () => storedTitle(ref),
      (title) => title !== null,
    );

  it("writes the model's title, cleaned, to the session and as chat.title", async () => {
    const ref = await conversation();
    const model = new TitleModel(['Title: "Redis Streams Explained."\nThey are logs.']);
    new TitleWriter(model, store, config).request({ ...job(ref), model: 'gpt-oss:120b' });

    expect(await titled(ref)).toBe('Redis Streams Explained');
    expect(await titleEvents(ref)).toEqual([{ ...ref, title: 'Redis Streams Explained' }]);
    expect(model.requests).toHaveLength(1);
    const [request] = model.requests;
    expect(request.model).toBe('gpt-oss:120b');
    expect(request.messages.map((m) => m.role)).toEqual(['system', 'user']);
    expect(request.messages[1].content).toContain('How do Redis streams work?');
    expect(request.messages[1].content).toContain('They are append-only logs.');
  });

  it('asks nothing while a generation runs, and writes the title once the worker is idle', async () => {
    const ref = await conversation();
    const model = new TitleModel(['Streams']);
    const writer = new TitleWriter(model, store, config);
    writer.generationStarted();
    writer.request(job(ref));
    await settle();
    expect(model.requests).toHaveLength(0);
    expect(await storedTitle(ref)).toBeNull();

    writer.generationEnded();
    expect(await titled(ref)).toBe('Streams');
    expect(model.requests).toHaveLength(1);
  });

  it('aborts a running title when a generation starts, and asks again once it has ended', async () => {
    const ref = await conversation();
    const model = new TitleModel(['First try', 'Second try']);
    model.hold();
    const writer = new TitleWriter(model, store, config);
    writer.request(job(ref));
    await eventually(
      () => model.requests.length,
      (n) => n === 1,
    );

    writer.generationStarted();
    expect(model.signals[0].aborted).toBe(true);
    model.release();
    await settle();
    expect(model.requests).toHaveLength(1);
    expect(await storedTitle(ref)).toBeNull();

    writer.generationEnded();
    expect(await titled(ref)).toBe('Second try');
    expect(await titleEvents(ref)).toEqual([{ ...ref, title: 'Second try' }]);
    expect(model.requests).toHaveLength(2);
  });

  it('gives a title up after it was interrupted three times', async () => {
    const ref = await conversation();
    const model = new TitleModel(['Never']);
    model.hold();
    const writer = new TitleWriter(model, store, config);
    writer.request(job(ref));
    for (let asked = 1; asked <= 3; asked++) {
      await eventually(
        () => model.requests.length,
        (n) => n === asked,
      );
      writer.generationStarted();
      await settle();
      writer.generationEnded();
    }
    await settle();
    expect(model.requests).toHaveLength(3);
    expect(model.signals.every((s) => s.aborted)).toBe(true);
    expect(await storedTitle(ref)).toBeNull();
  });

  it('does not ask again for a title it has already written when a generation starts just after', async () => {
    const ref = await conversation();
    const model = new TitleModel(['Written once', 'Written twice']);
    const writer = new TitleWriter(model, store, config);
    store.afterTitle = () => writer.generationStarted();
    writer.request(job(ref));
    expect(await titled(ref)).toBe('Written once');
    writer.generationEnded();
    await settle();
    expect(model.requests).toHaveLength(1);
    expect(await titleEvents(ref)).toEqual([{ ...ref, title: 'Written once' }]);
  });

  it('never asks the model with TITLES=false, nor with the mock provider', async () => {
    for (const env of [{ TITLES: 'false' }, { AI_PROVIDER: 'mock' }]) {
      const ref = await conversation();
      const model = new TitleModel(['Not wanted']);
      const off = new AppConfig(validateEnvironment({ REDIS_URL: testRedisUrl(), ...env }));
      new TitleWriter(model, store, off).request(job(ref));
      await settle();
      expect(model.requests).toHaveLength(0);
      expect(await storedTitle(ref)).toBeNull();
    }
  });
});

describe('cleanTitle', () => {
  it.each([
    ['"Redis Streams"', 'Redis Streams'],
    ['“Redis Streams”', 'Redis Streams'],
    ["'Redis Streams'", 'Redis Streams'],
    ['«Redis Streams»', 'Redis Streams'],
    ['Title: Redis Streams', 'Redis Streams'],
    ['title:Redis Streams', 'Redis Streams'],
    ['# Redis Streams', 'Redis Streams'],
    ['**Redis Streams**', 'Redis Streams'],
    ['`Redis` Streams', 'Redis Streams'],
    ['Redis Streams.', 'Redis Streams'],
    ['Redis Streams。', 'Redis Streams'],
    ['"Redis Streams."', 'Redis Streams'],
    ['Title: "Redis Streams"', 'Redis Streams'],
    ['\n  \n  Redis   Streams  \nThe rest of the reply', 'Redis Streams'],
    ['', ''],
    ['  \n ', ''],
  ])('%j → %j', (reply, title) => {
    expect(cleanTitle(reply)).toBe(title);
  });

  it.each([
    ['"Redis Streams".', 'Redis Streams'],
    ['**Title:** Redis Streams', 'Redis Streams'],
  ])('%j → %j (quotes and prefixes combined with other marks)', (reply, title) => {
    expect(cleanTitle(reply)).toBe(title);
  });

  it('cuts a title longer than 80 characters to 79 and an ellipsis, without a space before it', () => {
    const long = 'word '.repeat(30).trim();
    const cut = cleanTitle(long);
    expect(cut).toHaveLength(80);
    expect(cut.endsWith('…')).toBe(true);
    expect(cut.slice(0, -1)).toBe(long.slice(0, 79));
    // the 79th character is a space: it goes, the ellipsis follows the word
    expect(cleanTitle(`${'x'.repeat(78)} ${'y'.repeat(10)}`)).toBe(`${'x'.repeat(78)}…`);
    expect(cleanTitle('x'.repeat(80))).toBe('x'.repeat(80));
    expect(cleanTitle(`${'word '.repeat(15)}word.`)).toBe(`${'word '.repeat(15)}word`);
  });
});

describe('excerpt (what a title request shows of the first turn)', () => {
  it('keeps a short text whole', () => {
    expect(excerpt('What are Redis Streams?', 100)).toBe('What are Redis Streams?');
  });

  it('cuts at 1500 characters, and below that to the token share of a small window', () => {
    const prose = 'stone river '.repeat(400);
    expect(excerpt(prose, 10_000)).toBe(prose.slice(0, 1500));
    for (const text of [prose, '漢字'.repeat(1000), '\u{1F600}'.repeat(800)]) {
      const cut = excerpt(text, 100);
      expect(countTokens(cut)).toBeLessThanOrEqual(100);
      expect(countTokens(cut)).toBeGreaterThan(50);
      expect(text.startsWith(cut)).toBe(true);
    }
  });
});
