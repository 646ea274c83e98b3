import { expect } from '@jest/globals';
/**
 * Redis stopped and restarted under traffic: sends fail fast while it is away, everything heals by
 * itself when it returns, and every message accepted with 202 still ends with a final event.
 * Redis runs with its append-only file (fsync always), as docker-compose.yml configures it.
 */
import { Redis } from 'ioredis';
import { AppProcess } from './support/app-process';
import { ChatClient } from './support/chat-client';
import { eventually } from './support/eventually';
import { FakeOllama } from './support/fake-ollama';
import { RedisServer } from './support/redis-server';
import { pendingCount } from './support/test-redis';

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
    const env = { REDIS_URL: server.url, OLLAMA_HOST: ollama.url, WORKER_CLAIM_IDLE_MS: '1000' };
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

  it('refuses sends fast with 503 while Redis is down, and works again once it is back', async () => {
    const client = await ChatClient.open(api.url);
    clients.push(client);
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
    const client = await ChatClient.open(api.url);
    clients.push(client);
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
