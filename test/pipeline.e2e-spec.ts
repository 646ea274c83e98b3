import { expect } from '@jest/globals';
/**
 * The product's spine, end to end with real parts: a real redis-server, the built app as a child
 * process, the real `ollama` client talking to the fake Ollama server, real socket.io-client sockets.
 */
import { KeyLayout } from '../src/event-bus/stream-names';
import { compareStreamIds } from '../src/event-bus/stream-reply';
import { AppProcess } from './support/app-process';
import { ChatClient, deltasOfLastAttempt, ReceivedEvent } from './support/chat-client';
import { FakeOllama } from './support/fake-ollama';
import { eventually } from './support/eventually';
import { commandsAdded, freshTestRedis, pendingCount, type TestRedis, testRedisEnv } from './support/test-redis';

const SYSTEM_PROMPT = 'You are a test assistant.';

function types(events: ReceivedEvent[]): string[] {
  return events.map((e) => e.type);
}

describe('pipeline: HTTP → chat:incoming → worker → Ollama → chat:outgoing → Socket.IO', () => {
  let redis: TestRedis;
  let ollama: FakeOllama;
  let app: AppProcess;
  const clients: ChatClient[] = [];

  const open = async (session?: ChatClient['session']) => {
    const client = await ChatClient.open(app.url, session);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    redis = await freshTestRedis();
    ollama = new FakeOllama({ defaultTokenDelayMs: 2 });
    await ollama.start();
    app = await AppProcess.start({
      env: {
        ...testRedisEnv(),
        OLLAMA_HOST: ollama.url,
        SYSTEM_PROMPT,
        DELTA_COALESCE_MS: '20',
      },
    });
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    ollama.reset();
    ollama.models.add('gpt-oss:20b');
  });

  afterAll(async () => {
    await app?.stop();
    await ollama?.stop();
    await redis?.quit();
  });

  it('streams an answer whose deltas add up to the completed content', async () => {
    ollama.setDefault({ content: ['Redis', ' Streams', ' are', ' an', ' append-only', ' log', '.'], tokenDelayMs: 5 });
    const client = await open();
    const sent = await client.send('What are Redis Streams?');
    expect(sent.status).toBe(202);
    expect(sent.body).toEqual({ messageId: expect.any(String), sessionId: client.session.sessionId, status: 'queued' });
    const messageId = String(sent.body.messageId);

    const events = await client.waitForEnd(messageId);
    expect(types(events)[0]).toBe('chat.user_message');
    expect(types(events)[1]).toBe('chat.started');
    expect(types(events).at(-1)).toBe('chat.completed');
    expect(events[1].payload.attempt).toBe(1);
    const completed = events.at(-1)!.payload;
    expect(completed.content).toBe('Redis Streams are an append-only log.');
    expect(deltasOfLastAttempt(events)).toBe(completed.content);
    expect(events.filter((e) => e.type === 'chat.delta').length).toBeGreaterThan(1);
    expect(completed.usage).toEqual({ promptTokens: expect.any(Number), completionTokens: 7 });
    expect((completed.usage as { promptTokens: number }).promptTokens).toBeGreaterThan(0);
    // every payload names its session and message, and event ids only grow
    for (const e of events) {
      expect(e.payload.sessionId).toBe(client.session.sessionId);
      expect(e.payload.eventId).toMatch(/^\d+-\d+$/);
    }
    const ids = events.map((e) => e.payload.eventId);
    expect([...ids].sort(compareStreamIds)).toEqual(ids);
    // the worker acknowledges the command once its outcome is published and stored
    await eventually(
      () => pendingCount(redis),
      (count) => count === 0,
    );
  });

  it('relays gpt-oss thinking deltas and asks Ollama for the chosen reasoning level', async () => {
    ollama.setDefault({ thinking: ['Let', ' me', ' think', '.'], content: ['Four', '.'], tokenDelayMs: 5 });
    const client = await open();
    const sent = await client.send('What is 2+2?', { think: 'high' });
    const events = await client.waitForEnd(String(sent.body.messageId));
    const thinking = events.filter((e) => e.type === 'chat.thinking');
    expect(thinking.length).toBeGreaterThan(0);
    expect(deltasOfLastAttempt(events, 'chat.thinking')).toBe('Let me think.');
    // reasoning comes before the answer
    expect(types(events).indexOf('chat.thinking')).toBeLessThan(types(events).indexOf('chat.delta'));
    const completed = events.at(-1)!.payload;
    expect(completed).toMatchObject({ content: 'Four.', thinking: 'Let me think.' });
    expect(ollama.requests.at(-1)!.body).toMatchObject({ model: 'gpt-oss:20b', think: 'high', stream: true });
  });

  it('sends the second message with the first question and answer in context', async () => {
    const client = await open();
    const first = await client.send('My name is Ada.');
    await client.waitForEnd(String(first.body.messageId));
    const second = await client.send('What is my name?');
    await client.waitForEnd(String(second.body.messageId));

    const requests = await ollama.waitForRequests(2);
    expect(requests[1].body.messages).toEqual([
      { role: 'system', content: SYSTEM_PROMPT },
      { role: 'user', content: 'My name is Ada.' },
      { role: 'assistant', content: 'You said: My name is Ada.' },
      { role: 'user', content: 'What is my name?' },
    ]);
  });

  it('keeps the history, oldest first, and clears it on DELETE', async () => {
    const client = await open();
    const first = await client.send('one', { think: 'low' });
    await client.waitForEnd(String(first.body.messageId));
    const second = await client.send('two');
    await client.waitForEnd(String(second.body.messageId));

    const history = await client.history();
    expect(history.status).toBe(200);
    expect(history.body.sessionId).toBe(client.session.sessionId);
    expect(history.body.messages).toEqual([
      { messageId: first.body.messageId, role: 'user', content: 'one', status: 'completed', createdAt: expect.any(String) },
      {
        messageId: first.body.messageId,
        role: 'assistant',
        content: 'You said: one',
        thinking: 'Thinking about: one',
        status: 'completed',
        createdAt: expect.any(String),
        model: 'gpt-oss:20b',
        usage: { promptTokens: expect.any(Number), completionTokens: expect.any(Number) },
      },
      { messageId: second.body.messageId, role: 'user', content: 'two', status: 'completed', createdAt: expect.any(String) },
      {
        messageId: second.body.messageId,
        role: 'assistant',
        content: 'You said: two',
        status: 'completed',
        createdAt: expect.any(String),
        model: 'gpt-oss:20b',
        usage: { promptTokens: expect.any(Number), completionTokens: expect.any(Number) },
      },
    ]);

    const cleared = await client.http('DELETE', `/chat/${client.session.sessionId}`);
    expect(cleared.status).toBe(204);
    // The conversation is gone, and so is its token.
    const keys = new KeyLayout(64).session(client.session.sessionId);
    expect(await redis.exists(keys.order, keys.hash, keys.events)).toBe(0);
    expect((await client.history()).status).toBe(401);
  });

  it('fails with model_not_found and a pull instruction when the model is missing, and /health says so', async () => {
    ollama.models.clear();
    const client = await open();
    const sent = await client.send('hello?');
    const events = await client.waitForEnd(String(sent.body.messageId));
    const failed = events.at(-1)!;
    expect(failed.type).toBe('chat.failed');
    expect(failed.payload.error).toEqual({ code: 'model_not_found', message: expect.stringContaining('ollama pull gpt-oss:20b') });
    // not retried: a missing model does not appear by waiting
    expect(types(events).filter((t) => t === 'chat.started')).toHaveLength(1);

    const history = await client.history();
    expect(history.body.messages.at(-1)).toMatchObject({ role: 'assistant', status: 'failed', error: { code: 'model_not_found' } });
    const dead = await redis.xrevrange(new KeyLayout(64).partitionOf(client.session.sessionId).dead, '+', '-', 'COUNT', 1);
    expect(dead[0][1].join(' ')).toContain(String(sent.body.messageId));

    const health = await fetch(`${app.url}/health`);
    expect(health.status).toBe(503);
    const body = (await health.json()) as { details: Record<string, { status: string; message?: string }> };
    expect(body.details.redis.status).toBe('up');
    expect(body.details.ai).toMatchObject({ status: 'down', message: expect.stringContaining('ollama pull gpt-oss:20b') });
  });

  it('reports healthy when Redis and the model are there', async () => {
    const health = await fetch(`${app.url}/health`);
    expect(health.status).toBe(200);
    const body = (await health.json()) as { details: Record<string, { status: string }> };
    expect(body.details.redis.status).toBe('up');
    expect(body.details.ai.status).toBe('up');
  });

  it('retries a stream cut mid-way and tells clients to discard the partial answer (attempt 2)', async () => {
    ollama.enqueue({ content: ['Half', ' an', ' answer', ' that', ' breaks'], cutAfterChunks: 2, tokenDelayMs: 5 });
    ollama.setDefault({ content: ['A', ' whole', ' answer.'], tokenDelayMs: 5 });
    const client = await open();
    const sent = await client.send('tell me');
    const events = await client.waitForEnd(String(sent.body.messageId));
    const starts = events.filter((e) => e.type === 'chat.started').map((e) => e.payload.attempt);
    expect(starts).toEqual([1, 2]);
    expect(events.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: 'A whole answer.' } });
    expect(deltasOfLastAttempt(events)).toBe('A whole answer.');
  });

  it('accepts chat.send over the socket with an ack, and other tabs of the session see the user message', async () => {
    const tab1 = await open();
    const tab2 = await open(tab1.session);
    const ack = await tab1.emitWithAck('chat.send', { content: 'from a socket' });
    expect(ack).toEqual({ messageId: expect.any(String) });
    const messageId = String(ack.messageId);
    const seen = await tab2.waitForEnd(messageId);
    expect(seen[0]).toMatchObject({ type: 'chat.user_message', payload: { content: 'from a socket', createdAt: expect.any(String) } });
    expect(seen.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: 'You said: from a socket' } });
    // same events, same order, in both tabs
    await tab1.waitForEnd(messageId);
    expect(tab1.eventsOf(messageId).map((e) => e.payload.eventId)).toEqual(seen.map((e) => e.payload.eventId));

    const bad = await tab1.emitWithAck('chat.send', { content: '', extra: 1 });
    expect(bad).toEqual({
      error: {
        statusCode: 400,
        error: 'Bad Request',
        message: expect.stringMatching(/extra should not exist.*content must not be empty|content must not be empty.*extra/),
      },
    });
  });

  it('delivers each session only its own events', async () => {
    const alice = await open();
    const bob = await open();
    const sent = await alice.send('secret of alice');
    await alice.waitForEnd(String(sent.body.messageId));
    const bobSent = await bob.send('bob here');
    await bob.waitForEnd(String(bobSent.body.messageId));
    expect(bob.events.every((e) => e.payload.sessionId === bob.session.sessionId)).toBe(true);
    expect(alice.events.every((e) => e.payload.sessionId === alice.session.sessionId)).toBe(true);
  });

  it('answers the same clientMessageId with the same messageId and generates once', async () => {
    const client = await open();
    const [a, b] = await Promise.all([
      client.send('only once', { clientMessageId: 'retry-1' }),
      client.send('only once', { clientMessageId: 'retry-1' }),
    ]);
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(a.body.messageId).toBe(b.body.messageId);
    await client.waitForEnd(String(a.body.messageId));
    const again = await client.send('only once', { clientMessageId: 'retry-1' });
    expect(again.body.messageId).toBe(a.body.messageId);
    await new Promise((r) => setTimeout(r, 200));
    expect(ollama.requests.filter((r) => r.body.messages.at(-1)?.content === 'only once')).toHaveLength(1);
    expect((await client.history()).body.messages.filter((m) => m.role === 'user')).toHaveLength(1);
  });

  it('rejects bad input with 400 naming the field, and queues nothing', async () => {
    const client = await open();
    const before = await commandsAdded(redis);
    const cases: [unknown, RegExp][] = [
      [{ sessionId: client.session.sessionId }, /content/],
      [{ sessionId: client.session.sessionId, content: '   ' }, /content must not be empty/],
      [{ sessionId: client.session.sessionId, content: 42 }, /content must be a string/],
      [{ sessionId: client.session.sessionId, content: 'x', think: 'max' }, /think must be one of/],
      [{ sessionId: client.session.sessionId, content: 'x', role: 'system' }, /property role should not exist/],
      [{ sessionId: client.session.sessionId, content: 'x', clientMessageId: '../x' }, /clientMessageId/],
      [{ sessionId: client.session.sessionId, content: 'x'.repeat(16001) }, /at most 16000 characters/],
    ];
    for (const [body, message] of cases) {
      const res = await client.http('POST', '/chat/send', body);
      expect({ body, status: res.status }).toEqual({ body, status: 400 });
      expect(res.body).toEqual({ statusCode: 400, error: 'Bad Request', message: expect.stringMatching(message) });
    }
    const malformed = await fetch(`${app.url}/chat/send`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${client.session.token}` },
      body: '{"sessionId": ',
    });
    expect(malformed.status).toBe(400);
    expect(await commandsAdded(redis)).toBe(before);
  });

  it("requires the session token: 401 without or with a forged one, 403 with another session's", async () => {
    const client = await open();
    const other = await ChatClient.createSession(app.url);
    const path = `/chat/${client.session.sessionId}/history`;
    expect((await client.http('GET', path, undefined, null)).status).toBe(401);
    expect((await client.http('GET', path, undefined, `${client.session.sessionId}.forged`)).status).toBe(401);
    const foreign = await client.http('GET', path, undefined, other.token);
    expect(foreign.status).toBe(403);
    expect(foreign.body).toEqual({ statusCode: 403, error: 'Forbidden', message: expect.any(String) });
    const send = await client.http('POST', '/chat/send', { sessionId: client.session.sessionId, content: 'x' }, other.token);
    expect(send.status).toBe(403);

    const intruder = new ChatClient(app.url, client.session);
    await expect(intruder.connect({ sessionId: client.session.sessionId, token: other.token })).rejects.toThrow('unauthorized');
    await expect(intruder.connect({ sessionId: client.session.sessionId, token: 'nope' })).rejects.toThrow('unauthorized');
    await expect(intruder.connect({ sessionId: client.session.sessionId })).rejects.toThrow('unauthorized');
    intruder.close();
  });

  it('dead-letters a malformed command without stopping the worker', async () => {
    const partition = new KeyLayout(64).partitions[5];
    const badId = await redis.xadd(partition.incoming, '*', 'v', '1', 'type', 'chat.generate', 'data', '{"sessionId":"../etc"}');
    const client = await open();
    const sent = await client.send('still alive?');
    const events = await client.waitForEnd(String(sent.body.messageId));
    expect(events.at(-1)!.type).toBe('chat.completed');
    const dead = await redis.xrange(partition.dead, '-', '+');
    expect(dead.some(([, fields]) => fields.join(' ').includes(String(badId)))).toBe(true);
    expect(app.log).toContain(`dead-lettered ${partition.incoming} ${badId}`);
  });

  it('serves Swagger UI, the OpenAPI document and the web page', async () => {
    expect((await fetch(`${app.url}/docs`)).status).toBe(200);
    const spec = (await (await fetch(`${app.url}/docs-json`)).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining(['/sessions', '/chat/send', '/chat/{sessionId}/history', '/chat/{sessionId}', '/health']),
    );
    const page = await fetch(`${app.url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('socket.io');
  });
});
