import { BadRequestException, ConflictException, HttpException, Logger, NotFoundException } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { appConnections, freshRedis, readCommandOf, testRedisUrl } from '../../test/support/test-redis';
import { ModelCatalog } from '../ai/model-catalog';
import { AiProvider, GenerationChunk, ProviderHealth } from '../ai/providers/ai-provider';
import { AppConfig } from '../config/app-config';
import { validateEnvironment } from '../config/environment';
import { CancelSignals } from '../event-bus/cancel-signals';
import { DeadLetters } from '../event-bus/dead-letters';
import { decodeCommand, decodeEvent } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { SessionEventLog } from '../event-bus/session-event-log';
import { KeyLayout } from '../event-bus/stream-names';
import { parseRangeReply } from '../event-bus/stream-reply';
import { WorkerRegistry } from '../event-bus/worker-registry';
import { MessageStore } from '../history/message-store';
import { countTokens, fixedPromptTokens, MESSAGE_FRAME_TOKENS } from '../history/token-count';
import { RetryLaterException, SendLimits } from '../limits/send-limits.service';
import { Metrics } from '../observability/metrics.service';
import { ChatService } from './chat.service';

/** A provider whose model list the test sets (or makes unreachable); it is never asked to generate here. */
class ListingModel implements AiProvider {
  readonly name = 'listing';
  asked = 0;

  constructor(private readonly models: string[] | Error) {}

  listModels(): Promise<string[]> {
    this.asked++;
    return this.models instanceof Error ? Promise.reject(this.models) : Promise.resolve([...this.models]);
  }

  stream(): AsyncIterable<GenerationChunk> {
    throw new Error('not asked to generate in these tests');
  }

  health(): Promise<ProviderHealth> {
    return Promise.resolve({ ok: true, message: 'ok', details: {} });
  }
}

const DEFAULT = 'gpt-oss:20b';
const OTHER = 'gpt-oss:120b';

/**
 * Picking a model (GET /models, a send's `model`), the window check at send, and regenerate and
 * edit, through ChatService and ModelCatalog on a real Redis; only the provider's model list is ours.
 */
