import { expect } from '@jest/globals';
/**
 * The pipeline with AI_PROVIDER=openai, end to end: the built API (with its in-process worker) as a
 * child process, the official `openai` client in it talking to the fake OpenAI-compatible server
 * (real SSE: `data: {chunk}`, `data: [DONE]`, OpenAI error bodies), real socket.io-client sockets and
 * Redis (a single server, or the cluster in the e2e-cluster project). The same outcomes the Ollama
 * suites check: what the client sees, what the server was asked, what the history keeps.
 */
import { AppProcess } from './support/app-process';
import { ChatClient, deltasOfLastAttempt, ReceivedEvent } from './support/chat-client';
import { FakeOpenAi } from './support/fake-openai';
import { eventually } from './support/eventually';
import { freshTestRedis, pendingCount, type TestRedis, testRedisEnv } from './support/test-redis';

const MODEL = 'openai/gpt-oss-20b';
const API_KEY = 'sk-test-0123456789abcdef-secret';
const SYSTEM_PROMPT = 'You are the OpenAI provider test assistant.';

describe('AI_PROVIDER=openai (an OpenAI-compatible server: vLLM, llama-server, LM Studio, OpenAI)', () => {
  let redis: TestRedis;
  let server: FakeOpenAi;
  let app: AppProcess;
  const clients: ChatClient[] = [];

  const open = async () => {
    const client = await ChatClient.open(app.url);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    redis = await freshTestRedis();
    server = new FakeOpenAi({ models: [MODEL], defaultTokenDelayMs: 2 });
    server.apiKey = API_KEY;
    await server.start();
    app = await AppProcess.start({
      env: {
        ...testRedisEnv(),
        AI_PROVIDER: 'openai',
        OPENAI_BASE_URL: server.baseUrl,
        OPENAI_API_KEY: API_KEY,
        OPENAI_MODEL: MODEL,
        SYSTEM_PROMPT,
        DELTA_COALESCE_MS: '0',
        SHUTDOWN_GRACE_MS: '1000',
      },
    });
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    server.reset();
    server.models.add(MODEL);
    server.apiKey = API_KEY;
  });

  afterAll(async () => {
    await app?.stop();
    await server?.stop();
    await redis?.quit();
  });

  async function sendAndWaitForEnd(client: ChatClient, content: string, extra: Record<string, unknown> = {}) {
    const sent = await client.send(content, extra);
    expect(sent.status).toBe(202);
    const messageId = String(sent.body.messageId);
    return { messageId, events: await client.waitForEnd(messageId, 15_000) };
  }

  const finalOf = (events: ReceivedEvent[]) => events.filter((e) => /^chat\.(completed|failed|cancelled)$/.test(e.type));

  it('streams reasoning as chat.thinking and the answer as chat.delta; usage in chat.completed; the request as the server expects it', async () => {
    server.enqueue({ thinking: ['Let', ' me', ' think'], content: ['Hello', ' from', ' vLLM'], promptTokens: 21, completionTokens: 6 });
    const client = await open();
    const { messageId, events } = await sendAndWaitForEnd(client, 'Say hello', { think: 'high' });

    expect(events.filter((e) => e.type === 'chat.thinking').map((e) => e.payload.delta)).toEqual(['Let', ' me', ' think']);
    expect(deltasOfLastAttempt(events)).toBe('Hello from vLLM');
    expect(finalOf(events)).toHaveLength(1);
    expect(events.at(-1)).toMatchObject({
      type: 'chat.completed',
      payload: { messageId, content: 'Hello from vLLM', thinking: 'Let me think', usage: { promptTokens: 21, completionTokens: 6 } },
    });

    const [request] = server.requests;
    expect(request.authorization).toBe(`Bearer ${API_KEY}`);
    expect(request.body).toMatchObject({ model: MODEL, stream: true, stream_options: { include_usage: true }, reasoning_effort: 'high' });
    expect(request.body.messages).toEqual([
      { role: 'system', content: SYSTEM_PROMPT },
      { role: 'user', content: 'Say hello' },
    ]);
    const history = await client.history();
    expect(history.body.messages.find((m) => m.role === 'assistant')).toMatchObject({ content: 'Hello from vLLM', status: 'completed' });
    expect(await pendingCount(redis)).toBe(0);
  });

  it('sends the earlier turns of the conversation', async () => {
    const client = await open();
    await sendAndWaitForEnd(client, 'first');
    await sendAndWaitForEnd(client, 'second');
    expect(server.requests.at(-1)!.body.messages).toEqual([
      { role: 'system', content: SYSTEM_PROMPT },
      { role: 'user', content: 'first' },
      { role: 'assistant', content: 'You said: first' },
      { role: 'user', content: 'second' },
    ]);
  });

  it('a cancel closes the HTTP request at the server', async () => {
    server.enqueue({ content: Array.from({ length: 200 }, (_, i) => ` w${i}`), tokenDelayMs: 20 });
    const client = await open();
    const sent = await client.send('long one');
    const messageId = String(sent.body.messageId);
    await client.waitFor((e) => e.type === 'chat.delta' && e.payload.messageId === messageId);
    expect((await client.http('POST', `/chat/${client.session.sessionId}/messages/${messageId}/cancel`)).status).toBe(202);
    await server.waitForAbort(0);
    expect(finalOf(await client.waitForEnd(messageId)).map((e) => e.type)).toEqual(['chat.cancelled']);
    expect(server.requests[0].aborted).toBe(true);
  });

  it('a refused key fails at once as provider_auth, never retried, the key never shown or logged', async () => {
    server.apiKey = 'sk-another-key';
    const client = await open();
    const { events } = await sendAndWaitForEnd(client, 'hi');
    const [failed] = finalOf(events);
    expect(failed).toMatchObject({ type: 'chat.failed', payload: { error: { code: 'provider_auth' } } });
    expect(String((failed.payload.error as { message: string }).message)).toMatch(/OPENAI_API_KEY/);
    expect(JSON.stringify(events)).not.toContain(API_KEY);
    // not retried: one attempt, no retry announced (the fake refuses before it records a request)
    expect(events.filter((e) => e.type === 'chat.started').map((e) => e.payload.attempt)).toEqual([1]);
    expect(events.filter((e) => e.type === 'chat.status' && e.payload.state === 'retrying')).toEqual([]);
    expect(app.output.join('\n')).not.toContain(API_KEY);
  });

  it('a model the server does not have fails as model_not_found', async () => {
    server.enqueue({ status: 404, errorMessage: `The model \`${MODEL}\` does not exist.` });
    const client = await open();
    const { events } = await sendAndWaitForEnd(client, 'hi');
    expect(finalOf(events)).toMatchObject([{ type: 'chat.failed', payload: { error: { code: 'model_not_found' } } }]);
    expect(server.requests).toHaveLength(1);
  });

  it('429 with Retry-After is retried after it and then answers; a stream cut mid-answer is retried as a new attempt', async () => {
    server.enqueue({ status: 429, errorMessage: 'slow down', retryAfter: '1' }, { content: ['a', 'b', 'c'], cutAfterChunks: 2 });
    const client = await open();
    const { events } = await sendAndWaitForEnd(client, 'retry me');
    expect(server.requests).toHaveLength(3);
    // the first retry waited for the server's Retry-After (1 s), not the 0.5 s backoff
    expect(server.requests[1].receivedAt - server.requests[0].receivedAt).toBeGreaterThanOrEqual(950);
    expect(events.filter((e) => e.type === 'chat.started').map((e) => e.payload.attempt)).toEqual([1, 2, 3]);
    expect(finalOf(events)).toMatchObject([{ type: 'chat.completed', payload: { content: 'You said: retry me' } }]);
    expect(deltasOfLastAttempt(events)).toBe('You said: retry me');
  });

  it("GET /models lists the server's models; a send naming one is asked of the server with that model", async () => {
    server.models.add('Qwen/Qwen3-8B');
    // the list is read at most every 30 s: this app has not read it yet in this suite
    const listed = await fetch(`${app.url}/models`);
    expect(await listed.json()).toEqual({ default: MODEL, models: [MODEL, 'Qwen/Qwen3-8B'], reachable: true });
    const client = await open();
    const { events } = await sendAndWaitForEnd(client, 'which model?', { model: 'Qwen/Qwen3-8B' });
    expect(finalOf(events)).toMatchObject([{ type: 'chat.completed', payload: { model: 'Qwen/Qwen3-8B' } }]);
    expect(server.requests.map((r) => r.body.model)).toEqual(['Qwen/Qwen3-8B']);
    // the window is fitted the same way; num_ctx is Ollama's and is never sent here
    expect(server.requests[0].body).not.toHaveProperty('options');
  });

  it('/health asks the server for its models', async () => {
    const healthy = await eventually(
      async () => (await fetch(`${app.url}/health`)).status,
      (status) => status === 200,
      5000,
    );
    expect(healthy).toBe(200);
    server.models.clear();
    const body = (await (await fetch(`${app.url}/health`)).json()) as { details: { ai: { status: string; message: string } } };
    expect(body.details.ai).toMatchObject({ status: 'down' });
    expect(body.details.ai.message).toContain(MODEL);
  });
});
