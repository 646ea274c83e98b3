import { expect } from '@jest/globals';
/**
 * The outside probe's attempts (issue 15) against the built app, each answered without harm: client
 * addresses derived as Express derives them on every transport, floods cut per socket, connection
 * caps, the default Socket.IO namespace closed, nested and invisible input refused, no secrets in
 * start-up errors, fixed error texts, internal addresses kept out of public answers.
 * Real parts: the app as child processes, real HTTP, real socket.io-client, a real redis-server.
 */
import { Manager, Socket } from 'socket.io-client';
import { WebSocket } from 'ws';
import { AppProcess } from './support/app-process';
import { ChatClient, Session } from './support/chat-client';
import { eventually } from './support/eventually';
import { call, expectAckError, expectError, LEAK } from './support/http-call';
import { chatSocket, handshake } from './support/socket-handshake';
import { SseClient } from './support/sse-client';
import { acceptedCount, commandsAdded, freshTestRedis, keyLayout, type TestRedis, testRedisEnv } from './support/test-redis';
import { awayFromMinuteBoundary, sleep } from './support/timing';

function emitWithAck(socket: Socket, event: string, payload: unknown, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('no ack'), timeoutMs);
    socket.emit(event, payload, (ack: unknown) => {
      clearTimeout(timer);
      resolve(ack);
    });
  });
}

async function startFails(env: Record<string, string>): Promise<string> {
  try {
    const app = await AppProcess.start({ env: { ...testRedisEnv(), AI_PROVIDER: 'mock', ...env }, startTimeoutMs: 15_000 });
    await app.stop();
    return 'started';
  } catch (err) {
    return (err as Error).message;
  }
}

