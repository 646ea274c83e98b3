import { expect } from '@jest/globals';
/**
 * Workers die for real here (kill -9) and the message is still answered exactly once, by another
 * worker taking over the pending entry of the consumer group once the dead worker's heartbeat in
 * chat:workers is older than WORKER_LIVENESS_MS.
 */
import { AppProcess } from './support/app-process';
import { ChatClient, deltasOfLastAttempt } from './support/chat-client';
import { eventually } from './support/eventually';
import { FakeOllama } from './support/fake-ollama';
import { freshTestRedis, keyLayout, pendingCount, type TestRedis, testRedisEnv } from './support/test-redis';

describe('crash recovery', () => {
  let redis: TestRedis;
  let ollama: FakeOllama;
  let api: AppProcess;
  const workers: AppProcess[] = [];
  const clients: ChatClient[] = [];

  const startWorker = async (env: Record<string, string> = {}) => {
    const worker = await AppProcess.start({
      entry: 'worker',
      env: { ...testRedisEnv(), OLLAMA_HOST: ollama.url, WORKER_LIVENESS_MS: '1000', ...env },
    });
    workers.push(worker);
    return worker;
  };

  const open = async () => {
    const client = await ChatClient.open(api.url);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    redis = await freshTestRedis();
    ollama = new FakeOllama({ defaultTokenDelayMs: 2 });
    await ollama.start();
    api = await AppProcess.start({ env: { ...testRedisEnv(), OLLAMA_HOST: ollama.url, WORKER_ENABLED: 'false' } });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await Promise.all(workers.splice(0).map((w) => w.kill()));
    ollama.reset();
  });

  afterAll(async () => {
    await api?.stop();
    await ollama?.stop();
    await redis?.quit();
  });

  it('answers in full, as attempt 2, a message whose worker was killed mid-stream', async () => {
    const tokens = Array.from({ length: 40 }, (_, i) => ` w${i}`);
    ollama.setDefault({ content: tokens, tokenDelayMs: 25 });
    const doomed = await startWorker();
    const client = await open();
    const sent = await client.send('survive a crash');
    const messageId = String(sent.body.messageId);
    await client.waitFor((e) => e.type === 'chat.delta' && e.payload.messageId === messageId);
    await doomed.kill();

    await startWorker();
    const events = await client.waitForEnd(messageId, 20_000);
    expect(events.filter((e) => e.type === 'chat.started').map((e) => e.payload.attempt)).toEqual([1, 2]);
    const completed = events.at(-1)!;
    expect(completed).toMatchObject({ type: 'chat.completed', payload: { content: tokens.join('') } });
    expect(deltasOfLastAttempt(events)).toBe(tokens.join(''));
    // Ollama was asked twice with the same conversation
    expect(ollama.requests).toHaveLength(2);
    expect(ollama.requests[1].body.messages).toEqual(ollama.requests[0].body.messages);
    await eventually(
      () => pendingCount(redis),
      (n) => n === 0,
    );
    expect((await client.history()).body.messages.at(-1)).toMatchObject({
      role: 'assistant',
      status: 'completed',
      content: tokens.join(''),
    });
  });

  it('never steals a healthy generation that outlives the liveness time', async () => {
    const tokens = Array.from({ length: 75 }, (_, i) => ` s${i}`);
    ollama.setDefault({ content: tokens, tokenDelayMs: 40 }); // ~3 s, three times WORKER_LIVENESS_MS
    await startWorker();
    await startWorker();
    const client = await open();
    const sent = await client.send('take your time');
    const events = await client.waitForEnd(String(sent.body.messageId), 20_000);
    expect(events.filter((e) => e.type === 'chat.started').map((e) => e.payload.attempt)).toEqual([1]);
    expect(events.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: tokens.join('') } });
    expect(ollama.requests).toHaveLength(1);
  });

  it('dead-letters, with chat.failed, a message that keeps killing its workers', async () => {
    ollama.setDefault({ hang: true });
    const client = await open();
    let worker = await startWorker({ WORKER_MAX_DELIVERIES: '2' });
    const sent = await client.send('poison');
    const messageId = String(sent.body.messageId);
    for (const attempt of [1, 2]) {
      await client.waitFor((e) => e.type === 'chat.started' && e.payload.messageId === messageId && e.payload.attempt === attempt, 20_000);
      await ollama.waitForRequests(attempt, 10_000); // the worker is inside the generation
      await worker.kill();
      worker = await startWorker({ WORKER_MAX_DELIVERIES: '2' });
    }
    const events = await client.waitForEnd(messageId, 20_000);
    expect(events.at(-1)).toMatchObject({
      type: 'chat.failed',
      payload: { error: { code: 'delivery_limit', message: expect.stringContaining('set aside') } },
    });
    const dead = await redis.xrange(keyLayout().partitionOf(client.session.sessionId).dead, '-', '+');
    expect(dead.some(([, fields]) => fields.join(' ').includes(messageId))).toBe(true);
    await eventually(
      () => pendingCount(redis),
      (n) => n === 0,
    );
    expect(ollama.requests).toHaveLength(2);
  });
});
