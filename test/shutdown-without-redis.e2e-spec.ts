/**
 * SIGTERM while Redis is unreachable: the process must still end within SHUTDOWN_GRACE_MS plus a
 * few seconds, whether Redis refuses connections (killed, or never there since start-up) or hangs
 * with its sockets open (SIGSTOP), for the API process (with its in-process worker) and for the
 * standalone worker, also with a generation in flight. The hooks must finish by themselves
 * (a graceful exit), not only be cut short by the shutdown deadline. Each case gets a private
 * redis-server, since each one breaks it.
 */
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { AppProcess, exitedGracefully, ExitStatus } from './support/app-process';
import { eventually } from './support/eventually';
import { SseClient } from './support/sse-client';
import { RedisServer } from './support/redis-server';
import { keyLayout } from './support/test-redis';

const GRACE_MS = 2000;
/**
 * The bound the issue sets: the grace period plus a few seconds, whatever Redis does. The
 * deadline exits at grace + 3 s; the rest is slack for a loaded machine.
 */
const STOP_BOUND_MS = GRACE_MS + 6000;
/**
 * How long Redis stays away before the SIGTERM: longer than a blocking read's own timeout (BLOCK
 * plus 2 s), so the read loops have gone round and queued new reads on their reconnecting
 * connections, the reads ioredis never settles once those connections are released.
 */
const OUTAGE_MS = 5000;

type Outage = 'killed' | 'paused' | 'absent since start-up';

describe('shutdown without Redis', () => {
  const servers: RedisServer[] = [];
  const paused = new Set<RedisServer>();
  const apps: AppProcess[] = [];

  afterAll(async () => {
    for (const app of apps) await app.kill();
    // A stopped redis-server ignores SIGTERM until it is resumed.
    for (const server of paused) if (server.pid) process.kill(server.pid, 'SIGCONT');
    for (const server of servers) await server.dispose();
  });

  async function redis(): Promise<RedisServer> {
    const server = await RedisServer.start();
    servers.push(server);
    return server;
  }

  async function breakRedis(server: RedisServer, outage: Outage): Promise<void> {
    if (outage === 'paused') {
      paused.add(server);
      process.kill(server.pid!, 'SIGSTOP'); // TCP stays open, nothing answers
    } else {
      await server.kill();
    }
  }

  async function start(entry: 'main' | 'worker', server: RedisServer, env: Record<string, string> = {}): Promise<AppProcess> {
    const app = await AppProcess.start({
      entry,
      // No session tokens needed: these tests are about the process, not about access.
      env: { REDIS_URL: server.url, AI_PROVIDER: 'mock', AUTH_MODE: 'none', SHUTDOWN_GRACE_MS: String(GRACE_MS), ...env },
    });
    apps.push(app);
    return app;
  }

  /** Starts the process with Redis broken as `outage` says, as long as OUTAGE_MS before it returns. */
  async function startWithout(entry: 'main' | 'worker', outage: Outage): Promise<AppProcess> {
    const server = await redis();
    if (outage === 'absent since start-up') await breakRedis(server, outage);
    const app = await start(entry, server);
    if (outage !== 'absent since start-up') await breakRedis(server, outage);
    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    return app;
  }

  /** SIGTERM; SIGKILL only if the process outlives the bound. */
  async function stopWithinBound(app: AppProcess): Promise<ExitStatus> {
    const status = await app.stop(STOP_BOUND_MS);
    expect({ escalated: status.escalated, log: status.escalated ? app.log : '' }).toEqual({ escalated: false, log: '' });
    return status;
  }

  function expectGraceful(app: AppProcess, status: ExitStatus): void {
    const graceful = exitedGracefully(status);
    expect({ graceful, status, log: graceful ? '' : app.log }).toEqual({ graceful: true, status, log: '' });
  }

  describe.each<[Outage]>([['killed'], ['paused'], ['absent since start-up']])('Redis %s', (outage) => {
    it('the API process (with its in-process worker) stops within the grace period plus a few seconds', async () => {
      const api = await startWithout('main', outage);
      expectGraceful(api, await stopWithinBound(api));
    }, 40_000);

    it('the standalone worker stops within the grace period plus a few seconds', async () => {
      const worker = await startWithout('worker', outage);
      expectGraceful(worker, await stopWithinBound(worker));
    }, 40_000);
  });

  describe.each<[Outage]>([['killed'], ['paused']])('Redis %s with a generation in flight', (outage) => {
    it('the worker abandons it and stops within the grace period plus a few seconds', async () => {
      const server = await redis();
      // A slow answer: it cannot finish within the grace period, so the worker must abandon it.
      const api = await start('main', server, { MOCK_TOKEN_DELAY_MS: '1000' });
      const sessionId = randomUUID();
      const res = await fetch(`${api.url}/chat/send`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ sessionId, content: 'take your time' }),
      });
      expect(res.status).toBe(202);
      const observer = new Redis(server.url, { protocol: 2 });
      try {
        // the session's partition's chat:outgoing:{T}
        const outgoing = async () => JSON.stringify(await observer.xrange(keyLayout().partitionOf(sessionId).outgoing, '-', '+'));
        await eventually(outgoing, (events) => events.includes('chat.delta'), 10_000);
      } finally {
        observer.disconnect();
      }
      await breakRedis(server, outage);
      await new Promise((r) => setTimeout(r, 500));
      const status = await stopWithinBound(api);
      expectGraceful(api, status);
      // It was still in flight when the SIGTERM came.
      expect(api.log).toContain(`waiting up to ${GRACE_MS} ms for 1 generation(s)`);
    }, 40_000);
  });

  it('an open SSE stream does not hold the shutdown: it is ended (the client resumes elsewhere) and the process exits gracefully', async () => {
    const server = await redis();
    const api = await start('main', server);
    const sse = new SseClient();
    try {
      await sse.open(`${api.url}/chat/${randomUUID()}/events`);
      expect(sse.status).toBe(200);
      const status = await stopWithinBound(api);
      // The HTTP server's close waits for open streams: they are ended before it, not left to the deadline.
      expectGraceful(api, status);
    } finally {
      await sse.close();
    }
  }, 40_000);
});
