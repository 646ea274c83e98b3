/**
 * Drives the REAL openai client against FakeOpenAi: if the client is happy, the app will be too.
 * Timing assertions are deliberately loose (lower bounds only) so they hold on a busy CI machine.
 */
import OpenAI, { APIError } from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { DEFAULT_MODEL, FakeOpenAi } from './fake-openai';

const user = (content: string) => ({ role: 'user' as const, content });

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of stream) items.push(item);
  return items;
}

/** Run `fn`, expect it to reject, and return the error for closer inspection. */
async function caught(fn: () => Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await fn();
  } catch (error) {
    return error as Error & Record<string, unknown>;
  }
  throw new Error('expected a rejection');
}

type Delta = ChatCompletionChunk.Choice.Delta & { reasoning_content?: string; reasoning?: string };
const deltas = (chunks: ChatCompletionChunk[]) => chunks.flatMap((c) => c.choices.map((choice) => choice.delta as Delta));
const contentOf = (chunks: ChatCompletionChunk[]) =>
  deltas(chunks)
    .map((d) => d.content ?? '')
    .join('');

describe('FakeOpenAi with the real openai client', () => {
  const fake = new FakeOpenAi();
  let client: OpenAI;

  beforeAll(async () => {
    client = new OpenAI({ baseURL: await fake.start(), apiKey: 'sk-test', maxRetries: 0 });
  });

  afterEach(() => {
    fake.reset();
    fake.apiKey = null;
    fake.models.clear();
    fake.models.add(DEFAULT_MODEL);
  });

  afterAll(() => fake.stop());

  const streamed = (extra: Partial<OpenAI.ChatCompletionCreateParamsStreaming> = {}, options: OpenAI.RequestOptions = {}) =>
    client.chat.completions.create(
      { model: DEFAULT_MODEL, messages: [user('hello there')], stream: true, stream_options: { include_usage: true }, ...extra },
      options,
    );

  describe('chat', () => {
    it('streams the echo as SSE chunks, a finish, then usage on a chunk without choices', async () => {
      const chunks = await collect(await streamed());
      expect(contentOf(chunks)).toBe('You said: hello there');
      expect(chunks[0].choices[0]).toMatchObject({ delta: { role: 'assistant', content: '' }, finish_reason: null });
      expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === DEFAULT_MODEL)).toBe(true);
      const last = chunks[chunks.length - 1];
      expect(last.choices).toEqual([]);
      expect(last.usage).toEqual({ prompt_tokens: 2, completion_tokens: 4, total_tokens: 6 });
      expect(chunks[chunks.length - 2].choices[0].finish_reason).toBe('stop');
      expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    });

    it('sends no usage chunk without include_usage', async () => {
      const chunks = await collect(await streamed({ stream_options: undefined }));
      expect(chunks.some((c) => 'usage' in c)).toBe(false);
      expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe('stop');
    });

    it.each(['reasoning_content', 'reasoning'] as const)('streams reasoning as delta.%s before the content', async (field) => {
      fake.enqueue({ thinking: ['Hm', '...'], content: ['42'], reasoningField: field });
      const chunks = await collect(await streamed({ reasoning_effort: 'low' }));
      expect(deltas(chunks).map((d) => d[field] ?? d.content)).toEqual(['', 'Hm', '...', '42', undefined]);
    });

    it('sends both spellings at once when asked (a server in transition)', async () => {
      fake.enqueue({ thinking: ['Hm'], content: [], reasoningField: 'both' });
      const chunks = await collect(await streamed());
      expect(deltas(chunks)[1]).toEqual({ reasoning: 'Hm', reasoning_content: 'Hm' });
    });

    it('answers stream:false with one completion object', async () => {
      fake.enqueue({ thinking: ['Hm'], content: ['4', '2'] });
      const response = await client.chat.completions.create({ model: DEFAULT_MODEL, messages: [user('6*7?')] });
      expect(response.choices[0]).toMatchObject({
        message: { role: 'assistant', content: '42', reasoning_content: 'Hm' },
        finish_reason: 'stop',
      });
      expect(response.usage).toEqual({ prompt_tokens: 1, completion_tokens: 3, total_tokens: 4 });
    });

    it('records the body and the Authorization header', async () => {
      await collect(await streamed({ reasoning_effort: 'high', messages: [{ role: 'system', content: 'be brief' }, user('hi')] }));
      const [recorded] = await fake.waitForRequests(1);
      expect(recorded.body).toMatchObject({
        model: DEFAULT_MODEL,
        messages: [{ role: 'system', content: 'be brief' }, user('hi')],
        stream: true,
        stream_options: { include_usage: true },
        reasoning_effort: 'high',
      });
      expect(recorded.authorization).toBe('Bearer sk-test');
      expect(recorded).toMatchObject({ aborted: false, finished: true });
    });

    it('waits firstTokenDelayMs before the first chunk (headers come first)', async () => {
      fake.enqueue({ firstTokenDelayMs: 150, content: ['late'] });
      const startedAt = Date.now();
      const stream = await streamed();
      const headersAfter = Date.now() - startedAt;
      const chunks = await collect(stream);
      expect(contentOf(chunks)).toBe('late');
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(120);
      expect(headersAfter).toBeLessThan(120);
    });

    it('uses scripts in order, then a default function of the request', async () => {
      fake.enqueue({ content: ['one'] });
      fake.setDefault((request) => ({ content: [`n=${request.messages.length}`] }));
      expect(contentOf(await collect(await streamed()))).toBe('one');
      expect(contentOf(await collect(await streamed()))).toBe('n=1');
    });
  });

  describe('faults', () => {
    it('404s an unknown model with an OpenAI error body', async () => {
      const error = await caught(() => streamed({ model: 'nope' }));
      expect(error).toBeInstanceOf(APIError);
      expect(error).toMatchObject({ status: 404, code: 'model_not_found', type: 'invalid_request_error' });
      expect(error.message).toContain('The model `nope` does not exist');
    });

    it('answers a scripted status with Retry-After', async () => {
      fake.enqueue({ status: 429, errorMessage: 'slow down', retryAfter: '7' });
      const error = await caught(() => streamed());
      expect(error).toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
      expect((error as unknown as APIError).headers?.get('retry-after')).toBe('7');
    });

    it('requires the key when it has one, echoing what it got', async () => {
      fake.apiKey = 'sk-right';
      const error = await caught(() => streamed());
      expect(error).toMatchObject({ status: 401, code: 'invalid_api_key' });
      expect(error.message).toContain('sk-test');
      await expect(client.models.list()).rejects.toMatchObject({ status: 401 });
    });

    it('sends an error event mid-stream, which the client throws', async () => {
      fake.enqueue({ content: ['a', 'b', 'c'], errorAfterChunks: 2, errorMessage: 'engine died' });
      const received: string[] = [];
      const error = await caught(async () => {
        for await (const chunk of await streamed()) received.push(chunk.choices[0]?.delta.content ?? '');
      });
      expect(error).toBeInstanceOf(APIError);
      expect(error.message).toContain('engine died');
      expect(received).toEqual(['', 'a', 'b']);
      expect(fake.requests[0]).toMatchObject({ finished: true, aborted: false });
    });

    it('cuts the connection after N chunks', async () => {
      fake.enqueue({ content: ['a', 'b', 'c'], cutAfterChunks: 2 });
      const received: string[] = [];
      await expect(
        (async () => {
          for await (const chunk of await streamed()) received.push(chunk.choices[0]?.delta.content ?? '');
        })(),
      ).rejects.toThrow();
      expect(received).toEqual(['', 'a', 'b']);
      expect(fake.requests[0]).toMatchObject({ finished: false, aborted: false });
    });

    it('notices when the client aborts a hanging stream', async () => {
      fake.enqueue({ hang: true });
      const controller = new AbortController();
      const stream = await streamed({}, { signal: controller.signal });
      const next = stream[Symbol.asyncIterator]().next();
      controller.abort();
      await next.catch(() => undefined); // the client may end quietly or throw: either is an abort
      await fake.waitForAbort(0);
      expect(fake.requests[0]).toMatchObject({ aborted: true, finished: false });
    });

    it('notices an abort before any headers', async () => {
      fake.enqueue({ hangBeforeHeaders: true });
      const controller = new AbortController();
      const pending = streamed({}, { signal: controller.signal });
      await fake.waitForRequests(1);
      controller.abort();
      await expect(pending).rejects.toThrow();
      await fake.waitForAbort(0);
    });
  });

  describe('models and routes', () => {
    it('lists the models', async () => {
      fake.models.add('other');
      const page = await client.models.list();
      expect(page.data.map((m) => m.id)).toEqual([DEFAULT_MODEL, 'other']);
      expect(page.data[0]).toMatchObject({ object: 'model', owned_by: 'vllm' });
    });

    it('404s unknown routes like FastAPI and rejects malformed bodies with 400', async () => {
      const missing = await fetch(`${fake.url}/api/chat`);
      expect([missing.status, await missing.json()]).toEqual([404, { detail: 'Not Found' }]);
      const post = (body: string) => fetch(`${fake.baseUrl}/chat/completions`, { method: 'POST', body });
      for (const body of ['{"model":', '{"messages":[]}', JSON.stringify({ model: DEFAULT_MODEL, messages: 'hi' })]) {
        const response = await post(body);
        expect(response.status).toBe(400);
        expect(((await response.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
      }
      expect(fake.requests).toHaveLength(0);
    });
  });
});

describe('FakeOpenAi lifecycle', () => {
  it('stops promptly with a hanging request open, and can start again', async () => {
    const fake = new FakeOpenAi();
    const client = new OpenAI({ baseURL: await fake.start(), apiKey: 'k', maxRetries: 0 });
    fake.enqueue({ hangBeforeHeaders: true });
    const pending = client.chat.completions.create({ model: DEFAULT_MODEL, messages: [user('x')] });
    await fake.waitForRequests(1);
    const startedAt = Date.now();
    await Promise.all([fake.stop(), fake.stop()]);
    expect(Date.now() - startedAt).toBeLessThan(1_000);
    await expect(pending).rejects.toThrow();
    expect(fake.requests[0]).toMatchObject({ aborted: false, finished: false });
    expect(() => fake.url).toThrow(/not started/);

    const again = new OpenAI({ baseURL: await fake.start(), apiKey: 'k', maxRetries: 0 });
    await expect(again.models.list()).resolves.toBeDefined();
    await fake.stop();
  });
});
