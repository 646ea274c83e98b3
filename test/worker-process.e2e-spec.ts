import { expect } from '@jest/globals';
/**
 * The API and the AI worker as separate processes (`npm start` with WORKER_ENABLED=false and
 * `npm run start:worker`), including start order, graceful shutdown and an unreachable Ollama.
 */
import { AppProcess, exitedGracefully } from './support/app-process';
import { ChatClient } from './support/chat-client';
import { eventually } from './support/eventually';
import { FakeOllama } from './support/fake-ollama';
import { freePort } from './support/redis-server';
import { freshTestRedis, pendingCount, pendingEntries, type TestRedis, testRedisEnv, workerHeartbeats } from './support/test-redis';

describe('standalone worker processes', () => {
  let redis: TestRedis;
  let ollama: FakeOllama;
  let api: AppProcess;
  const workers: AppProcess[] = [];
  const clients: ChatClient[] = [];

  const startWorker = async (env: Record<string, string> = {}) => {
    const worker = await AppProcess.start({
      entry: 'worker',
      env: { ...testRedisEnv(), OLLAMA_HOST: ollama.url, ...env },
    });
    workers.push(worker);
    return worker;
  };

  beforeAll(async () => {
    redis = await freshTestRedis();
    ollama = new FakeOllama({ defaultTokenDelayMs: 2 });
    await ollama.start();
    api = await AppProcess.start({ env: { ...testRedisEnv(), OLLAMA_HOST: ollama.url, WORKER_ENABLED: 'false' } });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await Promise.all(workers.splice(0).map((w) => w.stop()));
    ollama.reset();
  });

  afterAll(async () => {
    await api?.stop();
    await ollama?.stop();
    await redis?.quit();
  });

  const open = async () => {
    const client = await ChatClient.open(api.url);
    clients.push(client);
    return client;
  };

  it('keeps messages sent before any worker runs and answers them once one starts', async () => {
    const client = await open();
    const sent = await client.send('queued while no worker runs');
    expect(sent.status).toBe(202);
    await new Promise((r) => setTimeout(r, 300));
    expect(client.eventsOf(String(sent.body.messageId)).map((e) => e.type)).toEqual(['chat.user_message']);
    expect((await client.history()).body.messages.at(-1)).toMatchObject({ role: 'user', status: 'queued' });

    const worker = await startWorker();
    const events = await client.waitForEnd(String(sent.body.messageId));
    expect(events.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: 'You said: queued while no worker runs' } });
    await worker.waitForOutput(new RegExp(`completed session=\\S+ message=${String(sent.body.messageId)}`));
    expect(api.log).not.toContain('completed session=');
  });

  it('on SIGTERM finishes the generation in flight, then exits cleanly', async () => {
    const worker = await startWorker({ SHUTDOWN_GRACE_MS: '10000' });
    ollama.setDefault({ content: Array.from({ length: 30 }, (_, i) => ` t${i}`), tokenDelayMs: 30 });
    const client = await open();
    const sent = await client.send('a long answer please');
    const messageId = String(sent.body.messageId);
    await client.waitFor((e) => e.type === 'chat.delta' && e.payload.messageId === messageId);

    const exit = worker.stop();
    const events = await client.waitForEnd(messageId);
    expect(events.at(-1)).toMatchObject({ type: 'chat.completed' });
    expect(String(events.at(-1)!.payload.content).trim().split(' ')).toHaveLength(30);
    expect(exitedGracefully(await exit)).toBe(true);
    expect(worker.log).toMatch(/waiting up to 10000 ms for 1 generation/);
    // acknowledged before exiting: nothing left pending for another worker
    expect(await pendingCount(redis)).toBe(0);
  });

  it('on SIGTERM past the grace period leaves the unfinished message pending for another worker, never acknowledged', async () => {
    const worker = await startWorker({ SHUTDOWN_GRACE_MS: '200' });
    ollama.setDefault({ content: Array.from({ length: 200 }, (_, i) => ` t${i}`), tokenDelayMs: 30 });
    const client = await open();
    const sent = await client.send('an endless answer');
    const messageId = String(sent.body.messageId);
    await client.waitFor((e) => e.type === 'chat.delta' && e.payload.messageId === messageId);

    try {
      expect(exitedGracefully(await worker.stop())).toBe(true);
      expect(worker.log).toContain('handing 1 unfinished generation(s) over to other workers');
      const pending = await pendingEntries(redis);
      expect(pending).toHaveLength(1);
      // and marked itself dead, so another worker takes it over at once: its heartbeat in
      // chat:workers is older than any liveness (the default, 2000 ms)
      const [seconds] = await redis.time();
      expect((await workerHeartbeats(redis)).get(pending[0].consumer)).toBeLessThan(Number(seconds) * 1000 - 2000);
      expect(client.eventsOf(messageId).map((e) => e.type)).not.toContain('chat.completed');
      expect(client.eventsOf(messageId).map((e) => e.type)).not.toContain('chat.failed');
    } finally {
      // leave no pending entry behind for the next tests (their workers would take it over)
      for (const { stream, id } of await pendingEntries(redis)) {
        await redis.xack(stream, 'ai-workers', id);
        await redis.xdel(stream, id);
      }
    }
  });

  it('fails with ollama_unreachable, pointing at OLLAMA_HOST without naming the internal address, when Ollama is not running', async () => {
    const closedPort = await freePort();
    await startWorker({ OLLAMA_HOST: `http://127.0.0.1:${closedPort}` });
    const client = await open();
    const sent = await client.send('anyone there?');
    const events = await client.waitForEnd(String(sent.body.messageId), 20_000);
    expect(events.at(-1)).toMatchObject({
      type: 'chat.failed',
      payload: { error: { code: 'ollama_unreachable', message: expect.stringContaining('OLLAMA_HOST') } },
    });
    expect(JSON.stringify(events.at(-1))).not.toContain(`127.0.0.1:${closedPort}`);
    // transient: retried before giving up
    expect(events.filter((e) => e.type === 'chat.started').map((e) => e.payload.attempt)).toEqual([1, 2, 3]);
    await eventually(
      () => pendingCount(redis),
      (n) => n === 0,
    );
  });

  it('fails start-up with a message naming a bad variable', async () => {
    await expect(AppProcess.start({ entry: 'worker', env: { ...testRedisEnv(), WORKER_CONCURRENCY: 'lots' } })).rejects.toThrow(
      /WORKER_CONCURRENCY="lots"/,
    );
  });
});