describe('hostile input (issue 15 probe)', () => {
  let redis: TestRedis;
  const apps: AppProcess[] = [];
  const sockets: Socket[] = [];

  const startApp = async (env: Record<string, string>): Promise<AppProcess> => {
    const app = await AppProcess.start({
      env: { ...testRedisEnv(), AI_PROVIDER: 'mock', WORKER_ENABLED: 'false', ...env },
    });
    apps.push(app);
    return app;
  };
  const track = (socket: Socket) => {
    sockets.push(socket);
    return socket;
  };

  beforeAll(async () => {
    redis = await freshTestRedis();
  });

  afterEach(() => {
    for (const s of sockets.splice(0)) s.close();
  });

  afterAll(async () => {
    await Promise.all(apps.splice(0).map((a) => a.stop()));
    await redis?.quit();
  });

  // =============================================================================================
  describe('client address: TRUST_PROXY decides for HTTP and Socket.IO alike', () => {
    const forwardedFor = (i: number) => ({ 'X-Forwarded-For': `203.0.113.${i}, 10.0.0.1` });

    /** Sends over HTTP and Socket.IO, each with another spoofed left-most hop; returns the statuses in order. */
    async function spoofedSends(app: AppProcess, count: number): Promise<number[]> {
      const statuses: number[] = [];
      for (let i = 0; i < count; i++) {
        const session: Session = await ChatClient.createSession(app.url);
        if (i % 2 === 0) {
          const reply = await call(app.url, 'POST', '/chat/send', {
            token: session.token,
            headers: forwardedFor(i),
            json: { sessionId: session.sessionId, content: `spoof ${i}` },
          });
          statuses.push(reply.status);
        } else {
          const socket = track(chatSocket(app.url, '/chat', { sessionId: session.sessionId, token: session.token }, forwardedFor(i)));
          expect(await handshake(socket)).toBe('connected');
          const ack = (await emitWithAck(socket, 'chat.send', { content: `spoof ${i}` })) as {
            messageId?: string;
            error?: { statusCode: number };
          };
          statuses.push(ack.messageId ? 202 : ack.error!.statusCode);
          socket.close();
        }
      }
      return statuses;
    }

    it('TRUST_PROXY=1: only the hop the trusted proxy saw counts; a spoofed left-most entry changes nothing', async () => {
      await awayFromMinuteBoundary();
      const app = await startApp({ TRUST_PROXY: '1', RATE_LIMIT_IP_PER_MINUTE: '4', RATE_LIMIT_SESSION_PER_MINUTE: '100' });
      // Both transports see 10.0.0.1: the fifth send is refused whichever way it comes.
      expect(await spoofedSends(app, 6)).toEqual([202, 202, 202, 202, 429, 429]);
      await app.stop();
    });

    it('TRUST_PROXY unset: X-Forwarded-For is ignored on the socket too (the peer counts)', async () => {
      await awayFromMinuteBoundary();
      const app = await startApp({ RATE_LIMIT_IP_PER_MINUTE: '3', RATE_LIMIT_SESSION_PER_MINUTE: '100' });
      expect(await spoofedSends(app, 5)).toEqual([202, 202, 202, 429, 429]);
      await app.stop();
    });

    it.each([
      ['not an address', 'proxy.example'],
      ['a bad subnet', '10.0.0.0/99'],
      ['an empty entry', 'loopback,,10.0.0.1'],
      ['a negative hop count', '-1'],
    ])('refuses to start with TRUST_PROXY set to %s, naming the variable', async (_name, value) => {
      const output = await startFails({ TRUST_PROXY: value });
      expect(output).toMatch(/TRUST_PROXY=.*must be true, false, a hop count/);
    });
  });

  // =============================================================================================
  describe('start-up errors name the variable and the rule, never a secret', () => {
    it('a too-short SESSION_SECRET is not printed', async () => {
      const output = await startFails({ SESSION_SECRET: 'hunter2-short' });
      expect(output).toContain('SESSION_SECRET=(hidden): SESSION_SECRET must be at least 16 characters');
      expect(output).not.toContain('hunter2-short');
    });

    it('a bad SESSION_SECRET_PREVIOUS and METRICS_TOKEN are not printed', async () => {
      const output = await startFails({ SESSION_SECRET_PREVIOUS: 'old-secret-ok-1234567,tiny-old', METRICS_TOKEN: 'mtok-short' });
      expect(output).toMatch(/SESSION_SECRET_PREVIOUS=\(hidden\)/);
      expect(output).toMatch(/METRICS_TOKEN=\(hidden\)/);
      for (const secret of ['old-secret-ok-1234567', 'tiny-old', 'mtok-short']) expect(output).not.toContain(secret);
    });

    it('an invalid REDIS_URL is printed with its password masked', async () => {
      const output = await startFails({ REDIS_URL: 'redis://admin:s3cr3t-pa55@redis.internal:6379 extra' });
      expect(output).toContain('REDIS_URL="redis://admin:***@redis.internal:6379 extra"');
      expect(output).not.toContain('s3cr3t-pa55');
    });
  });

  // =============================================================================================
  describe('one API: per-socket event rate, per-session caps, bad payloads', () => {
    let app: AppProcess;

    beforeAll(async () => {
      app = await startApp({
        MAX_MESSAGE_CHARS: '16000',
        // a window that holds the longest message, so that only its size in characters is under test here
        OLLAMA_NUM_CTX: '65536',
        SOCKET_EVENT_BURST: '5',
        // One event a minute after the burst: the burst's edge does not move with the machine's speed.
        SOCKET_EVENTS_PER_MINUTE: '1',
        MAX_CONNECTIONS_PER_SESSION: '3',
        MAX_CONNECTIONS_PER_ADDRESS: '0',
        RATE_LIMIT_SESSION_PER_MINUTE: '0',
        RATE_LIMIT_IP_PER_MINUTE: '0',
        RATE_LIMIT_NEW_SESSIONS_PER_MINUTE: '0',
        MAX_BACKLOG: '100000',
      });
    });

    async function connected(session?: Session): Promise<{ socket: Socket; session: Session }> {
      const s = session ?? (await ChatClient.createSession(app.url));
      const socket = track(chatSocket(app.url, '/chat', { sessionId: s.sessionId, token: s.token }));
      expect(await handshake(socket)).toBe('connected');
      return { socket, session: s };
    }

    it('every event counts against the socket: sends, repeats, invalid ones and cancels alike; the flood queues nothing beyond the burst', async () => {
      const { socket, session } = await connected();
      const before = { accepted: await acceptedCount(redis), commands: await commandsAdded(redis) };
      const first = (await emitWithAck(socket, 'chat.send', { content: 'accepted once', clientMessageId: 'rep-1' })) as {
        messageId: string;
      };
      expect(first.messageId).toEqual(expect.any(String));
      const acks = await Promise.all([
        emitWithAck(socket, 'chat.send', { content: 'accepted once', clientMessageId: 'rep-1' }),
        emitWithAck(socket, 'chat.send', { content: '' }),
        emitWithAck(socket, 'chat.cancel', { messageId: 'nope' }),
        emitWithAck(socket, 'chat.send', { content: 'new one' }),
        ...Array.from({ length: 10 }, (_, i) => emitWithAck(socket, 'chat.send', { content: `flood ${i}` })),
      ]);
      // The burst (5) is: the first send, its repeat, the invalid send, the cancel, 'new one'.
      expect(acks[0]).toEqual({ messageId: first.messageId });
      expectAckError(acks[1], 400, /content must not be empty/);
      expectAckError(acks[2], 404, /no message nope/);
      expect(acks[3]).toEqual({ messageId: expect.any(String) });
      for (const ack of acks.slice(4)) expectAckError(ack, 429, /too many events on this socket/);
      // two messages accepted: the session's head, for the workers, and 'new one' waiting behind it
      expect({
        accepted: (await acceptedCount(redis)) - before.accepted,
        commands: (await commandsAdded(redis)) - before.commands,
        waiting: await redis.llen(keyLayout().session(session.sessionId).queue),
      }).toEqual({ accepted: 2, commands: 1, waiting: 1 });
    });

    it('a socket that keeps sending after being refused is disconnected; others are served meanwhile', async () => {
      const { socket } = await connected();
      const bystander = await connected();
      const disconnected = new Promise<string>((resolve) => socket.once('disconnect', (reason) => resolve(reason)));
      for (let i = 0; i < 200 && socket.connected; i++) socket.emit('chat.cancel', { messageId: `m${i}` }, () => undefined);
      expect(await disconnected).toBe('io server disconnect');
      const ack = (await emitWithAck(bystander.socket, 'chat.send', { content: 'still served' })) as { messageId?: string };
      expect(ack.messageId).toEqual(expect.any(String));
      expect((await fetch(`${app.url}/health/live`)).status).toBe(200);
    });

    it('caps Socket.IO and SSE connections per session (3): the fourth is refused, a closed one frees its place', async () => {
      const session = await ChatClient.createSession(app.url);
      const first = await connected(session);
      await connected(session);
      const sse = new SseClient();
      await sse.open(`${app.url}/chat/${session.sessionId}/events`, { authorization: `Bearer ${session.token}` });
      expect(sse.status).toBe(200);
      const fourth = track(chatSocket(app.url, '/chat', { sessionId: session.sessionId, token: session.token }));
      expect(await handshake(fourth)).toBe('too many connections for this session');
      const sseRefused = await call(app.url, 'GET', `/chat/${session.sessionId}/events`, { token: session.token });
      expectError(sseRefused, 429, /too many open connections for this session/);
      first.socket.close();
      await sleep(200);
      const again = track(chatSocket(app.url, '/chat', { sessionId: session.sessionId, token: session.token }));
      expect(await handshake(again)).toBe('connected');
      await sse.close();
    });

    it('CONNECT packets pipelined on one engine.io connection open one /chat socket, not one each', async () => {
      const session = await ChatClient.createSession(app.url);
      const ws = new WebSocket(`${app.url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`);
      const frames: string[] = [];
      ws.on('message', (data) => frames.push((data as Buffer).toString('utf8')));
      try {
        await new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve());
          ws.once('error', reject);
        });
        const connect = `40/chat,${JSON.stringify({ sessionId: session.sessionId, token: session.token })}`;
        for (let i = 0; i < 5; i++) ws.send(connect);
        await eventually(
          () => frames.filter((f) => f.startsWith('40/chat,')).length,
          (n) => n >= 1,
          5000,
        );
        await sleep(300);
        // One socket. Each other CONNECT is refused while the first is being checked; one that arrives
        // after it joined makes Socket.IO itself close the connection (which of the two depends on
        // how the frames arrive).
        const answers = frames.filter((f) => f.startsWith('4'));
        expect(answers.filter((f) => f.startsWith('40/chat,'))).toHaveLength(1);
        for (const refused of answers.filter((f) => !f.startsWith('40/chat,'))) {
          expect(refused).toMatch(/^44\/chat,.*already connected to \/chat on this connection/);
        }
        // The session's cap (3) has room for exactly the sockets the pipelined CONNECTs did not take.
        const held = ws.readyState === WebSocket.OPEN ? 1 : 0;
        for (let i = 0; i < 3 - held; i++) await connected(session);
        const extra = track(chatSocket(app.url, '/chat', { sessionId: session.sessionId, token: session.token }));
        expect(await handshake(extra)).toBe('too many connections for this session');
      } finally {
        ws.close();
      }
    });

    it('deeply nested or very wide JSON is refused with 400 over HTTP and acknowledged with 400 over Socket.IO', async () => {
      const session = await ChatClient.createSession(app.url);
      const deep = `{"sessionId":"${session.sessionId}","content":"hi","x":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
      expectError(await call(app.url, 'POST', '/chat/send', { token: session.token, raw: deep }), 400, /^payload is nested too deeply/);
      const wide = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, i]));
      expectError(
        await call(app.url, 'POST', '/chat/send', { token: session.token, json: { sessionId: session.sessionId, content: 'hi', ...wide } }),
        400,
        /^payload has too many fields/,
      );
      const { socket } = await connected(session);
      const exceptions: unknown[] = [];
      socket.on('exception', (e: unknown) => exceptions.push(e));
      // As deep as socket.io-client itself can encode (it walks payloads recursively).
      let nested: unknown = 'bottom';
      for (let i = 0; i < 2_000; i++) nested = { n: nested };
      expectAckError(await emitWithAck(socket, 'chat.send', { content: 'hi', x: nested }), 400, /^payload is nested too deeply/);
      expectAckError(await emitWithAck(socket, 'chat.cancel', nested), 400, /^payload is nested too deeply/);
      await sleep(100);
      expect(exceptions).toEqual([]);
    });

    it('a message of zero-width characters only is empty (HTTP and Socket.IO)', async () => {
      const session = await ChatClient.createSession(app.url);
      const invisible = '\u200B\u200C\u200D\u2060\uFEFF';
      expectError(
        await call(app.url, 'POST', '/chat/send', { token: session.token, json: { sessionId: session.sessionId, content: invisible } }),
        400,
        /content must not be empty/,
      );
      const { socket } = await connected(session);
      expectAckError(await emitWithAck(socket, 'chat.send', { content: invisible }), 400, /content must not be empty/);
    });

    it('the longest valid message is accepted in its longest JSON form (every character a \\u escape)', async () => {
      const session = await ChatClient.createSession(app.url);
      const escaped = '\\u00e9'.repeat(16_000);
      const raw = `{"sessionId":"${session.sessionId}","content":"${escaped}"}`;
      expect(Buffer.byteLength(raw)).toBeGreaterThan(16_000 * 4 + 16 * 1024);
      const reply = await call(app.url, 'POST', '/chat/send', { token: session.token, raw });
      expect(reply.status).toBe(202);
      const { socket } = await connected(session);
      const ack = (await emitWithAck(socket, 'chat.send', { content: '\u{1F600}'.repeat(8000) })) as { messageId?: string };
      expect(ack.messageId).toEqual(expect.any(String));
    });

    it('malformed JSON gets a fixed message that does not quote the input', async () => {
      const session = await ChatClient.createSession(app.url);
      const reply = await call(app.url, 'POST', '/chat/send', {
        token: session.token,
        raw: `{"sessionId": "${session.sessionId}", "content": SECRET-ish}`,
      });
      expectError(reply, 400, /^malformed JSON body$/);
      expect(reply.text).not.toContain('SECRET-ish');
    });

    it('an SSE Last-Event-ID beyond 64 bits is 400, not 200 and a dropped stream', async () => {
      const session = await ChatClient.createSession(app.url);
      for (const id of ['12345678901234567890123-0', '18446744073709551616-0', '0-18446744073709551616']) {
        const reply = await call(app.url, 'GET', `/chat/${session.sessionId}/events`, {
          token: session.token,
          headers: { 'Last-Event-ID': id },
        });
        expectError(reply, 400, /Last-Event-ID must be an event id/, id);
      }
      const socket = track(
        chatSocket(app.url, '/chat', { sessionId: session.sessionId, token: session.token, lastEventId: '12345678901234567890123-0' }),
      );
      expect(await handshake(socket)).toBe('invalid lastEventId');
    });
  });

  // =============================================================================================
  describe('an API of its own: MAX_CONNECTIONS_PER_ADDRESS=8 (no other test holds its places)', () => {
    it('caps connections per address (8), counting connections that never authenticate; the default namespace is closed', async () => {
      const app = await startApp({ MAX_CONNECTIONS_PER_ADDRESS: '8', RATE_LIMIT_NEW_SESSIONS_PER_MINUTE: '0' });
      const session = await ChatClient.createSession(app.url);
      expect(await handshake(track(chatSocket(app.url, '/')))).toBe('unknown namespace: connect to /chat');
      // Bare engine.io connections: no namespace, no auth. Each holds a place until it closes.
      const bare = Array.from(
        { length: 8 },
        () => new Manager(app.url, { transports: ['websocket'], reconnection: false, autoConnect: false }),
      );
      await Promise.all(bare.map((m) => new Promise<void>((resolve, reject) => m.open((err) => (err ? reject(err) : resolve())))));
      const ninth = track(chatSocket(app.url, '/chat', { sessionId: session.sessionId, token: session.token }));
      // The handshake request itself is refused (HTTP 403 to the WebSocket upgrade).
      expect(await handshake(ninth)).toBe('websocket error');
      const sse = await call(app.url, 'GET', `/chat/${session.sessionId}/events`, { token: session.token });
      expectError(sse, 429, /too many open connections from this address/);
      bare[0].engine.close();
      await sleep(300);
      const afterwards = track(chatSocket(app.url, '/chat', { sessionId: session.sessionId, token: session.token }));
      expect(await handshake(afterwards)).toBe('connected');
      for (const m of bare) m.engine.close();
      await app.stop();
    });
  });

  // =============================================================================================
  describe('what is public: /health summary, /metrics and /docs closable', () => {
    it('/health names no internal address unless HEALTH_DETAILS=true', async () => {
      const host = 'http://127.0.0.1:9'; // discard port: nothing answers
      const quiet = await startApp({ AI_PROVIDER: 'ollama', OLLAMA_HOST: host });
      const summary = await fetch(`${quiet.url}/health`);
      expect(summary.status).toBe(503);
      const text = await summary.text();
      expect(text).not.toContain('127.0.0.1:9');
      expect(JSON.parse(text)).toMatchObject({
        details: { redis: { status: 'up' }, ai: { status: 'down', message: expect.stringContaining('Cannot reach Ollama') } },
      });
      expect(text).not.toMatch(LEAK);
      await quiet.stop();
      const detailed = await startApp({ AI_PROVIDER: 'ollama', OLLAMA_HOST: host, HEALTH_DETAILS: 'true' });
      expect(await (await fetch(`${detailed.url}/health`)).text()).toContain('127.0.0.1:9');
      await detailed.stop();
    });

    it('METRICS_TOKEN closes /metrics; DOCS_ENABLED=false removes /docs', async () => {
      const token = 'metrics-token-0123456789';
      const closed = await startApp({ METRICS_TOKEN: token, DOCS_ENABLED: 'false' });
      expectError(await call(closed.url, 'GET', '/metrics'), 401, /METRICS_TOKEN/);
      expectError(await call(closed.url, 'GET', '/metrics', { token: 'metrics-token-wrong-guess' }), 401, /METRICS_TOKEN/);
      const scraped = await call(closed.url, 'GET', '/metrics', { headers: { authorization: `bearer ${token}` } });
      expect(scraped.status).toBe(200);
      expect(scraped.text).toContain('process_cpu_user_seconds_total');
      expect((await call(closed.url, 'GET', '/docs')).status).toBe(404);
      expect((await call(closed.url, 'GET', '/docs-json')).status).toBe(404);
      await closed.stop();
    });
  });
});
