/**
 * OpenAiProvider with the real `openai` client over the worker's transport, against FakeOpenAi
 * (the real SSE wire format): chunks, usage, reasoning effort, cancel, every scripted fault.
 */
import { createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { DEFAULT_MODEL, FakeOpenAi } from '../../../test/support/fake-openai';
import { within } from '../../../test/support/within';
import { GenerationError } from '../generation-error';
import { GenerationChunk, GenerationRequest } from './ai-provider';
import { mapOpenAiChunk } from './openai-chunks';
import { retryAfterOf } from './openai-errors';
import { OpenAiProvider } from './openai.provider';

const KEY = 'sk-proj-SECRET-0123456789';
const request = (content = 'hello there', think?: GenerationRequest['think']): GenerationRequest => ({
  messages: [
    { role: 'system', content: 'be brief' },
    { role: 'user', content },
  ],
  ...(think ? { think } : {}),
});

async function collect(stream: AsyncIterable<GenerationChunk>): Promise<GenerationChunk[]> {
  const chunks: GenerationChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

async function failure(stream: AsyncIterable<GenerationChunk>): Promise<{ error: GenerationError; chunks: GenerationChunk[] }> {
  const chunks: GenerationChunk[] = [];
  try {
    for await (const chunk of stream) chunks.push(chunk);
  } catch (error) {
    if (!(error instanceof GenerationError)) throw error;
    return { error, chunks };
  }
  throw new Error('expected the stream to fail');
}

const text = (chunks: GenerationChunk[], kind: 'thinking' | 'content') =>
  chunks
    .filter((c) => c.kind === kind)
    .map((c) => (c.kind === kind ? c.text : ''))
    .join('');

async function closedPort(): Promise<string> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return `http://127.0.0.1:${port}/v1`;
}

describe('OpenAiProvider', () => {
  const fake = new FakeOpenAi();
  let provider: OpenAiProvider;
  let keyless: OpenAiProvider;

  beforeAll(async () => {
    const baseUrl = await fake.start();
    provider = new OpenAiProvider({ baseUrl, apiKey: KEY, model: DEFAULT_MODEL });
    keyless = new OpenAiProvider({ baseUrl, apiKey: null, model: DEFAULT_MODEL });
  });

  afterEach(() => {
    fake.reset();
    fake.apiKey = null;
    fake.models.clear();
    fake.models.add(DEFAULT_MODEL);
  });

  afterAll(() => fake.stop());

  const signal = () => new AbortController().signal;

  describe('streaming', () => {
    it('streams content chunks, then done with the usage of the last chunk', async () => {
      fake.enqueue({ content: ['Hel', 'lo'], promptTokens: 12, completionTokens: 34 });
      const chunks = await collect(provider.stream(request(), signal()));
      expect(chunks).toEqual([
        { kind: 'content', text: 'Hel' },
        { kind: 'content', text: 'lo' },
        { kind: 'done', usage: { promptTokens: 12, completionTokens: 34 } },
      ]);
    });

    it.each(['reasoning_content', 'reasoning', 'both'] as const)('streams %s as thinking, before the answer, once', async (field) => {
      fake.enqueue({ thinking: ['Let', ' me'], content: ['42'], reasoningField: field });
      const chunks = await collect(provider.stream(request('6*7?', 'low'), signal()));
      expect(chunks.slice(0, 3)).toEqual([
        { kind: 'thinking', text: 'Let' },
        { kind: 'thinking', text: ' me' },
        { kind: 'content', text: '42' },
      ]);
      expect(chunks[3]).toMatchObject({ kind: 'done' });
    });

    it('sends the model, the messages, stream_options and the key; reasoning_effort from the think level', async () => {
      await collect(provider.stream(request('hi', 'high'), signal()));
      await collect(provider.stream(request('hi'), signal()));
      const [withThink, without] = await fake.waitForRequests(2);
      expect(withThink.body).toMatchObject({
        model: DEFAULT_MODEL,
        messages: request('hi').messages,
        stream: true,
        stream_options: { include_usage: true },
        reasoning_effort: 'high',
      });
      expect(without.body).not.toHaveProperty('reasoning_effort');
      expect(withThink.authorization).toBe(`Bearer ${KEY}`);
    });

    it('sends no Authorization header at all without a key', async () => {
      const chunks = await collect(keyless.stream(request(), signal()));
      expect(text(chunks, 'content')).toBe('You said: hello there');
      expect((await fake.waitForRequests(1))[0].authorization).toBeNull();
    });

    it('finishes with zero usage when the server ignores include_usage', async () => {
      fake.enqueue({ content: ['ok'], ignoreIncludeUsage: true });
      expect(await collect(provider.stream(request(), signal()))).toEqual([
        { kind: 'content', text: 'ok' },
        { kind: 'done', usage: { promptTokens: 0, completionTokens: 0 } },
      ]);
    });

    it('finishes on usage alone when the server sends no finish_reason', async () => {
      fake.enqueue({ content: ['ok'], finish: false, promptTokens: 3, completionTokens: 1 });
      expect((await collect(provider.stream(request(), signal()))).pop()).toEqual({
        kind: 'done',
        usage: { promptTokens: 3, completionTokens: 1 },
      });
    });
  });

  describe('cancel', () => {
    it('closes the connection at the server while the stream is open', async () => {
      fake.enqueue({ content: ['a', 'b', 'c'], firstTokenDelayMs: 0, tokenDelayMs: 5_000 });
      const controller = new AbortController();
      const chunks: GenerationChunk[] = [];
      const run = (async () => {
        for await (const chunk of provider.stream(request(), controller.signal)) {
          chunks.push(chunk);
          if (chunk.kind === 'content') controller.abort();
        }
      })();
      expect(await within(run, 2_000)).toBe('done'); // ends quietly: the caller knows why
      await fake.waitForAbort(0);
      expect(chunks).toEqual([{ kind: 'content', text: 'a' }]);
    });

    it('closes the connection while no headers came yet (a queued request)', async () => {
      fake.enqueue({ hangBeforeHeaders: true });
      const controller = new AbortController();
      const run = collect(provider.stream(request(), controller.signal));
      await fake.waitForRequests(1);
      controller.abort();
      expect(await within(run, 2_000)).toBe('done');
      expect(await run).toEqual([]);
      await fake.waitForAbort(0);
    });

    it('closes a hanging stream (headers sent, no token)', async () => {
      fake.enqueue({ hang: true });
      const controller = new AbortController();
      const run = collect(provider.stream(request(), controller.signal));
      await fake.waitForRequests(1);
      setTimeout(() => controller.abort(), 50);
      expect(await within(run, 2_000)).toBe('done');
      await fake.waitForAbort(0);
    });

    it('sends nothing when already aborted', async () => {
      const controller = new AbortController();
      controller.abort();
      expect(await collect(provider.stream(request(), controller.signal))).toEqual([]);
      expect(fake.requests).toHaveLength(0);
    });
  });

  describe('faults', () => {
    const cases: [string, Parameters<FakeOpenAi['enqueue']>[0], string, boolean][] = [
      ['500', { status: 500, errorMessage: 'engine crashed' }, 'ollama_error', true],
      ['502', { status: 502, errorMessage: 'bad gateway' }, 'ollama_error', true],
      ['503', { status: 503, errorMessage: 'overloaded' }, 'ollama_error', true],
      ['429 rate limit', { status: 429, errorMessage: 'slow down' }, 'ollama_error', true],
      ['429 insufficient_quota', { status: 429, errorMessage: 'quota', errorCode: 'insufficient_quota' }, 'provider_auth', false],
      ['400', { status: 400, errorMessage: 'context length exceeded' }, 'bad_request', false],
      ['403', { status: 403, errorMessage: 'forbidden' }, 'provider_auth', false],
      ['404 without a model in it (a wrong route)', { status: 404, errorMessage: 'Not Found', errorCode: null }, 'bad_request', false],
      [
        '400 naming a missing model (LM Studio)',
        { status: 400, errorMessage: 'model "x" not found', errorCode: null },
        'model_not_found',
        false,
      ],
    ];
    it.each(cases)('%s -> %s (transient=%s)', async (_name, script, code, transient) => {
      fake.enqueue(script);
      const { error } = await failure(provider.stream(request(), signal()));
      expect(error.code).toBe(code);
      expect(error.transient).toBe(transient);
      expect(error.message).not.toContain(fake.url);
    });

    it('401 -> provider_auth, not retried, and the key never in the message', async () => {
      fake.apiKey = 'sk-the-right-one';
      const { error } = await failure(provider.stream(request(), signal()));
      expect(error.code).toBe('provider_auth');
      expect(error.transient).toBe(false);
      expect(error.message).toContain('OPENAI_API_KEY');
      expect(error.message).not.toContain(KEY);
      expect(JSON.stringify(error.toReason())).not.toContain('SECRET');
    });

    it('a key echoed in any other error is cut out', async () => {
      fake.enqueue({ status: 500, errorMessage: `upstream refused ${KEY} for this route` });
      const { error } = await failure(provider.stream(request(), signal()));
      expect(error.message).not.toContain(KEY);
      expect(error.message).toContain('[redacted]');
    });

    it('404 model -> model_not_found, not retried, names the model', async () => {
      fake.models.clear();
      fake.models.add('other/model');
      const { error } = await failure(provider.stream(request(), signal()));
      expect(error.code).toBe('model_not_found');
      expect(error.transient).toBe(false);
      expect(error.message).toContain(`"${DEFAULT_MODEL}"`);
      expect(error.message).toContain('OPENAI_MODEL');
    });

    it.each([
      ['seconds', '7', 7_000],
      ['an HTTP date', new Date(Date.now() + 4_000).toUTCString(), 4_000],
      ['too long (capped)', '3600', 60_000],
    ])('429 with Retry-After in %s -> retried after it', async (_name, retryAfter, expectedMs) => {
      fake.enqueue({ status: 429, errorMessage: 'slow down', retryAfter });
      const { error } = await failure(provider.stream(request(), signal()));
      expect(error.transient).toBe(true);
      expect(error.retryAfterMs).toBeGreaterThan(expectedMs - 1_500);
      expect(error.retryAfterMs).toBeLessThanOrEqual(expectedMs);
      expect(error.message).toContain('HTTP 429');
    });

    it('503 with Retry-After carries it too', async () => {
      fake.enqueue({ status: 503, errorMessage: 'loading', retryAfter: '2' });
      const { error } = await failure(provider.stream(request(), signal()));
      expect(error).toMatchObject({ code: 'ollama_error', transient: true, retryAfterMs: 2_000 });
    });

    it('a stream cut mid-answer -> stream_interrupted, transient, after the chunks before it', async () => {
      fake.enqueue({ content: ['a', 'b', 'c'], cutAfterChunks: 2 });
      const { error, chunks } = await failure(provider.stream(request(), signal()));
      expect(chunks).toEqual([
        { kind: 'content', text: 'a' },
        { kind: 'content', text: 'b' },
      ]);
      expect(error.code).toBe('stream_interrupted');
      expect(error.transient).toBe(true);
    });

    it('a stream cut before any chunk -> stream_interrupted, not "is it running?"', async () => {
      fake.enqueue({ content: ['a'], cutAfterChunks: 0 });
      const { error } = await failure(provider.stream(request(), signal()));
      expect(error.code).toBe('stream_interrupted');
      expect(error.message).not.toMatch(/Is it running/);
    });

    it('a stream that ends with neither a finish nor usage -> stream_interrupted', async () => {
      fake.enqueue({ content: ['a', 'b'], finish: false, ignoreIncludeUsage: true });
      const { error, chunks } = await failure(provider.stream(request(), signal()));
      expect(chunks).toHaveLength(2);
      expect(error.code).toBe('stream_interrupted');
      expect(error.transient).toBe(true);
    });

    it('an error event mid-stream -> stream_interrupted, transient, with the server text', async () => {
      fake.enqueue({ content: ['a', 'b', 'c'], errorAfterChunks: 1, errorMessage: 'engine died' });
      const { error, chunks } = await failure(provider.stream(request(), signal()));
      expect(chunks).toEqual([{ kind: 'content', text: 'a' }]);
      expect(error.code).toBe('stream_interrupted');
      expect(error.transient).toBe(true);
      expect(error.message).toContain('engine died');
    });

    it('nothing listening -> ollama_unreachable, transient, never names the address', async () => {
      const baseUrl = await closedPort();
      const down = new OpenAiProvider({ baseUrl, apiKey: KEY, model: DEFAULT_MODEL });
      const { error } = await failure(down.stream(request(), signal()));
      expect(error.code).toBe('ollama_unreachable');
      expect(error.transient).toBe(true);
      expect(error.message).toContain('OPENAI_BASE_URL');
      expect(error.message).not.toContain(baseUrl);
    });

    it('a connection reset before any answer -> stream_interrupted', async () => {
      const server = createServer((req) => req.socket.destroy());
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
        const reset = new OpenAiProvider({ baseUrl, apiKey: KEY, model: DEFAULT_MODEL });
        const { error } = await failure(reset.stream(request(), signal()));
        expect(error.code).toBe('stream_interrupted');
        expect(error.transient).toBe(true);
      } finally {
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    });
  });

  describe('health and models', () => {
    it('ok when the server lists the model, with details', async () => {
      await expect(provider.health()).resolves.toEqual({
        ok: true,
        message: 'ok',
        details: { baseUrl: fake.baseUrl, model: DEFAULT_MODEL, reachable: true, modelPresent: true },
      });
    });

    it('not ok when the model is not served, naming what is', async () => {
      fake.models.clear();
      fake.models.add('Qwen/Qwen3-8B');
      const health = await provider.health();
      expect(health).toMatchObject({ ok: false, details: { reachable: true, modelPresent: false } });
      expect(health.message).toContain('Qwen/Qwen3-8B');
      expect(health.message).toContain('OPENAI_MODEL');
    });

    it('not ok on a refused key, without the key', async () => {
      fake.apiKey = 'sk-other';
      const health = await provider.health();
      expect(health).toMatchObject({ ok: false, details: { reachable: true } });
      expect(health.message).toContain('OPENAI_API_KEY');
      expect(JSON.stringify(health)).not.toContain(KEY);
    });

    it('not ok when the server is down', async () => {
      const down = new OpenAiProvider({ baseUrl: await closedPort(), apiKey: null, model: DEFAULT_MODEL });
      const health = await down.health();
      expect(health).toMatchObject({ ok: false, details: { reachable: false, modelPresent: false } });
      expect(health.message).toContain('OPENAI_BASE_URL');
    });

    it('shows the base URL without credentials', async () => {
      const withUser = new OpenAiProvider({
        baseUrl: fake.baseUrl.replace('http://', 'http://me:pw@'),
        apiKey: null,
        model: DEFAULT_MODEL,
      });
      expect((await withUser.health()).details.baseUrl).toBe(fake.baseUrl);
    });

    it('lists models', async () => {
      fake.models.add('b');
      await expect(provider.listModels()).resolves.toEqual([DEFAULT_MODEL, 'b']);
    });
  });
});

describe('mapOpenAiChunk', () => {
  const chunk = (delta: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    ({
      id: 'c',
      object: 'chat.completion.chunk',
      created: 0,
      model: 'm',
      choices: [{ index: 0, delta, finish_reason: null }],
      ...extra,
    }) as Parameters<typeof mapOpenAiChunk>[0];

  it.each([
    ['content', { content: 'a' }, [{ kind: 'content', text: 'a' }]],
    ['reasoning_content', { reasoning_content: 'r' }, [{ kind: 'thinking', text: 'r' }]],
    ['reasoning', { reasoning: 'r' }, [{ kind: 'thinking', text: 'r' }]],
    ['both spellings, once', { reasoning: 'r', reasoning_content: 'r' }, [{ kind: 'thinking', text: 'r' }]],
    [
      'reasoning and content, reasoning first',
      { content: 'c', reasoning_content: 'r' },
      [
        { kind: 'thinking', text: 'r' },
        { kind: 'content', text: 'c' },
      ],
    ],
    ['role only', { role: 'assistant', content: '' }, []],
    ['nulls', { content: null, reasoning_content: null }, []],
    ['not strings', { content: 4, reasoning: { a: 1 } }, []],
  ])('%s', (_name, delta, parts) => {
    expect(mapOpenAiChunk(chunk(delta))).toEqual({ parts, usage: null, finished: false });
  });

  it('reads usage from a chunk without choices, and a finish', () => {
    expect(mapOpenAiChunk(chunk({}, { choices: [], usage: { prompt_tokens: 3, completion_tokens: 4.7, total_tokens: 7 } }))).toEqual({
      parts: [],
      usage: { promptTokens: 3, completionTokens: 4 },
      finished: false,
    });
    const finish = chunk({});
    finish.choices[0].finish_reason = 'length';
    expect(mapOpenAiChunk(finish).finished).toBe(true);
  });

  it('odd usage counts become 0', () => {
    expect(mapOpenAiChunk(chunk({}, { usage: { prompt_tokens: -1, completion_tokens: 'x' } })).usage).toEqual({
      promptTokens: 0,
      completionTokens: 0,
    });
  });
});

describe('retryAfterOf', () => {
  const h = (entries: Record<string, string>) => new Headers(entries);
  it.each([
    ['absent', {}, null],
    ['seconds', { 'retry-after': '3' }, 3_000],
    ['fractional seconds', { 'retry-after': '0.5' }, 500],
    ['retry-after-ms wins', { 'retry-after-ms': '250', 'retry-after': '3' }, 250],
    ['a date in the past', { 'retry-after': 'Wed, 21 Oct 2015 07:28:00 GMT' }, 0],
    ['garbage', { 'retry-after': 'soon' }, null],
    ['capped', { 'retry-after': '86400' }, 60_000],
  ])('%s', (_name, headers, expected) => {
    expect(retryAfterOf(h(headers))).toBe(expected);
  });
});
