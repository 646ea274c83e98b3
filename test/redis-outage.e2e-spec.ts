import { expect } from '@jest/globals';
/**
 * Redis stopped and restarted under traffic: sends fail fast while it is away, everything heals by
 * itself when it returns, and every message accepted with 202 still ends with a final event.
 * Redis runs with its append-only file (fsync always), as docker-compose.yml configures it; the
 * last suite restarts a Redis without persistence: messages whose state it lost end visibly
 * (`chat.failed` message_lost) and clients resuming from an id it no longer knows get `chat.resync`.
 */
import { Redis } from 'ioredis';
import { AppProcess } from './support/app-process';
import { ChatClient, ReceivedEvent } from './support/chat-client';
import { eventually } from './support/eventually';
import { FakeOllama } from './support/fake-ollama';
import { RedisServer } from './support/redis-server';
import { pendingCount } from './support/test-redis';
import { sleep } from './support/timing';

const FINAL = /^chat\.(completed|failed|cancelled)$/;
const finalsOf = (events: ReceivedEvent[]) => events.filter((e) => FINAL.test(e.type));

describe('Redis outage', () => {
  let server: RedisServer;
  let ollama: FakeOllama;
  let api: AppProcess;
  let worker: AppProcess;
  const clients: ChatClient[] = [];

  beforeAll(async () => {
    server = await RedisServer.start({ persistent: true });
    ollama = new FakeOllama();
    await ollama.start();
    const env = { REDIS_URL: server.url, OLLAMA_HOST: ollama.url, WORKER_LIVENESS_MS: '1000' };
    api = await AppProcess.start({ env: { ...env, WORKER_ENABLED: 'false' } });
    worker = await AppProcess.start({ entry: 'worker', env });
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await worker?.stop();
    await api?.stop();
    await ollama?.stop();
    await server?.dispose();
  });

  /**
   * Opens a client and waits until its socket is attached to its session's events (a first answer
   * arrives): a socket whose attachment meets the outage is disconnected by the server (the page
   * then reconnects; this test client does not).
   */
  const openAttached = async () => {
    const client = await ChatClient.open(api.url);
    clients.push(client);
    const hello = await client.send('hello');
    expect(hello.status).toBe(202);
    await client.waitForEnd(String(hello.body.messageId), 20_000);
    return client;
  };

  it('refuses sends fast with 503 while Redis is down, and works again once it is back', async () => {
    const client = await openAttached();
    await server.kill();

    const started = Date.now();
    const res = await fetch(`${api.url}/chat/send`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${client.session.token}` },
      body: JSON.stringify({ sessionId: client.session.sessionId, content: 'anyone?' }),
      signal: AbortSignal.timeout(2000), // the contract: fail fast, never hang
    });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBeTruthy();
    expect(await res.json()).toEqual({ statusCode: 503, error: 'Service Unavailable', message: expect.stringContaining('Redis') });
    expect(Date.now() - started).toBeLessThan(2000);
    const health = await fetch(`${api.url}/health`, { signal: AbortSignal.timeout(5000) });
    expect(health.status).toBe(503);

    await server.startProcess();
    const sent = await eventually(
      () => client.send('back again?'),
      (r) => r.status === 202,
      15_000,
    );
    const events = await client.waitForEnd(String(sent.body.messageId), 20_000);
    expect(events.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: 'You said: back again?' } });
  });

  it('refuses sends within 2 s while Redis hangs with its connections open, also sends queued behind others', async () => {
    const client = await openAttached();
    const send = async (content: string) => {
      const started = Date.now();
      const res = await fetch(`${api.url}/chat/send`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${client.session.token}` },
        body: JSON.stringify({ sessionId: client.session.sessionId, content }),
        signal: AbortSignal.timeout(2000), // the contract: fail fast, never hang
      });
      return { status: res.status, ms: Date.now() - started };
    };
    process.kill(server.pid!, 'SIGSTOP'); // a hung Redis: the sockets stay open, nothing answers
    try {
      // Staggered, so later sends find earlier commands still waiting on the same connection.
      const results = await Promise.all(
        [0, 150, 600].map(async (wait, i) => {
          await new Promise((r) => setTimeout(r, wait));
          return send(`hung ${i}`);
        }),
      );
      for (const r of results) {
        expect(r.status).toBe(503);
        expect(r.ms).toBeLessThan(2000);
      }
    } finally {
      process.kill(server.pid!, 'SIGCONT');
    }
    const sent = await eventually(
      () => client.send('awake again?'),
      (r) => r.status === 202,
      15_000,
    );
    const events = await client.waitForEnd(String(sent.body.messageId), 20_000);
    expect(events.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: 'You said: awake again?' } });
  });

  it.each<[string, () => Promise<void>]>([
    [
      'stopped for 3 s (its data kept)',
      async () => {
        await server.stop();
        await sleep(3000);
        await server.startProcess();
      },
    ],
    [
      'paused for 3 s (SIGSTOP)',
      async () => {
        process.kill(server.pid!, 'SIGSTOP');
        await sleep(3000);
        process.kill(server.pid!, 'SIGCONT');
      },
    ],
  ])(
    'after Redis was %s, the first send completes at once, as attempt 1',
    async (_outage, outage) => {
      ollama.setDefault({ tokenDelayMs: 10 });
      // the worker is idle, blocked in its read of the incoming streams, when Redis goes away
      const client = await openAttached();
      await sleep(500);

      await outage();
      const sent = await eventually(
        () => client.send('first after the outage'),
        (r) => r.status === 202,
        15_000,
      );
      const acceptedAt = Date.now();
      const messageId = String(sent.body.messageId);
      const events = await client.waitForEnd(messageId, 45_000); // a claim timeout would show as ~30 s
      const tookMs = Date.now() - acceptedAt;
      expect(finalsOf(events).map((e) => e.type)).toEqual(['chat.completed']);
      expect(events.filter((e) => e.type === 'chat.started').map((e) => e.payload.attempt)).toEqual([1]);
      expect(tookMs).toBeLessThan(10_000);
      expect(events.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: 'You said: first after the outage' } });
    },
    90_000,
  );

  it('accounts for every accepted message across a Redis crash and restart under traffic', async () => {
    ollama.setDefault({ content: Array.from({ length: 15 }, (_, i) => ` r${i}`), tokenDelayMs: 20 });
    const sessions = await Promise.all(Array.from({ length: 4 }, () => ChatClient.open(api.url)));
    clients.push(...sessions);
    const accepted: { client: ChatClient; messageId: string }[] = [];
    let refused = 0;
    let stop = false;

    const traffic = (async () => {
      for (let i = 0; !stop; i++) {
        const client = sessions[i % sessions.length];
        const res = await client.send(`message ${i}`).catch((): Awaited<ReturnType<ChatClient['send']>> => ({ status: 0, body: {} }));
        if (res.status === 202) accepted.push({ client, messageId: String(res.body.messageId) });
        else refused++;
        await new Promise((r) => setTimeout(r, 40));
      }
    })();

    await eventually(
      () => accepted.length,
      (n) => n >= 8,
      10_000,
    );
    await server.kill();
    await new Promise((r) => setTimeout(r, 1500));
    await server.startProcess();
    await eventually(
      () => accepted.length,
      (n) => n >= 20,
      20_000,
    );
    stop = true;
    await traffic;

    expect(refused).toBeGreaterThan(0); // the outage was real and seen by clients
    for (const { client, messageId } of accepted) {
      const events = await client.waitForEnd(messageId, 45_000);
      const finals = events.filter((e) => /^chat\.(completed|failed|cancelled)$/.test(e.type));
      expect({ messageId, finals: finals.map((e) => e.type) }).toEqual({ messageId, finals: ['chat.completed'] });
    }
    const redis = new Redis(server.url, { protocol: 2 });
    try {
      await eventually(
        () => pendingCount(redis),
        (n) => n === 0,
        15_000,
      );
    } finally {
      redis.disconnect();
    }
  }, 120_000);
});

