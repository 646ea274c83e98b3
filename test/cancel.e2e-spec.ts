import { expect } from '@jest/globals';
/** Cancel over HTTP and Socket.IO, and clearing a conversation with work in flight. */
import { decodeOutgoing } from '../src/event-bus/envelopes';
import { KeyLayout } from '../src/event-bus/stream-names';
import { AppProcess } from './support/app-process';
import { ChatClient } from './support/chat-client';
import { eventually } from './support/eventually';
import { FakeOllama } from './support/fake-ollama';
import { freshTestRedis, pendingCount, type TestRedis, testRedisEnv } from './support/test-redis';

const LAYOUT = new KeyLayout(64);

describe('cancel', () => {
  let redis: TestRedis;
  let ollama: FakeOllama;
  let app: AppProcess;
  const clients: ChatClient[] = [];
  const tokens = Array.from({ length: 100 }, (_, i) => ` t${i}`);

  beforeAll(async () => {
    redis = await freshTestRedis();
    ollama = new FakeOllama();
    await ollama.start();
    app = await AppProcess.start({ env: { ...testRedisEnv(), OLLAMA_HOST: ollama.url, DELTA_COALESCE_MS: '0' } });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    ollama.reset();
    await eventually(
      () => pendingCount(redis),
      (n) => n === 0,
      10_000,
    );
  });

  afterAll(async () => {
    await app?.stop();
    await ollama?.stop();
    await redis?.quit();
  });

  const open = async () => {
    const client = await ChatClient.open(app.url);
    clients.push(client);
    return client;
  };
  const cancelPath = (c: ChatClient, messageId: string) => `/chat/${c.session.sessionId}/messages/${messageId}/cancel`;

  it('stops a running answer at once, keeps the partial answer, and aborts the Ollama request', async () => {
    ollama.setDefault({ content: tokens, tokenDelayMs: 30 });
    const client = await open();
    const sent = await client.send('a long story');
    const messageId = String(sent.body.messageId);
    await client.waitFor((e) => e.type === 'chat.delta' && e.payload.messageId === messageId);

    const ack = await client.emitWithAck('chat.cancel', { messageId });
    expect(ack).toEqual({ ok: true });
    const events = await client.waitForEnd(messageId);
    expect(events.at(-1)!.type).toBe('chat.cancelled');
    expect(events.filter((e) => /completed|failed/.test(e.type))).toEqual([]);
    await ollama.waitForAbort(0);
    expect(ollama.requests[0].finished).toBe(false);

    const reply = (await client.history()).body.messages.find((m) => m.role === 'assistant' && m.messageId === messageId);
    expect(reply).toMatchObject({ status: 'cancelled' });
    const kept = String(reply!.content);
    expect(kept.length).toBeGreaterThan(0);
    expect(tokens.join('').startsWith(kept)).toBe(true);
    expect(kept.length).toBeLessThan(tokens.join('').length);
    // what clients saw is a prefix of what was kept: no delta after the cancel
    const seen = events
      .filter((e) => e.type === 'chat.delta')
      .map((e) => String(e.payload.delta))
      .join('');
    expect(kept.startsWith(seen)).toBe(true);
  });

  it('never starts a queued message that is cancelled', async () => {
    ollama.setDefault({ content: tokens.slice(0, 20), tokenDelayMs: 20 });
    const client = await open();
    const first = await client.send('first, slow');
    const second = await client.send('second, to be cancelled while it waits its turn');
    const secondId = String(second.body.messageId);
    const res = await client.http('POST', cancelPath(client, secondId));
    expect(res.status).toBe(202);
    const events = await client.waitForEnd(secondId);
    // it waited behind the first message (chat.status queued) and never started
    expect(events.map((e) => e.type)).toEqual(['chat.user_message', 'chat.status', 'chat.cancelled']);

    await client.waitForEnd(String(first.body.messageId));
    await new Promise((r) => setTimeout(r, 300));
    expect(ollama.requests.map((r) => r.body.messages.at(-1)?.content)).toEqual(['first, slow']);
    expect((await client.history()).body.messages.filter((m) => m.messageId === secondId)).toEqual([
      expect.objectContaining({ role: 'user', status: 'cancelled' }),
      expect.objectContaining({ role: 'assistant', status: 'cancelled', content: '' }),
    ]);
  });

  it('a cancel racing the worker that picks the message up ends it exactly once', async () => {
    // The cancel lands before the start, between start and first delta, or mid-answer: whichever
    // script runs first, the message ends once (the cancel script or the worker's finish).
    ollama.setDefault({ content: tokens.slice(0, 5), tokenDelayMs: 5 });
    const client = await open();
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const sent = await client.send(`race ${i}`);
      const messageId = String(sent.body.messageId);
      ids.push(messageId);
      if (i % 3 !== 0) await new Promise((r) => setTimeout(r, i % 3 === 1 ? 1 : 15));
      expect((await client.http('POST', cancelPath(client, messageId))).status).toBe(202);
    }
    for (const id of ids) await client.waitForEnd(id);
    await new Promise((r) => setTimeout(r, 300));
    for (const id of ids) {
      const finals = client.events.filter((e) => e.payload.messageId === id && /completed|failed|cancelled/.test(e.type));
      expect(finals).toHaveLength(1);
    }
    const outgoing = await Promise.all(LAYOUT.partitions.map((p) => redis.xrange(p.outgoing, '-', '+')));
    const finalsInRedis = outgoing
      .flat()
      .map(([id, fields]) => decodeOutgoing(id, fields))
      .filter((d) => d.ok && ids.includes(d.value.payload.messageId) && /completed|failed|cancelled/.test(d.value.type));
    expect(finalsInRedis).toHaveLength(ids.length);
  });

  it('leaves a finished message as it is', async () => {
    const client = await open();
    const sent = await client.send('quick');
    const messageId = String(sent.body.messageId);
    await client.waitForEnd(messageId);
    const before = client.events.length;
    expect((await client.http('POST', cancelPath(client, messageId))).status).toBe(202);
    await new Promise((r) => setTimeout(r, 200));
    expect(client.events.length).toBe(before);
    expect((await client.history()).body.messages.at(-1)).toMatchObject({ status: 'completed' });
  });

  it("answers 404 for an unknown message, 400 for a bad id, 403 with another session's token", async () => {
    const client = await open();
    const other = await ChatClient.createSession(app.url);
    expect((await client.http('POST', cancelPath(client, 'no-such-message'))).status).toBe(404);
    const bad = await client.http('POST', cancelPath(client, 'a*b'));
    expect(bad).toEqual({ status: 400, body: { statusCode: 400, error: 'Bad Request', message: expect.stringContaining('messageId') } });
    expect((await client.http('POST', cancelPath(client, 'x'), undefined, other.token)).status).toBe(403);
    expect(await client.emitWithAck('chat.cancel', { messageId: '../x' })).toEqual({
      error: { statusCode: 400, error: 'Bad Request', message: expect.stringContaining('messageId') },
    });
    expect(await client.emitWithAck('chat.cancel', { messageId: 'nope' })).toEqual({
      error: { statusCode: 404, error: 'Not Found', message: expect.stringContaining('nope') },
    });
  });

  it('clearing a conversation cancels what is still running or queued', async () => {
    ollama.setDefault({ content: tokens, tokenDelayMs: 30 });
    const client = await open();
    const running = await client.send('running');
    const queued = await client.send('queued');
    const runningId = String(running.body.messageId);
    await client.waitFor((e) => e.type === 'chat.delta' && e.payload.messageId === runningId);

    expect((await client.http('DELETE', `/chat/${client.session.sessionId}`)).status).toBe(204);
    for (const id of [runningId, String(queued.body.messageId)]) {
      const events = await client.waitForEnd(id);
      expect(events.filter((e) => /completed|failed|cancelled/.test(e.type)).map((e) => e.type)).toEqual(['chat.cancelled']);
    }
    await ollama.waitForAbort(0);
    await new Promise((r) => setTimeout(r, 300));
    expect(ollama.requests).toHaveLength(1);
    const keys = LAYOUT.session(client.session.sessionId);
    expect(await redis.exists(keys.order, keys.hash)).toBe(0);
  });
});