describe('ChatService: models, the window, regenerate and edit (real Redis)', () => {
  let redis: Redis;
  let connections: RedisConnections;
  let layout: KeyLayout;
  let store: MessageStore;
  let metrics: Metrics;

  beforeAll(async () => {
    Logger.overrideLogger(['error']);
    redis = await freshRedis();
    const app = await appConnections();
    connections = app.connections;
    layout = new KeyLayout(app.config.redis.partitions);
    store = new MessageStore(connections, app.config, layout);
    metrics = new Metrics(connections, layout);
  });

  afterAll(async () => {
    await connections.onApplicationShutdown();
    await redis.quit();
  });

  /** The chat as the API builds it, with these settings and this provider's model list. */
  function chat(env: Record<string, string> = {}, provider = new ListingModel([DEFAULT, OTHER])) {
    const config = new AppConfig(validateEnvironment({ REDIS_URL: testRedisUrl(), ...env }));
    const catalog = new ModelCatalog(provider, config);
    const service = new ChatService(
      new MessageStore(connections, config, layout),
      config,
      new SendLimits(config, connections, layout),
      new SessionEventLog(connections, layout),
      new CancelSignals(connections, layout),
      new WorkerRegistry(connections, config),
      new DeadLetters(connections, config, layout),
      connections,
      layout,
      metrics,
      catalog,
    );
    return { service, catalog, config, provider };
  }

  const newSession = () => `s-${randomUUID()}`;

  async function refusal(work: Promise<unknown>): Promise<HttpException> {
    try {
      await work;
    } catch (err) {
      if (err instanceof HttpException) return err;
      throw err;
    }
    throw new Error('not refused');
  }

  /** What the session has queued for the workers, and announced. */
  async function traces(sessionId: string): Promise<{ commands: number; announced: number }> {
    const commands = parseRangeReply(await redis.xrange(layout.partitionOf(sessionId).incoming, '-', '+')).filter((e) => {
      const decoded = decodeCommand(e.fields);
      return decoded.ok && decoded.value.payload.sessionId === sessionId;
    });
    const announced = parseRangeReply(await redis.xrange(layout.session(sessionId).events, '-', '+')).filter((e) => {
      const decoded = decodeEvent(e.fields);
      return decoded.ok && decoded.value.type === 'chat.user_message';
    });
    return { commands: commands.length, announced: announced.length };
  }

  const userPartOf = async (sessionId: string, messageId: string) =>
    JSON.parse((await redis.hget(layout.session(sessionId).hash, `${messageId}:user`)) ?? 'null') as Record<string, unknown> | null;

  /** Answers the session's head as a worker would (read through the group, started, completed). */
  async function answer(sessionId: string, messageId: string): Promise<void> {
    const ref = { sessionId, messageId };
    const entryId = await readCommandOf(redis, layout, ref);
    const started = await store.start(ref, entryId, 'w1', null);
    if (started.result !== 'started') throw new Error(started.result);
    const payload = { ...ref, content: 'an answer', usage: { promptTokens: 1, completionTokens: 1 } };
    const part = { content: 'an answer', createdAt: new Date().toISOString() };
    expect((await store.finish(ref, entryId, started.attempt, part, { type: 'chat.completed', payload }, null, 2)).result).toBe(
      'completed',
    );
  }

  describe('the model list', () => {
    it("is the provider's models with the default first, asked once within 30 s", async () => {
      const { catalog, provider } = chat({}, new ListingModel(['llama3:8b', DEFAULT, OTHER]));
      const list = { default: DEFAULT, models: [DEFAULT, 'llama3:8b', OTHER], reachable: true };
      expect(await catalog.list()).toEqual(list);
      expect(await catalog.list()).toEqual(list);
      expect(provider.asked).toBe(1);
    });

    it('keeps only ALLOWED_MODELS the provider has, and the default even when the provider lacks it', async () => {
      const { catalog } = chat({ ALLOWED_MODELS: `${OTHER}, missing:1b` }, new ListingModel(['llama3:8b', OTHER]));
      expect(await catalog.list()).toEqual({ default: DEFAULT, models: [DEFAULT, OTHER], reachable: true });
    });

    it('is the default (and ALLOWED_MODELS) when the provider cannot be reached', async () => {
      const down = () => new ListingModel(new Error('connect ECONNREFUSED'));
      expect(await chat({}, down()).catalog.list()).toEqual({ default: DEFAULT, models: [DEFAULT], reachable: false });
      expect(await chat({ ALLOWED_MODELS: OTHER }, down()).catalog.list()).toEqual({
        default: DEFAULT,
        models: [DEFAULT, OTHER],
        reachable: false,
      });
    });
  });

  describe('a send naming a model', () => {
    it('refuses a model the provider does not have with 400 naming it, and queues nothing', async () => {
      const sessionId = newSession();
      const refused = await refusal(chat().service.send({ sessionId, content: 'hi', model: 'llama3:70b' }));
      expect(refused).toBeInstanceOf(BadRequestException);
      expect(refused.message).toContain('"llama3:70b"');
      expect(await traces(sessionId)).toEqual({ commands: 0, announced: 0 });
    });

    it('refuses a model outside ALLOWED_MODELS with 400 without asking the provider', async () => {
      const { service, provider } = chat({ ALLOWED_MODELS: OTHER });
      const refused = await refusal(service.send({ sessionId: newSession(), content: 'hi', model: 'llama3:8b' }));
      expect(refused).toBeInstanceOf(BadRequestException);
      expect(refused.message).toMatch(/"llama3:8b".*ALLOWED_MODELS/);
      expect(provider.asked).toBe(0);
    });

    it('stores a listed model in the user part; the default model is not stored', async () => {
      const { service } = chat();
      const sessionId = newSession();
      const other = await service.send({ sessionId, content: 'big one', model: OTHER });
      expect((await store.history(sessionId))[0]).toMatchObject({ messageId: other.messageId, role: 'user', model: OTHER });
      expect(await userPartOf(sessionId, other.messageId)).toMatchObject({ model: OTHER });

      const plain = newSession();
      const usual = await service.send({ sessionId: plain, content: 'usual', model: DEFAULT });
      const [message] = await store.history(plain);
      expect(message).toMatchObject({ messageId: usual.messageId, role: 'user', content: 'usual' });
      expect(message).not.toHaveProperty('model');
      expect(await userPartOf(plain, usual.messageId)).not.toHaveProperty('model');
    });

    it('answers 503 for a non-default model while the list cannot be read, and still takes the default', async () => {
      const { service } = chat({}, new ListingModel(new Error('connect ECONNREFUSED')));
      const sessionId = newSession();
      const refused = await refusal(service.send({ sessionId, content: 'hi', model: OTHER }));
      expect(refused).toBeInstanceOf(RetryLaterException);
      expect(refused.getStatus()).toBe(503);
      expect((refused as RetryLaterException).retryAfterSeconds).toBeGreaterThan(0);
      expect(await traces(sessionId)).toEqual({ commands: 0, announced: 0 });
      expect(await service.send({ sessionId, content: 'hi', model: DEFAULT })).toMatchObject({ sessionId, status: 'queued' });
    });
  });

  describe('a message and the context window (OLLAMA_NUM_CTX=1024, CONTEXT_RESERVE_TOKENS=256)', () => {
    const env = { OLLAMA_NUM_CTX: '1024', CONTEXT_RESERVE_TOKENS: '256' };
    /** `n` tokens of text: "word word …" is one o200k token a word. */
    const text = (n: number) => `word${' word'.repeat(n - 1)}`;

    it('refuses one that cannot fit even alone with 400 naming both settings, and queues nothing', async () => {
      const { service, config } = chat(env);
      const content = text(3000);
      expect(content.length).toBeLessThanOrEqual(config.limits.maxMessageChars);
      const sessionId = newSession();
      const refused = await refusal(service.send({ sessionId, content }));
      expect(refused).toBeInstanceOf(BadRequestException);
      expect(refused.message).toContain('OLLAMA_NUM_CTX=1024');
      expect(refused.message).toContain('CONTEXT_RESERVE_TOKENS=256');
      expect(await traces(sessionId)).toEqual({ commands: 0, announced: 0 });
    });

    it('takes the longest one that fits, with its token count stored, and refuses one token more', async () => {
      const { service, config } = chat(env);
      const room = 1024 - 256 - fixedPromptTokens(config.ai.systemPrompt) - MESSAGE_FRAME_TOKENS;
      expect(countTokens(text(room))).toBe(room);
      const sessionId = newSession();
      const sent = await service.send({ sessionId, content: text(room) });
      expect(await redis.hget(layout.session(sessionId).hash, `${sent.messageId}:ut`)).toBe(String(room));
      expect((await refusal(service.send({ sessionId, content: text(room + 1) }))).getStatus()).toBe(400);
    });
  });

  describe('regenerate and edit', () => {
    /** A session of two answered messages (the last asked of OTHER). */
    async function twoAnswered(service: ChatService) {
      const sessionId = newSession();
      const first = await service.send({ sessionId, content: 'one' });
      await answer(sessionId, first.messageId);
      const last = await service.send({ sessionId, content: 'two', model: OTHER, think: 'high' });
      await answer(sessionId, last.messageId);
      return { sessionId, first: first.messageId, last: last.messageId };
    }

    it('refuses a message that is not the last with 409, and an unknown one with 404', async () => {
      const { service } = chat();
      const { sessionId, first } = await twoAnswered(service);
      const before = await traces(sessionId);
      expect(await refusal(service.regenerate({ sessionId, messageId: first }))).toBeInstanceOf(ConflictException);
      expect(await refusal(service.edit({ sessionId, messageId: first, content: 'uno' }))).toBeInstanceOf(ConflictException);
      expect(await refusal(service.regenerate({ sessionId, messageId: 'm-unknown' }))).toBeInstanceOf(NotFoundException);
      expect(await traces(sessionId)).toEqual(before);
    });

    it('refuses the last message with 409 while it has not been answered', async () => {
      const { service } = chat();
      const sessionId = newSession();
      const { messageId } = await service.send({ sessionId, content: 'one' });
      expect(await refusal(service.regenerate({ sessionId, messageId }))).toBeInstanceOf(ConflictException);
    });

    it('regenerates the last message: its text, model and think again, as a new message replacing it', async () => {
      const { service } = chat();
      const { sessionId, first, last } = await twoAnswered(service);
      const again = await service.regenerate({ sessionId, messageId: last });
      expect(again).toEqual({ messageId: expect.any(String) as string, sessionId, status: 'queued', replaces: last });
      expect(again.messageId).not.toBe(last);
      expect((await store.history(sessionId)).map((m) => [m.messageId, m.role, m.content])).toEqual([
        [first, 'user', 'one'],
        [first, 'assistant', 'an answer'],
        [again.messageId, 'user', 'two'],
      ]);
      expect(await userPartOf(sessionId, again.messageId)).toMatchObject({ content: 'two', model: OTHER, think: 'high' });
    });

    it('edits the last message: new text, as a new message replacing it', async () => {
      const { service } = chat();
      const { sessionId, last } = await twoAnswered(service);
      const edited = await service.edit({ sessionId, messageId: last, content: 'two, better' });
      expect(edited).toMatchObject({ sessionId, status: 'queued', replaces: last });
      const history = await store.history(sessionId);
      expect(history.map((m) => m.messageId)).not.toContain(last);
      expect(history.at(-1)).toMatchObject({ messageId: edited.messageId, role: 'user', content: 'two, better', status: 'queued' });
    });

    it('answers a repeated edit (same clientMessageId) with the same messageId', async () => {
      const { service } = chat();
      const { sessionId, last } = await twoAnswered(service);
      const edit = { sessionId, messageId: last, content: 'two, better', clientMessageId: 'c-edit' };
      const edited = await service.edit(edit);
      expect(await service.edit(edit)).toEqual(edited);
      expect(await traces(sessionId)).toMatchObject({ announced: 3 });
    });

    it('answers a repeated regenerate (same clientMessageId) with the same messageId', async () => {
      const { service } = chat();
      const { sessionId, last } = await twoAnswered(service);
      const regenerate = { sessionId, messageId: last, clientMessageId: 'c-again' };
      const again = await service.regenerate(regenerate);
      expect(await service.regenerate(regenerate)).toEqual(again);
      expect(await traces(sessionId)).toMatchObject({ announced: 3 });
    });
  });
});