describe('Redis restart without persistence', () => {
  let server: RedisServer;
  let ollama: FakeOllama;
  let api: AppProcess;
  let worker: AppProcess;
  const clients: ChatClient[] = [];

  beforeAll(async () => {
    server = await RedisServer.start({ persistent: false });
    ollama = new FakeOllama();
    await ollama.start();
    const env = {
      REDIS_URL: server.url,
      OLLAMA_HOST: ollama.url,
      WORKER_LIVENESS_MS: '1000',
      DELTA_COALESCE_MS: '0',
      // tokens must outlive Redis's data: the secret is not the one kept in Redis
      SESSION_SECRET: 'redis-outage-suite-secret-0123456789',
    };
    api = await AppProcess.start({ env: { ...env, WORKER_ENABLED: 'false' } });
    worker = await AppProcess.start({ entry: 'worker', env });
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    ollama.reset();
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await worker?.stop();
    await api?.stop();
    await ollama?.stop();
    await server?.dispose();
  });

  /** Redis crashes and comes back empty. */
  const restartEmpty = async () => {
    await server.kill();
    await server.startProcess();
  };

  const open = async (session?: ChatClient['session']) => {
    const client = new ChatClient(api.url, session ?? (await ChatClient.createSession(api.url)));
    clients.push(client);
    return client;
  };

  it('fails a message whose state Redis lost mid-stream with message_lost, exactly once, and stops generating it', async () => {
    ollama.setDefault({ content: Array.from({ length: 100 }, (_, i) => ` t${i}`), tokenDelayMs: 50 }); // ~5 s
    const client = await open();
    await client.connect();
    const sent = await client.send('a long answer');
    expect(sent.status).toBe(202);
    const messageId = String(sent.body.messageId);
    await client.waitFor((e) => e.type === 'chat.delta' && e.payload.messageId === messageId, 10_000);
    const lastEventIdBefore = String(client.events.at(-1)!.payload.eventId);

    await restartEmpty();
    await client.waitForEnd(messageId, 20_000);
    await sleep(3000); // a second final, or more of the answer, would show by now
    const events = client.eventsOf(messageId);
    expect(finalsOf(events)).toEqual([
      expect.objectContaining({
        type: 'chat.failed',
        payload: expect.objectContaining({ error: expect.objectContaining({ code: 'message_lost', message: expect.any(String) }) }),
      }),
    ]);
    expect(events.at(-1)!.type).toBe('chat.failed'); // nothing after the final event
    expect(events.filter((e) => e.type === 'chat.started')).toHaveLength(1); // not streamed again into the empty Redis
    // the worker stopped the generation instead of streaming it into the void
    await eventually(
      () => ollama.requests.map((r) => ({ aborted: r.aborted, finished: r.finished })),
      (r) => r.length === 1 && r[0].aborted,
      5000,
    );

    // a socket resuming from an id of before the restart is told to reload
    const resumed = await open(client.session);
    await resumed.connect({ ...client.session, lastEventId: lastEventIdBefore });
    const resync = await resumed.waitFor((e) => e.type === 'chat.resync', 5000);
    expect(resync.payload).toMatchObject({ sessionId: client.session.sessionId });

    // and the session goes on
    ollama.setDefault({ tokenDelayMs: 5 });
    const again = await eventually(
      () => client.send('still there?'),
      (r) => r.status === 202,
      10_000,
    );
    const after = await client.waitForEnd(String(again.body.messageId), 20_000);
    expect(finalsOf(after).map((e) => e.type)).toEqual(['chat.completed']);
    expect(after.at(-1)!.payload.content).toBe('You said: still there?');
  }, 90_000);

  it('tells a client resuming with its old lastEventId after the restart to reload (chat.resync)', async () => {
    ollama.setDefault({ tokenDelayMs: 5 });
    const client = await open();
    await client.connect();
    const sent = await client.send('remember this');
    const messageId = String(sent.body.messageId);
    await client.waitForEnd(messageId, 20_000);
    const lastEventId = String(client.events.at(-1)!.payload.eventId);
    client.close(); // the page is closed while Redis loses everything

    await restartEmpty();
    await eventually(
      () =>
        fetch(`${api.url}/health`, { signal: AbortSignal.timeout(3000) }).then(
          (r) => r.status,
          () => 0,
        ),
      (status) => status === 200,
      20_000,
    );
    const resumed = await open(client.session);
    await resumed.connect({ ...client.session, lastEventId });
    const resync = await resumed.waitFor((e) => e.type === 'chat.resync', 5000);
    expect(resync.payload).toMatchObject({ sessionId: client.session.sessionId });
    // nothing of the lost conversation is replayed as if it were new
    expect(resumed.events.filter((e) => e.payload.messageId === messageId)).toEqual([]);

    // live events reach the resumed socket
    const again = await resumed.send('after the restart');
    expect(again.status).toBe(202);
    const after = await resumed.waitForEnd(String(again.body.messageId), 20_000);
    expect(finalsOf(after).map((e) => e.type)).toEqual(['chat.completed']);
  }, 60_000);
});
