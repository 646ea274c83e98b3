/**
 * Per-session order with several workers, each running several generations at once: the messages
 * of one session are answered one at a time, in acceptance order, each with the earlier answers in
 * its context; different sessions still run in parallel.
 */
import { AppProcess } from './support/app-process';
import { ChatClient } from './support/chat-client';
import { FakeOllama } from './support/fake-ollama';
import { freshTestRedis, type TestRedis, testRedisEnv } from './support/test-redis';

describe('ordering within a session', () => {
  let redis: TestRedis;
  let ollama: FakeOllama;
  let api: AppProcess;
  const workers: AppProcess[] = [];
  const clients: ChatClient[] = [];

  beforeAll(async () => {
    redis = await freshTestRedis();
    ollama = new FakeOllama();
    await ollama.start();
    const env = { ...testRedisEnv(), OLLAMA_HOST: ollama.url, SYSTEM_PROMPT: 'Be brief.' };
    api = await AppProcess.start({ env: { ...env, WORKER_ENABLED: 'false' } });
    for (let i = 0; i < 2; i++) workers.push(await AppProcess.start({ entry: 'worker', env: { ...env, WORKER_CONCURRENCY: '4' } }));
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    ollama.reset();
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await api?.stop();
    await ollama?.stop();
    await redis?.quit();
  });

  const open = async () => {
    const client = await ChatClient.open(api.url);
    clients.push(client);
    return client;
  };

  it('answers three quick messages of one session in order, each seeing the earlier answers', async () => {
    ollama.setDefault({ tokenDelayMs: 20 });
    const client = await open();
    const sent = [];
    for (const content of ['first', 'second', 'third']) sent.push(await client.send(content));
    const ids = sent.map((s) => String(s.body.messageId));
    for (const id of ids) await client.waitForEnd(id);

    expect(ollama.requests.every((r) => r.body.messages[0].content === 'Be brief.')).toBe(true);
    const completedOrder = client.events.filter((e) => e.type === 'chat.completed').map((e) => e.payload.messageId);
    expect(completedOrder).toEqual(ids);
    // one at a time: each message starts only after the previous one completed
    const position = (type: string, id: string) => client.events.findIndex((e) => e.type === type && e.payload.messageId === id);
    expect(position('chat.started', ids[1])).toBeGreaterThan(position('chat.completed', ids[0]));
    expect(position('chat.started', ids[2])).toBeGreaterThan(position('chat.completed', ids[1]));

    expect(ollama.requests.map((r) => r.body.messages.slice(1))).toEqual([
      [{ role: 'user', content: 'first' }],
      [
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'You said: first' },
        { role: 'user', content: 'second' },
      ],
      [
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'You said: first' },
        { role: 'user', content: 'second' },
        { role: 'assistant', content: 'You said: second' },
        { role: 'user', content: 'third' },
      ],
    ]);
  });

  it('still runs different sessions in parallel', async () => {
    ollama.setDefault({ content: Array.from({ length: 20 }, (_, i) => ` x${i}`), tokenDelayMs: 25 }); // ~0.5 s each
    const sessions = await Promise.all([open(), open(), open(), open()]);
    const sends = await Promise.all(sessions.map((c, i) => c.send(`session ${i}`)));
    await Promise.all(sessions.map((c, i) => c.waitForEnd(String(sends[i].body.messageId))));
    // all four requests reached Ollama before the first of them finished
    const received = ollama.requests.map((r) => r.receivedAt);
    const firstDone = Math.min(
      ...sessions.map((c) => {
        const done = c.events.find((e) => e.type === 'chat.completed');
        return done ? Number(String(done.payload.eventId).split('-')[0]) : Infinity;
      }),
    );
    expect(received).toHaveLength(4);
    expect(Math.max(...received)).toBeLessThan(firstDone);
  });
});
