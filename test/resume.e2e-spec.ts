import { expect } from '@jest/globals';
/**
 * Reconnecting without loss: Socket.IO (`auth.lastEventId`), SSE (`Last-Event-ID`) and the plain
 * WebSocket (`?lastEventId=`) replay the session log after the client's last id, then go live: the
 * events received before and after the reconnect are exactly the session's log, no gap, no duplicate.
 */
import { WebSocket } from 'ws';
import { AppProcess } from './support/app-process';
import { ChatClient, deltasOfLastAttempt, ReceivedEvent } from './support/chat-client';
import { FakeOllama } from './support/fake-ollama';
import { SseClient } from './support/sse-client';
import { freshTestRedis, keyLayout, type TestRedis, testRedisEnv } from './support/test-redis';

const TOKENS = Array.from({ length: 60 }, (_, i) => ` tok${i}`);

describe('resume', () => {
  let redis: TestRedis;
  let ollama: FakeOllama;
  let app: AppProcess;
  const closers: (() => unknown)[] = [];

  beforeAll(async () => {
    redis = await freshTestRedis();
    ollama = new FakeOllama();
    await ollama.start();
    app = await AppProcess.start({
      env: { ...testRedisEnv(), OLLAMA_HOST: ollama.url, DELTA_COALESCE_MS: '0', SESSION_EVENTS_MAX_LEN: '100' },
    });
  });

  beforeEach(() => ollama.setDefault({ content: TOKENS, tokenDelayMs: 20 }));

  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
    ollama.reset();
  });

  afterAll(async () => {
    await app?.stop();
    await ollama?.stop();
    await redis?.quit();
  });

  const open = async (session?: ChatClient['session']) => {
    const client = await ChatClient.open(app.url, session);
    closers.push(() => client.close());
    return client;
  };

  /** The session's log: the authoritative sequence of eventIds. */
  const logIds = async (sessionId: string) => (await redis.xrange(keyLayout().session(sessionId).events, '-', '+')).map(([id]) => id);

  const idsOf = (events: ReceivedEvent[]) => events.map((e) => String(e.payload.eventId));

  it('Socket.IO: a socket that reconnects mid-stream with lastEventId gets exactly the events it missed, then live ones', async () => {
    const first = await open();
    const sent = await first.send('tell me a long story');
    const messageId = String(sent.body.messageId);
    await first.waitFor((e) => e.type === 'chat.delta' && e.payload.delta === ' tok10');
    first.close();
    const before = [...first.events];
    const lastEventId = String(before.at(-1)!.payload.eventId);
    await new Promise((r) => setTimeout(r, 200)); // events keep coming while we are away

    const second = new ChatClient(app.url, first.session);
    closers.push(() => second.close());
    await second.connect({ ...first.session, lastEventId });
    await second.waitForEnd(messageId);

    const all = [...before, ...second.events];
    expect(idsOf(all)).toEqual(await logIds(first.session.sessionId)); // no gap, no duplicate, in order
    expect(deltasOfLastAttempt(all)).toBe(TOKENS.join(''));
    expect(all.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: TOKENS.join('') } });
  });

  it('SSE: Last-Event-ID resumes the stream the same way', async () => {
    const client = await open();
    const url = `${app.url}/chat/${client.session.sessionId}/events?token=${encodeURIComponent(client.session.token)}`;
    const sse1 = new SseClient();
    await sse1.open(url);
    expect(sse1.status).toBe(200);
    const sent = await client.send('stream it over SSE');
    const messageId = String(sent.body.messageId);
    await sse1.waitFor((f) => f.event === 'chat.delta' && f.data.delta === ' tok5');
    await sse1.close();
    const before = [...sse1.frames];
    expect(before.every((f) => f.id === f.data.eventId)).toBe(true);

    const sse2 = new SseClient();
    closers.push(() => sse2.close());
    await sse2.open(`${app.url}/chat/${client.session.sessionId}/events`, {
      authorization: `Bearer ${client.session.token}`,
      'last-event-id': String(before.at(-1)!.id),
    });
    await sse2.waitFor((f) => f.event === 'chat.completed' && f.data.messageId === messageId);
    const all = [...before, ...sse2.frames];
    expect(all.map((f) => f.id)).toEqual(await logIds(client.session.sessionId));
    expect(all[0]).toMatchObject({ event: 'chat.user_message', data: { content: 'stream it over SSE' } });
  });

  it('plain WebSocket: events as JSON frames, resumable with ?lastEventId=', async () => {
    const client = await open();
    const base = `${app.url.replace('http', 'ws')}/ws/${client.session.sessionId}?token=${encodeURIComponent(client.session.token)}`;
    const frames: Record<string, unknown>[] = [];
    const ws1 = new WebSocket(base);
    ws1.on('message', (data) => frames.push(JSON.parse((data as Buffer).toString('utf8')) as Record<string, unknown>));
    await new Promise((resolve, reject) => ws1.once('open', resolve).once('error', reject));
    const sent = await client.send('over a plain websocket');
    const messageId = String(sent.body.messageId);
    await waitUntil(() => frames.some((f) => f.event === 'chat.delta' && f.delta === ' tok5'));
    ws1.close();
    const before = [...frames];

    const after: Record<string, unknown>[] = [];
    const ws2 = new WebSocket(`${base}&lastEventId=${String(before.at(-1)!.eventId)}`);
    closers.push(() => ws2.close());
    ws2.on('message', (data) => after.push(JSON.parse((data as Buffer).toString('utf8')) as Record<string, unknown>));
    await waitUntil(() => after.some((f) => f.event === 'chat.completed' && f.messageId === messageId));
    expect([...before, ...after].map((f) => f.eventId)).toEqual(await logIds(client.session.sessionId));

    const statusOf = (url: string) =>
      new Promise<number>((resolve) => {
        const socket = new WebSocket(url);
        socket.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        socket.once('error', () => resolve(0));
      });
    const ws = app.url.replace('http', 'ws');
    expect(await statusOf(`${ws}/ws/${client.session.sessionId}?token=forged`)).toBe(401);
    // hostile paths are refused without harming the server
    expect(await statusOf(`${ws}/ws/%zz?token=x`)).toBe(400);
    expect(await statusOf(`${ws}/ws/a*b?token=x`)).toBe(400);
    expect((await fetch(`${app.url}/health/live`)).status).toBe(200);
  });

  it('after a reload, the history shows the partial answer and the id to continue from', async () => {
    const client = await open();
    const sent = await client.send('reload in the middle');
    const messageId = String(sent.body.messageId);
    await client.waitFor((e) => e.type === 'chat.delta' && e.payload.delta === ' tok30');
    client.close(); // the page goes away

    const history = await client.history();
    const reply = history.body.messages.find((m) => m.role === 'assistant' && m.messageId === messageId)!;
    expect(reply).toMatchObject({ status: 'streaming', resumeFrom: expect.stringMatching(/^\d+-\d+$/) });
    expect(history.body.lastEventId).toBe(reply.resumeFrom);
    const partial = String(reply.content);
    expect(TOKENS.join('').startsWith(partial)).toBe(true);

    const reloaded = new ChatClient(app.url, client.session);
    closers.push(() => reloaded.close());
    await reloaded.connect({ ...client.session, lastEventId: String(history.body.lastEventId) });
    const rest = await reloaded.waitForEnd(messageId);
    expect(rest.some((e) => e.type === 'chat.started')).toBe(false);
    // partial content from the history + the deltas after it = the whole answer, nothing twice
    expect(
      partial +
        rest
          .filter((e) => e.type === 'chat.delta')
          .map((e) => String(e.payload.delta))
          .join(''),
    ).toBe(TOKENS.join(''));
  });

  it('tells a client whose lastEventId is older than the retained log to reload the history', async () => {
    ollama.setDefault({ content: Array.from({ length: 400 }, (_, i) => ` x${i}`), tokenDelayMs: 0 });
    const client = await open();
    const sent = await client.send('a very long answer');
    const events = await client.waitForEnd(String(sent.body.messageId));
    const oldest = String(events[0].payload.eventId);

    const late = new ChatClient(app.url, client.session);
    closers.push(() => late.close());
    await late.connect({ ...client.session, lastEventId: oldest });
    const resync = await late.waitFor((e) => e.type === 'chat.resync');
    expect(resync.payload).toMatchObject({ sessionId: client.session.sessionId, reason: 'events_expired' });

    const bad = new ChatClient(app.url, client.session);
    await expect(bad.connect({ ...client.session, lastEventId: 'yesterday' })).rejects.toThrow('invalid lastEventId');
    bad.close();
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 10));
  }
}
