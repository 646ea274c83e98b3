/**
 * Redis Cluster failovers under traffic: an API and a worker process on a 3-master cluster (a
 * replica each), sessions sending all along, while (a) a replica takes over from its master on
 * request (CLUSTER FAILOVER) and (b) a master is killed (kill -9) and its replica is promoted by the
 * cluster. Every message answered 202 ends with exactly one final event on its session's socket, in
 * acceptance order; a send meeting the outage is refused with 503 and Retry-After (never a 500, never
 * a hang) and sends work again once the cluster has healed, with no restart. A message whose state
 * the killed master had not passed to its replica yet may end as `chat.failed` (message_lost): a
 * final event too.
 *
 * Cluster target only (e2e-cluster project). The suite starts a cluster of its own with a short
 * node timeout (a quick promotion) rather than the shared one, which it would leave with a master
 * without replica.
 */
import calculateSlot from 'cluster-key-slot';
import { Cluster } from 'ioredis';
import { AppProcess } from './support/app-process';
import { ChatClient, ReceivedEvent } from './support/chat-client';
import { eventually } from './support/eventually';
import { FakeOllama } from './support/fake-ollama';
import { RedisCluster } from './support/redis-cluster';
import { sleep } from './support/timing';
import { describeOn, keyLayout } from './support/test-redis';

const FINAL = /^chat\.(completed|failed|cancelled)$/;
const NODE_TIMEOUT_MS = 1500;

interface SendResult {
  status: number;
  retryAfter: string | null;
  ms: number;
  at: number;
  body: unknown;
}

interface Tracked {
  client: ChatClient;
  /** Message ids answered 202, in acceptance order (the sends of a session are sequential). */
  accepted: { messageId: string; at: number }[];
}

