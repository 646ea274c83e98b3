import { expect } from '@jest/globals';
/**
 * Drives the REAL ollama-js client against FakeOllama: if the client is happy, the app will be too.
 * Timing assertions are deliberately loose (lower bounds only) so they hold on a busy CI machine.
 */
import { Ollama } from 'ollama';
import type { ChatResponse } from 'ollama';
import { DEFAULT_MODEL, FakeOllama, OLLAMA_DEFAULT_NUM_CTX, promptTokens, tokenize } from './fake-ollama';

const user = (content: string) => ({ role: 'user', content });

/** Collect every chunk of a streamed answer. */
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

const contentOf = (chunks: ChatResponse[]) => chunks.map((c) => c.message.content).join('');
const thinkingOf = (chunks: ChatResponse[]) => chunks.map((c) => c.message.thinking ?? '').join('');

describe('FakeOllama with the real ollama client', () => {
  const fake = new FakeOllama({ pullDelayMs: 1 });
  let client: Ollama;

  beforeAll(async () => {
    client = new Ollama({ host: await fake.start(0) });
  });

  afterEach(() => {
    client.abort();
    fake.reset();
    fake.models.clear();
    fake.models.add(DEFAULT_MODEL);
  });

  afterAll(() => fake.stop());

  describe('chat', () => {
    it('streams the default echo token by token and ends with a done line carrying usage', async () => {
      const stream = await client.chat({ model: DEFAULT_MODEL, messages: [user('hello there  world')], stream: true });
      const chunks = await collect(stream);

      const last = chunks[chunks.length - 1];
      const tokens = chunks.slice(0, -1);
      expect(tokens.map((c) => c.message.content)).toEqual(['You', ' said:', ' hello', ' there', '  world']);
      expect(contentOf(chunks)).toBe('You said: hello there  world');
      expect(tokens.every((c) => c.done === false && c.message.role === 'assistant')).toBe(true);
      expect(tokens.some((c) => c.message.thinking !== undefined)).toBe(false);
      expect(last).toMatchObject({
        model: DEFAULT_MODEL,
        done: true,
        done_reason: 'stop',
        message: { role: 'assistant', content: '' },
        // o200k tokens of the prompt, with each message's frame
        prompt_eval_count: promptTokens([user('hello there  world')]),
        eval_count: 5,
      });
      for (const field of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration'] as const) {
        expect(last[field]).toBeGreaterThan(0);
      }
      expect(Number.isNaN(Date.parse(String(last.created_at)))).toBe(false);
    });

    it('streams thinking tokens before the content when think is set', async () => {
      const stream = await client.chat({ model: DEFAULT_MODEL, messages: [user('why?')], think: 'low', stream: true });
      const chunks = (await collect(stream)).slice(0, -1);

      const firstContent = chunks.findIndex((c) => c.message.content !== '');
      expect(firstContent).toBeGreaterThan(0);
      expect(chunks.slice(0, firstContent).every((c) => c.message.thinking && c.message.content === '')).toBe(true);
      expect(thinkingOf(chunks)).toBe('Thinking about: why?');
      expect(contentOf(chunks)).toBe('You said: why?');
    });

    it('answers stream:false with one object holding the joined message', async () => {
      fake.enqueue({ thinking: ['Hm', '...'], content: ['4', '2'] });
      const response = await client.chat({ model: DEFAULT_MODEL, messages: [user('6*7?')], stream: false });

      expect(response).toMatchObject({
        model: DEFAULT_MODEL,
        done: true,
        done_reason: 'stop',
        message: { role: 'assistant', content: '42', thinking: 'Hm...' },
        prompt_eval_count: promptTokens([user('6*7?')]),
        eval_count: 4,
      });
    });

    it('uses scripted tokens and usage overrides, FIFO, then falls back to the default', async () => {
      fake.enqueue({ content: ['one'], promptEvalCount: 99, evalCount: 7 }, { content: ['two'] });
      const answer = async () => collect(await client.chat({ model: DEFAULT_MODEL, messages: [user('x')], stream: true }));

      const first = await answer();
      expect(contentOf(first)).toBe('one');
      expect(first[first.length - 1]).toMatchObject({ prompt_eval_count: 99, eval_count: 7 });
      expect(contentOf(await answer())).toBe('two');
      expect(contentOf(await answer())).toBe('You said: x');
    });

    it('uses a default script function of the request', async () => {
      fake.setDefault((request) => ({ content: tokenize(`model=${request.model} n=${request.messages.length}`) }));
      const response = await client.chat({ model: DEFAULT_MODEL, messages: [user('a'), user('b')], stream: false });
      expect(response.message.content).toBe(`model=${DEFAULT_MODEL} n=2`);
    });

    it('records requests with their messages and options', async () => {
      await client.chat({
        model: DEFAULT_MODEL,
        messages: [{ role: 'system', content: 'be brief' }, user('hi')],
        think: 'high',
        options: { temperature: 0.2 },
        keep_alive: '5m',
        stream: false,
      });
      const [recorded] = await fake.waitForRequests(1);

      expect(recorded.body).toEqual({
        model: DEFAULT_MODEL,
        messages: [{ role: 'system', content: 'be brief' }, user('hi')],
        stream: false,
        think: 'high',
        options: { temperature: 0.2 },
        keep_alive: '5m',
      });
      expect(recorded).toMatchObject({ aborted: false, finished: true });
      expect(recorded.receivedAt).toBeLessThanOrEqual(Date.now());
    });

    it('waits firstTokenDelayMs before the first chunk (headers come first)', async () => {
      fake.enqueue({ firstTokenDelayMs: 150, content: ['late'] });
      const startedAt = Date.now();
      const stream = await client.chat({ model: DEFAULT_MODEL, messages: [user('x')], stream: true });
      const headersAfter = Date.now() - startedAt;

      const iterator = stream[Symbol.asyncIterator]();
      const first = await iterator.next();
      const firstChunkAfter = Date.now() - startedAt;

      expect(first.value).toMatchObject({ message: { content: 'late' } });
      expect(firstChunkAfter).toBeGreaterThanOrEqual(120);
      expect(headersAfter).toBeLessThan(firstChunkAfter);
      await collect({ [Symbol.asyncIterator]: () => iterator });
    });

    it('answers a chat without messages like Ollama loading the model, without using a script', async () => {
      fake.enqueue({ content: ['kept'] });
      const response = await client.chat({ model: DEFAULT_MODEL, messages: [], stream: false });
      expect(response).toMatchObject({ done: true, done_reason: 'load', message: { content: '' } });
      expect(contentOf(await collect(await client.chat({ model: DEFAULT_MODEL, messages: [user('x')], stream: true })))).toBe('kept');
    });
  });

  describe('faults', () => {
    it('404s an unknown model with Ollama’s message', async () => {
      const error = await caught(() => client.chat({ model: 'nope:1b', messages: [user('x')], stream: true }));
      expect(error).toMatchObject({
        name: 'ResponseError',
        status_code: 404,
        message: 'model "nope:1b" not found, try pulling it first',
      });
      expect(fake.requests[0]).toMatchObject({ finished: true, aborted: false });
    });

    it('answers a scripted status with a ResponseError', async () => {
      fake.enqueue({ status: 500, errorMessage: 'out of memory' });
      const error = await caught(() => client.chat({ model: DEFAULT_MODEL, messages: [user('x')], stream: true }));
      expect(error).toMatchObject({ name: 'ResponseError', status_code: 500, message: 'out of memory' });
    });

    it('sends an error line mid-stream, which the client throws', async () => {
      fake.enqueue({ content: ['a', 'b', 'c', 'd'], errorAfterChunks: 2, errorMessage: 'runner crashed' });
      const stream = await client.chat({ model: DEFAULT_MODEL, messages: [user('x')], stream: true });
      const received: string[] = [];

      const error = await caught(async () => {
        for await (const chunk of stream) received.push(chunk.message.content);
      });
      expect(error.message).toBe('runner crashed');
      expect(received).toEqual(['a', 'b']);
      expect(fake.requests[0]).toMatchObject({ finished: true, aborted: false });
    });

    it('turns an error into HTTP 500 for stream:false', async () => {
      fake.enqueue({ errorAfterChunks: 1, errorMessage: 'boom' });
      const error = await caught(() => client.chat({ model: DEFAULT_MODEL, messages: [user('x')], stream: false }));
      expect(error).toMatchObject({ name: 'ResponseError', status_code: 500, message: 'boom' });
    });

    it('cuts the connection after N chunks without a done line', async () => {
      fake.enqueue({ content: ['a', 'b', 'c'], cutAfterChunks: 2 });
      const stream = await client.chat({ model: DEFAULT_MODEL, messages: [user('x')], stream: true });
      const received: string[] = [];

      await expect(
        (async () => {
          for await (const chunk of stream) received.push(chunk.message.content);
        })(),
      ).rejects.toThrow();
      expect(received).toEqual(['a', 'b']);
      expect(fake.requests[0]).toMatchObject({ finished: false, aborted: false });
    });

    it('notices when the client aborts a hanging stream (iterator.abort)', async () => {
      fake.enqueue({ hang: true });
      const stream = await client.chat({ model: DEFAULT_MODEL, messages: [user('x')], stream: true });
      const next = stream[Symbol.asyncIterator]().next();

      stream.abort();
      await expect(next).rejects.toThrow();
      await fake.waitForAbort(0);
      expect(fake.requests[0]).toMatchObject({ aborted: true, finished: false });
    });

    it('notices when the client aborts a slow stream (client.abort)', async () => {
      fake.enqueue({ content: ['a', 'b', 'c'], tokenDelayMs: 1_000, firstTokenDelayMs: 0 });
      const stream = await client.chat({ model: DEFAULT_MODEL, messages: [user('x')], stream: true });
      const iterator = stream[Symbol.asyncIterator]();
      expect((await iterator.next()).value).toMatchObject({ message: { content: 'a' } });

      client.abort();
      await expect(iterator.next()).rejects.toThrow();
      await fake.waitForAbort(0);
    });

    it('times out waitForAbort with a helpful message', async () => {
      await expect(fake.waitForAbort(3, 20)).rejects.toThrow(/timed out after 20 ms .*#3/);
    });
  });

  describe('model management', () => {
    it('lists the models', async () => {
      fake.models.add('other:7b');
      const { models } = await client.list();
      expect(models.map((m) => m.name)).toEqual([DEFAULT_MODEL, 'other:7b']);
      expect(models[0]).toMatchObject({
        model: DEFAULT_MODEL,
        size: expect.any(Number),
        digest: expect.stringMatching(/^[0-9a-f]{64}$/),
        details: { format: 'gguf', family: 'gptoss', parameter_size: '20.9B', quantization_level: 'MXFP4' },
      });
    });

    it('shows a model, and 404s an unknown one', async () => {
      const shown = await client.show({ model: DEFAULT_MODEL });
      expect(shown).toMatchObject({
        capabilities: ['completion', 'tools', 'thinking'],
        details: { family: 'gptoss' },
        modelfile: expect.stringContaining(`FROM ${DEFAULT_MODEL}`),
      });
      expect(shown.model_info).toMatchObject({ 'general.architecture': 'gptoss' });

      const error = await caught(() => client.show({ model: 'ghost' }));
      expect(error).toMatchObject({ name: 'ResponseError', status_code: 404, message: "model 'ghost' not found" });
    });

    it('streams pull progress, after which the model exists', async () => {
      const progress = await collect(await client.pull({ model: 'tinyllama', stream: true }));
      const statuses = progress.map((p) => p.status);

      expect(statuses[0]).toBe('pulling manifest');
      expect(statuses.slice(-3)).toEqual(['verifying sha256 digest', 'writing manifest', 'success']);
      const layers = progress.filter((p) => p.status.startsWith('pulling ') && p.digest);
      expect(layers.length).toBeGreaterThan(2);
      for (const line of layers) {
        expect(line.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
        expect(line.status).toBe(`pulling ${line.digest.slice(7, 19)}`);
        expect(line.completed).toBeLessThanOrEqual(line.total);
      }
      expect(layers[layers.length - 1].completed).toBe(layers[layers.length - 1].total);

      expect((await client.list()).models.map((m) => m.name)).toContain('tinyllama:latest');
      const answer = await client.chat({ model: 'tinyllama', messages: [user('hi')], stream: false });
      expect(answer.message.content).toBe('You said: hi');
    });

    it('pulls without streaming', async () => {
      await expect(client.pull({ model: 'other:3b', stream: false })).resolves.toEqual({ status: 'success' });
      expect(fake.models.has('other:3b')).toBe(true);
    });
  });

  describe('plain HTTP', () => {
    const get = (path: string) => fetch(`${fake.url}${path}`);
    const post = (path: string, body: string) => fetch(`${fake.url}${path}`, { method: 'POST', body });

    it('serves the root, the version and 404/405 like Ollama', async () => {
      const root = await get('/');
      expect(root.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(await root.text()).toBe('Ollama is running');
      expect(await client.version()).toEqual({ version: '0.12.6' });

      const missing = await get('/api/nothing');
      expect([missing.status, await missing.text()]).toEqual([404, '404 page not found']);
      const wrongMethod = await get('/api/chat');
      expect([wrongMethod.status, await wrongMethod.text()]).toEqual([405, '405 method not allowed']);
    });

    it('streams NDJSON by default and rejects malformed bodies with 400', async () => {
      const streamed = await post('/api/chat', JSON.stringify({ model: DEFAULT_MODEL, messages: [user('yo')] }));
      expect(streamed.headers.get('content-type')).toBe('application/x-ndjson');
      const lines = (await streamed.text())
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as ChatResponse);
      expect(lines[lines.length - 1].done).toBe(true);

      const cases: [string, RegExp][] = [
        ['{"model":', /^unexpected EOF$/],
        ['hello', /^invalid character 'h' looking for beginning of value$/],
        ['', /^missing request body$/],
        ['{"messages":[]}', /^model is required$/],
        [JSON.stringify({ model: DEFAULT_MODEL, messages: 'hi' }), /cannot unmarshal string/],
        [JSON.stringify({ model: DEFAULT_MODEL, think: 'max' }), /invalid think value/],
      ];
      for (const [body, message] of cases) {
        const response = await post('/api/chat', body);
        expect(response.status).toBe(400);
        expect(response.headers.get('content-type')).toMatch(/^application\/json/);
        expect(((await response.json()) as { error: string }).error).toMatch(message);
      }
      expect(fake.requests).toHaveLength(1); // malformed requests are not recorded
    });
  });
});

describe('FakeOllama lifecycle', () => {
  it('stops promptly with a hanging request open, twice in a row, and can start again', async () => {
    const fake = new FakeOllama();
    const client = new Ollama({ host: await fake.start() });
    fake.enqueue({ hang: true });
    const pending = client.chat({ model: DEFAULT_MODEL, messages: [user('x')], stream: false });
    await fake.waitForRequests(1);

    const startedAt = Date.now();
    await Promise.all([fake.stop(), fake.stop()]);
    expect(Date.now() - startedAt).toBeLessThan(1_000);
    await expect(pending).rejects.toThrow();
    expect(fake.requests[0]).toMatchObject({ aborted: false, finished: false });
    expect(() => fake.url).toThrow(/not started/);
    await fake.stop();

    const again = new Ollama({ host: await fake.start() });
    await expect(again.version()).resolves.toEqual({ version: '0.12.6' });
    await fake.stop();
  });

  it('streams with the configured default token delay', async () => {
    const fake = new FakeOllama({ defaultTokenDelayMs: 30, models: ['m:1'] });
    const client = new Ollama({ host: await fake.start() });
    try {
      const startedAt = Date.now();
      const chunks = await collect(await client.chat({ model: 'm:1', messages: [user('a b')], stream: true }));
      expect(contentOf(chunks)).toBe('You said: a b');
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(4 * 30 - 15); // 4 tokens, loosely
    } finally {
      await fake.stop();
    }
  });

  it('refuses a prompt larger than its num_ctx (Ollama would cut it silently), and stop() then fails the suite', async () => {
    const fake = new FakeOllama();
    const client = new Ollama({ host: await fake.start() });
    const long = 'stone river '.repeat(40);
    expect(promptTokens([user(long)])).toBeGreaterThan(64);
    await expect(client.chat({ model: DEFAULT_MODEL, messages: [user(long)], options: { num_ctx: 64 } })).rejects.toThrow(
      /exceeds num_ctx 64/,
    );
    // without num_ctx, Ollama's default window applies
    await expect(client.chat({ model: DEFAULT_MODEL, messages: [user(long)] })).resolves.toMatchObject({ done: true });
    expect(fake.overflows).toEqual([{ promptTokens: promptTokens([user(long)]), numCtx: 64 }]);
    expect(OLLAMA_DEFAULT_NUM_CTX).toBe(4096);
    await expect(fake.stop()).rejects.toThrow(/1 prompt\(s\) exceeded num_ctx/);
  });

  it('lets a test that expects overflows stop cleanly', async () => {
    const fake = new FakeOllama({ allowOverflow: true });
    const client = new Ollama({ host: await fake.start() });
    await expect(client.chat({ model: DEFAULT_MODEL, messages: [user('a b c d e f g h')], options: { num_ctx: 4 } })).rejects.toThrow(
      /num_ctx/,
    );
    expect(fake.overflows).toHaveLength(1);
    await expect(fake.stop()).resolves.toBeUndefined();
  });
});
