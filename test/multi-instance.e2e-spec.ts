/**
 * Many processes on one Redis: two API processes and two worker processes. A socket on one API
 * instance receives what was sent through the other and answered by a worker elsewhere; each API
 * process reads the chat:outgoing streams (of the partitions its sessions are in) with one loop
 * whatever its socket count; under load every socket gets exactly its own session's events,
 * complete and in order.
 */
import { AppProcess } from './support/app-process';
import { ChatClient, deltasOfLastAttempt } from './support/chat-client';
import { FakeOllama } from './support/fake-ollama';
import { eventually } from './support/eventually';
import { clientList, freshTestRedis, keyLayout, onCluster, type TestRedis, testRedisEnv, testRedisUrl } from './support/test-redis';

describe('many instances', () => {
  let redis: TestRedis;
  let ollama: FakeOllama;
  const apis: AppProcess[] = [];
  const workers: AppProcess[] = [];
  const clients: ChatClient[] = [];

  beforeAll(async () => {
    redis = await freshTestRedis();
    ollama = new FakeOllama();
    await ollama.start();
    // 500 sockets from this one address: the per-address connection cap is off here.
    const env = { ...testRedisEnv(), OLLAMA_HOST: ollama.url, RATE_LIMIT_IP_PER_MINUTE: '0', MAX_CONNECTIONS_PER_ADDRESS: '0' };
    for (let i = 0; i < 2; i++) apis.push(await AppProcess.start({ env: { ...env, WORKER_ENABLED: 'false' } }));
    for (let i = 0; i < 2; i++) workers.push(await AppProcess.start({ entry: 'worker', env: { ...env, WORKER_CONCURRENCY: '8' } }));
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    ollama.reset();
  });

  afterAll(async () => {
    await Promise.all([...workers, ...apis].map((p) => p.stop()));
    await ollama?.stop();
    await redis?.quit();
  });

  it('delivers to a socket on instance A what was sent through instance B and answered by a worker process', async () => {
    const [a, b] = apis;
    const onA = await ChatClient.open(a.url);
    clients.push(onA);
    const viaB = new ChatClient(b.url, onA.session); // same session, token issued by A, used on B
    const sent = await viaB.send('hello from B');
    expect(sent.status).toBe(202);
    const events = await onA.waitForEnd(String(sent.body.messageId));
    expect(events.map((e) => e.type)).toEqual(
      expect.arrayContaining(['chat.user_message', 'chat.started', 'chat.delta', 'chat.completed']),
    );
    expect(events.at(-1)!.payload.content).toBe('You said: hello from B');
    const answeredBy = await Promise.race(
      workers.map((w) => w.waitForOutput(new RegExp(`completed session=\\S+ message=${String(sent.body.messageId)}`)).then(() => w)),
    );
    expect(workers).toContain(answeredBy);
    expect(`${a.log}${b.log}`).not.toContain(`message=${String(sent.body.messageId)} attempt`);
  });

  it('keeps every socket to its own session under load: 50 sessions × 10 sockets, concurrent generations', async () => {
    ollama.setDefault({ content: ['Alpha', ' beta', ' gamma', ' delta', ' epsilon', ' zeta'], tokenDelayMs: 5 });
    const sessions = await Promise.all(Array.from({ length: 50 }, (_, i) => ChatClient.createSession(apis[i % 2].url)));
    const sockets: { sessionIndex: number; client: ChatClient }[] = [];
    for (const [index, session] of sessions.entries()) {
      for (let k = 0; k < 10; k++) {
        const client = new ChatClient(apis[k % 2].url, session);
        clients.push(client);
        sockets.push({ sessionIndex: index, client });
      }
    }
    await Promise.all(sockets.map(({ client }) => client.connect()));
    // One reader of the chat:outgoing streams per API process, whatever the number of sockets (500
    // here): the connections of this database blocked in XREAD (workers block in XREADGROUP). On a
    // cluster a read cannot span slots: one reader per watched partition and API process (those of
    // earlier tests' sessions may still be read), still far from one per socket.
    const db = onCluster() ? '' : `db=${testRedisUrl().split('/').pop()} `;
    const outgoingReaders = async () =>
      (await clientList(redis)).filter((line) => line.includes(` ${db}`) && / cmd=xread /.test(line)).length;
    const partitions = new Set(sessions.map((s) => keyLayout().partitionOf(s.sessionId).index)).size;
    await eventually(outgoingReaders, (n) =>
      onCluster() ? n >= apis.length * partitions && n <= apis.length * keyLayout().partitions.length : n === apis.length,
    );

    const sends = await Promise.all(sessions.map((s, i) => new ChatClient(apis[(i + 1) % 2].url, s).send(`question ${i}`)));
    expect(sends.every((r) => r.status === 202)).toBe(true);
    const messageIds = sends.map((r) => String(r.body.messageId));

    await Promise.all(sockets.map(({ sessionIndex, client }) => client.waitForEnd(messageIds[sessionIndex], 30_000)));
    for (const [index, session] of sessions.entries()) {
      const log = (await redis.xrange(keyLayout().session(session.sessionId).events, '-', '+')).map(([id]) => id);
      for (const { client } of sockets.filter((s) => s.sessionIndex === index)) {
        expect(client.events.every((e) => e.payload.sessionId === session.sessionId)).toBe(true);
        expect(client.events.map((e) => e.payload.eventId)).toEqual(log); // complete, in order, no duplicate
        expect(deltasOfLastAttempt(client.events)).toBe('Alpha beta gamma delta epsilon zeta');
        expect(client.events.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: 'Alpha beta gamma delta epsilon zeta' } });
        expect(client.events[0]).toMatchObject({ type: 'chat.user_message', payload: { content: `question ${index}` } });
      }
    }
  }, 120_000);
});