// Cluster target only: on one redis-server there is nothing to fail over (redis-outage covers it).
describeOn('cluster')('Redis Cluster failover under traffic', () => {
  let cluster: RedisCluster;
  let redis: Cluster;
  let ollama: FakeOllama;
  let api: AppProcess;
  let worker: AppProcess;
  const clients: ChatClient[] = [];

  beforeAll(async () => {
    cluster = await RedisCluster.start({ nodeTimeoutMs: NODE_TIMEOUT_MS });
    const [host, port] = cluster.seeds.split(',')[0].split(':');
    redis = new Cluster([{ host, port: Number(port) }], { redisOptions: { protocol: 2 } });
    redis.on('error', () => undefined); // a killed node: the client reconnects by itself
    ollama = new FakeOllama();
    await ollama.start();
    const env = {
      REDIS_CLUSTER_NODES: cluster.seeds,
      OLLAMA_HOST: ollama.url,
      WORKER_LIVENESS_MS: '1000',
      RATE_LIMIT_SESSION_PER_MINUTE: '0',
      RATE_LIMIT_IP_PER_MINUTE: '0',
    };
    api = await AppProcess.start({ env: { ...env, WORKER_ENABLED: 'false' } });
    worker = await AppProcess.start({ entry: 'worker', env });
  }, 60_000);

  afterEach(() => ollama.reset());

  afterAll(async () => {
    for (const c of clients) c.close();
    await worker?.stop();
    await api?.stop();
    await ollama?.stop();
    redis?.disconnect();
    await cluster?.dispose();
  });

  it('refuses to start with REDIS_URL pointing at a cluster node, naming REDIS_CLUSTER_NODES', async () => {
    const [seed] = cluster.seeds.split(',');
    const started = AppProcess.start({ env: { REDIS_URL: `redis://${seed}`, AI_PROVIDER: 'mock' }, startTimeoutMs: 15_000 });
    await expect(started).rejects.toThrow(/REDIS_CLUSTER_NODES/);
    await expect(started).rejects.toThrow(/process exited \([1-9]\d*\)/);
  });

  it('reports cluster_state ok on /health', async () => {
    const health = await fetch(`${api.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toMatch(/"cluster_state":\s*"ok"/);
  });

  /** The port of the master serving a session's keys now. */
  async function masterOf(sessionId: string): Promise<number> {
    const slot = calculateSlot(keyLayout().session(sessionId).hash);
    const ranges = await redis.cluster('SLOTS');
    const range = ranges.find(([from, to]) => slot >= from && slot <= to);
    if (!range) throw new Error(`slot ${slot} is not served`);
    return Number(range[2]?.[1]);
  }

  /** Sessions with a socket attached (one answer seen), at least two on every master. */
  async function openSessions(): Promise<Tracked[]> {
    const masters = (await cluster.masters()).map((m) => m.port);
    const perMaster = new Map<number, number>(masters.map((p) => [p, 0]));
    const sessions: Tracked[] = [];
    while ([...perMaster.values()].some((n) => n < 2)) {
      const session = await ChatClient.createSession(api.url);
      const port = await masterOf(session.sessionId);
      if ((perMaster.get(port) ?? 2) >= 2) continue;
      perMaster.set(port, perMaster.get(port)! + 1);
      const client = await ChatClient.open(api.url, session);
      clients.push(client);
      const hello = await client.send('hello');
      expect(hello.status).toBe(202);
      await client.waitForEnd(String(hello.body.messageId), 20_000);
      sessions.push({ client, accepted: [] });
    }
    return sessions;
  }

  /** One send with the browser's patience: a hang shows as status 0. */
  async function send(t: Tracked, content: string): Promise<SendResult> {
    const started = Date.now();
    try {
      const res = await fetch(`${api.url}/chat/send`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${t.client.session.token}` },
        body: JSON.stringify({ sessionId: t.client.session.sessionId, content }),
        signal: AbortSignal.timeout(5000),
      });
      const text = await res.text();
      const body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      if (res.status === 202) t.accepted.push({ messageId: String(body.messageId), at: Date.now() });
      return { status: res.status, retryAfter: res.headers.get('retry-after'), ms: Date.now() - started, at: started, body };
    } catch (err) {
      return { status: 0, retryAfter: null, ms: Date.now() - started, at: started, body: String(err) };
    }
  }

  /**
   * Traffic on every session (each sends one message at a time, a few a second) around `disrupt`;
   * resolves once every session has had a send accepted after `disrupt` returned (the cluster
   * healed), with what every send got.
   */
  async function underTraffic(sessions: Tracked[], disrupt: () => Promise<void>): Promise<{ results: SendResult[]; disruptedAt: number }> {
    const results: SendResult[] = [];
    let stop = false;
    const traffic = sessions.map(async (t, s) => {
      for (let i = 0; !stop; i++) {
        results.push(await send(t, `session ${s} message ${i}`));
        await sleep(250);
      }
    });
    await eventually(
      () => sessions.every((t) => t.accepted.length >= 3),
      (ok) => ok,
      15_000,
    );
    const disruptedAt = Date.now();
    await disrupt();
    const doneAt = Date.now();
    await eventually(
      () => sessions.every((t) => t.accepted.some((a) => a.at > doneAt)),
      (ok) => ok,
      30_000,
    );
    await sleep(1000); // traffic on the healed cluster for a moment
    stop = true;
    await Promise.all(traffic);
    return { results, disruptedAt };
  }

  /** Every accepted message: exactly one final event on its session's socket, finals in acceptance order. */
  async function expectEveryAcceptedMessageEnded(sessions: Tracked[]): Promise<Map<string, number>> {
    const endings = new Map<string, number>();
    await Promise.all(sessions.flatMap((t) => t.accepted.map((a) => t.client.waitForEnd(a.messageId, 60_000))));
    await sleep(500); // a duplicate final would arrive right behind the first
    for (const t of sessions) {
      const finals = t.client.events.filter((e: ReceivedEvent) => FINAL.test(e.type));
      const ids = t.accepted.map((a) => a.messageId);
      const finalsOfAccepted = finals.filter((e) => ids.includes(e.payload.messageId));
      for (const id of ids) {
        const mine = finalsOfAccepted.filter((e) => e.payload.messageId === id);
        expect({ id, finals: mine.length }).toEqual({ id, finals: 1 });
        const ending =
          mine[0].type === 'chat.failed'
            ? `chat.failed:${String((mine[0].payload as { error?: { code?: unknown } }).error?.code)}`
            : mine[0].type;
        endings.set(ending, (endings.get(ending) ?? 0) + 1);
      }
      expect(finalsOfAccepted.map((e) => e.payload.messageId)).toEqual(ids);
    }
    return endings;
  }

  function expectOnly202Or503({ results, disruptedAt }: { results: SendResult[]; disruptedAt: number }): void {
    // when, relative to the disruption, for a failure to say
    const bad = results.filter((r) => r.status !== 202 && r.status !== 503).map((r) => ({ ...r, sinceDisruptionMs: r.at - disruptedAt }));
    // with the API's error lines, for a failure to say why
    const errors = bad.length ? api.log.split('\n').filter((line) => /error|exception/i.test(line)) : [];
    expect({ bad, errors: errors.slice(-20) }).toEqual({ bad: [], errors: [] });
    for (const r of results.filter((x) => x.status === 503)) expect(r.retryAfter).toMatch(/^\d+$/);
  }

  it('hands a master over to its replica (CLUSTER FAILOVER) under traffic: nothing lost, nothing out of order', async () => {
    ollama.setDefault({ content: [' a', ' b', ' c', ' d', ' e'], tokenDelayMs: 20 });
    const sessions = await openSessions();
    const [target] = await cluster.masters();
    const replica = await cluster.replicaOf(target.port);
    const traffic = await underTraffic(sessions, () => cluster.failover(replica.port));
    expectOnly202Or503(traffic);
    const endings = await expectEveryAcceptedMessageEnded(sessions);
    // a coordinated switch loses nothing: every message completes
    expect([...endings.keys()]).toEqual(['chat.completed']);
    await cluster.waitUntilHealthy();
    expect((await cluster.nodes()).find((n) => n.port === replica.port)?.role).toBe('master');
  }, 120_000);

  it('survives a master killed (kill -9) under traffic: 503 while its slots have no master, then every send works again', async () => {
    ollama.setDefault({ content: [' a', ' b', ' c', ' d', ' e'], tokenDelayMs: 20 });
    const sessions = await openSessions();
    const [victim] = await cluster.masters();
    const replica = await cluster.replicaOf(victim.port);
    const traffic = await underTraffic(sessions, async () => {
      await cluster.kill(victim.port);
      // the replica is promoted once the others have marked the master failed (node timeout + election)
      await eventually(
        async () => (await cluster.nodes()).find((n) => n.port === replica.port)?.role,
        (role) => role === 'master',
        NODE_TIMEOUT_MS * 10,
      );
    });
    expectOnly202Or503(traffic);
    // the outage was real: sessions on the killed master were refused for a while
    expect(traffic.results.filter((r) => r.status === 503).length).toBeGreaterThan(0);
    const endings = await expectEveryAcceptedMessageEnded(sessions);
    for (const ending of endings.keys()) expect(['chat.completed', 'chat.failed:message_lost']).toContain(ending);

    const health = await eventually(
      async () => fetch(`${api.url}/health`).then(async (r) => ({ status: r.status, text: await r.text() })),
      (h) => h.status === 200,
      10_000,
    );
    expect(health.text).toMatch(/"cluster_state":\s*"ok"/);
    // healed in place: the very processes started before the kill
    for (const p of [api, worker]) expect(() => process.kill(p.pid!, 0)).not.toThrow();
  }, 120_000);
});
