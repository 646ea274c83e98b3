import { expect } from '@jest/globals';
/**
 * Session tokens end to end (issue 15, items 4, 7, 8, 12): where a query token is accepted, the
 * Bearer scheme's spelling, expiry, secret rotation, revocation by DELETE, reissue, and the
 * per-address limit on POST /sessions. Real app processes, real HTTP, SSE, Socket.IO and plain
 * WebSocket clients, a real redis-server. Tokens are crafted with node:crypto from the secrets the
 * apps are started with, exactly as the format (src/auth/token-format.ts) defines them.
 */
import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chromium, Browser, Page } from 'playwright-core';
import { WebSocket } from 'ws';
import { AppProcess } from './support/app-process';
import { Session } from './support/chat-client';
import { FakeOllama } from './support/fake-ollama';
import { call } from './support/http-call';
import { chatSocket, handshake, handshakeOutcome } from './support/socket-handshake';
import { SseClient } from './support/sse-client';
import { allKeys, freshTestRedis, keyLayout, type TestRedis, testRedisEnv } from './support/test-redis';
import { awayFromMinuteBoundary, sleep } from './support/timing';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SECRET_A = 'secret-A-0123456789abcdef';
const SECRET_B = 'secret-B-0123456789abcdef';
const SECRET_UNKNOWN = 'secret-C-0123456789abcdef';
const TTL = 60;

interface Issued extends Session {
  expiresAt: string;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A v2 token as the service builds it: `<sid>.<exp base36>.<HMAC(secret, "session:v2:<sid>:<exp>")>`. */
function craft(secret: string, sessionId: string, expiresAt: number): string {
  const exp = expiresAt.toString(36);
  return `${sessionId}.${exp}.${createHmac('sha256', secret).update(`session:v2:${sessionId}:${exp}`).digest('base64url')}`;
}

/** A token of the old format (no expiry), as issued before tokens expired. */
function craftV1(secret: string, sessionId: string): string {
  return `${sessionId}.${createHmac('sha256', secret).update(`session:v1:${sessionId}`).digest('base64url')}`;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function createSession(baseUrl: string): Promise<Issued> {
  const reply = await call(baseUrl, 'POST', '/sessions');
  expect(reply.status).toBe(201);
  return reply.body as unknown as Issued;
}

/** The HTTP status of a plain WebSocket upgrade (101 once open). */
function wsStatus(baseUrl: string, sessionId: string, token: string): Promise<number> {
  return new Promise<number>((resolve) => {
    const socket = new WebSocket(`${baseUrl.replace('http', 'ws')}/ws/${sessionId}?token=${encodeURIComponent(token)}`);
    socket.once('open', () => {
      socket.close();
      resolve(101);
    });
    socket.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    socket.once('error', () => resolve(0));
  });
}

/** The status of an SSE request (closed at once if it opened). */
async function sseStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  const sse = new SseClient();
  await sse.open(url, headers);
  await sse.close();
  return sse.status;
}

/** Every way in, with one token: [history, send, SSE by header, SSE by query, Socket.IO handshake, plain WS]. */
async function everyWayIn(baseUrl: string, sessionId: string, token: string): Promise<(number | string)[]> {
  return [
    (await call(baseUrl, 'GET', `/chat/${sessionId}/history`, bearer(token))).status,
    (await call(baseUrl, 'POST', '/chat/send', { ...bearer(token), json: { sessionId, content: 'hello' } })).status,
    await sseStatus(`${baseUrl}/chat/${sessionId}/events`, bearer(token)),
    await sseStatus(`${baseUrl}/chat/${sessionId}/events?token=${encodeURIComponent(token)}`),
    await handshakeOutcome(baseUrl, { sessionId, token }),
    await wsStatus(baseUrl, sessionId, token),
  ];
}
const ALL_ACCEPTED = [200, 202, 200, 200, 'connected', 101];
const ALL_REFUSED = [401, 401, 401, 401, 'unauthorized', 401];

describe('session tokens', () => {
  let redis: TestRedis;
  let ollama: FakeOllama;
  const apps: AppProcess[] = [];

  const startApp = async (env: Record<string, string>): Promise<AppProcess> => {
    const app = await AppProcess.start({
      env: {
        ...testRedisEnv(),
        OLLAMA_HOST: ollama.url,
        WORKER_ENABLED: 'false',
        RATE_LIMIT_SESSION_PER_MINUTE: '0',
        RATE_LIMIT_IP_PER_MINUTE: '0',
        ...env,
      },
    });
    apps.push(app);
    return app;
  };

  beforeAll(async () => {
    redis = await freshTestRedis();
    ollama = new FakeOllama();
    await ollama.start();
  });

  afterAll(async () => {
    await Promise.all(apps.splice(0).map((a) => a.stop()));
    await ollama?.stop();
    await redis?.quit();
  });

  // ===========================================================================================
  describe(`SESSION_SECRET=A, TOKEN_TTL_SECONDS=${TTL}`, () => {
    let app: AppProcess;

    beforeAll(async () => {
      app = await startApp({ SESSION_SECRET: SECRET_A, TOKEN_TTL_SECONDS: String(TTL), RATE_LIMIT_NEW_SESSIONS_PER_MINUTE: '0' });
    }, 30_000);

    it('POST /sessions answers the token with its expiry, TOKEN_TTL_SECONDS from now; the token is signed with SESSION_SECRET', async () => {
      const before = nowSeconds();
      const s = await createSession(app.url);
      const expiresAt = Date.parse(s.expiresAt) / 1000;
      expect(expiresAt).toBeGreaterThanOrEqual(before + TTL);
      expect(expiresAt).toBeLessThanOrEqual(nowSeconds() + TTL);
      expect(s.token).toBe(craft(SECRET_A, s.sessionId, expiresAt));
      expect(await everyWayIn(app.url, s.sessionId, s.token)).toEqual(ALL_ACCEPTED);
    });

    it('a query token is ignored on every route but the SSE stream: a request with only ?token= is 401', async () => {
      const s = await createSession(app.url);
      const sent = await call(app.url, 'POST', '/chat/send', { ...bearer(s.token), json: { sessionId: s.sessionId, content: 'keep me' } });
      expect(sent.status).toBe(202);
      const q = `?token=${encodeURIComponent(s.token)}`;
      const refused = [
        await call(app.url, 'GET', `/chat/${s.sessionId}/history${q}`),
        await call(app.url, 'POST', `/chat/send${q}`, { json: { sessionId: s.sessionId, content: 'by query' } }),
        await call(app.url, 'POST', `/chat/${s.sessionId}/messages/${String(sent.body!.messageId)}/cancel${q}`),
        await call(app.url, 'DELETE', `/chat/${s.sessionId}${q}`),
        await call(app.url, 'POST', `/sessions/${s.sessionId}/token${q}`),
      ];
      for (const reply of refused) {
        expect({ status: reply.status, body: reply.body }).toEqual({
          status: 401,
          body: { statusCode: 401, error: 'Unauthorized', message: expect.stringMatching(/missing bearer token/) },
        });
      }
      // nothing happened: the message is neither cancelled nor cleared, the session is not revoked
      const history = await call(app.url, 'GET', `/chat/${s.sessionId}/history`, bearer(s.token));
      expect(history.status).toBe(200);
      expect(history.body!.messages).toEqual([expect.objectContaining({ role: 'user', content: 'keep me', status: 'queued' })]);
      // where a header cannot be sent (EventSource), the query token works
      expect(await sseStatus(`${app.url}/chat/${s.sessionId}/events${q}`)).toBe(200);
    });

    it('the Bearer scheme is case-insensitive and may be followed by several spaces', async () => {
      const s = await createSession(app.url);
      for (const authorization of [`bearer ${s.token}`, `BEARER ${s.token}`, `BeArEr    ${s.token}  `, `Bearer\t${s.token}`]) {
        expect({ authorization, status: (await call(app.url, 'GET', `/chat/${s.sessionId}/history`, { authorization })).status }).toEqual({
          authorization,
          status: 200,
        });
      }
      expect((await call(app.url, 'GET', `/chat/${s.sessionId}/history`, { authorization: `Bearerx ${s.token}` })).status).toBe(401);
    });

    it('an expired token is refused everywhere; a crafted live one (control) works', async () => {
      const s = await createSession(app.url);
      const live = craft(SECRET_A, s.sessionId, nowSeconds() + 30);
      expect(await everyWayIn(app.url, s.sessionId, live)).toEqual(ALL_ACCEPTED);

      const expired = craft(SECRET_A, s.sessionId, nowSeconds() - 1);
      expect(await everyWayIn(app.url, s.sessionId, expired)).toEqual(ALL_REFUSED);
      const reply = await call(app.url, 'GET', `/chat/${s.sessionId}/history`, bearer(expired));
      expect(reply.body).toEqual({
        statusCode: 401,
        error: 'Unauthorized',
        message: expect.stringMatching(/^invalid token: it has expired/),
      });
      // nor can an expired token be traded for a fresh one
      expect((await call(app.url, 'POST', `/sessions/${s.sessionId}/token`, bearer(expired))).status).toBe(401);
    });

    it('refuses a token whose expiry lies beyond what this deployment issues (a longer TTL, or a stretched expiry), and old v1 tokens', async () => {
      const s = await createSession(app.url);
      expect(await everyWayIn(app.url, s.sessionId, craft(SECRET_A, s.sessionId, nowSeconds() + 3600))).toEqual(ALL_REFUSED);
      // the expiry is signed: changing it in a genuine token breaks the signature
      const [sid, , signature] = s.token.split('.');
      const stretched = `${sid}.${(nowSeconds() + 50).toString(36)}.${signature}`;
      expect((await call(app.url, 'GET', `/chat/${s.sessionId}/history`, bearer(stretched))).body!.message).toBe('invalid token');
      expect(await everyWayIn(app.url, s.sessionId, craftV1(SECRET_A, s.sessionId))).toEqual(ALL_REFUSED);
    });

    it('POST /sessions/:id/token reissues a working token with a later expiry; only for the holder of a token of that session', async () => {
      const s = await createSession(app.url);
      const other = await createSession(app.url);
      await sleep(1100); // expiries have one-second resolution
      const reply = await call(app.url, 'POST', `/sessions/${s.sessionId}/token`, { authorization: `bearer ${s.token}` });
      expect(reply.status).toBe(201);
      const fresh = reply.body as unknown as Issued;
      expect(fresh).toEqual({ sessionId: s.sessionId, token: expect.any(String), expiresAt: expect.any(String) });
      expect(Date.parse(fresh.expiresAt)).toBeGreaterThan(Date.parse(s.expiresAt));
      expect(fresh.token).not.toBe(s.token);
      expect(await everyWayIn(app.url, s.sessionId, fresh.token)).toEqual(ALL_ACCEPTED);
      // the old token keeps working until its own expiry
      expect((await call(app.url, 'GET', `/chat/${s.sessionId}/history`, bearer(s.token))).status).toBe(200);

      expect((await call(app.url, 'POST', `/sessions/${s.sessionId}/token`)).status).toBe(401);
      expect((await call(app.url, 'POST', `/sessions/${s.sessionId}/token`, bearer('garbage'))).status).toBe(401);
      expect((await call(app.url, 'POST', `/sessions/${s.sessionId}/token`, bearer(other.token))).status).toBe(403);
      expect((await call(app.url, 'POST', '/sessions/a*b/token', bearer(s.token))).status).toBe(400);
    });

    it('DELETE revokes the session: its tokens, old and reissued, stop working over HTTP, SSE, Socket.IO and the plain WebSocket', async () => {
      const s = await createSession(app.url);
      const second = (await call(app.url, 'POST', `/sessions/${s.sessionId}/token`, bearer(s.token))).body as unknown as Issued;
      const bystander = await createSession(app.url);
      expect(await everyWayIn(app.url, s.sessionId, s.token)).toEqual(ALL_ACCEPTED);

      expect((await call(app.url, 'DELETE', `/chat/${s.sessionId}`, bearer(s.token))).status).toBe(204);

      for (const token of [s.token, second.token]) {
        expect(await everyWayIn(app.url, s.sessionId, token)).toEqual(ALL_REFUSED);
        expect((await call(app.url, 'POST', `/sessions/${s.sessionId}/token`, bearer(token))).status).toBe(401);
        expect((await call(app.url, 'DELETE', `/chat/${s.sessionId}`, bearer(token))).status).toBe(401);
      }
      const reply = await call(app.url, 'GET', `/chat/${s.sessionId}/history`, bearer(s.token));
      expect(reply.body).toEqual({ statusCode: 401, error: 'Unauthorized', message: 'invalid token: its session was deleted' });
      // the revocation outlives every token of the session, and no longer
      const ttl = await redis.ttl(keyLayout().session(s.sessionId).revoked);
      expect(ttl).toBeGreaterThan(TTL);
      expect(ttl).toBeLessThanOrEqual(TTL + 300);
      // other sessions are untouched
      expect(await everyWayIn(app.url, bystander.sessionId, bystander.token)).toEqual(ALL_ACCEPTED);
    });

    it('a socket authenticated before DELETE cannot write into the deleted session', async () => {
      const s = await createSession(app.url);
      const socket = chatSocket(app.url, '/chat', { sessionId: s.sessionId, token: s.token });
      try {
        expect(await handshake(socket)).toBe('connected');
        expect((await call(app.url, 'DELETE', `/chat/${s.sessionId}`, bearer(s.token))).status).toBe(204);
        const ack: unknown = await socket.timeout(5000).emitWithAck('chat.send', { content: 'after the delete' });
        expect(ack).toEqual({ error: { statusCode: 401, error: 'Unauthorized', message: 'invalid token: its session was deleted' } });
        // nothing of the session was written: no history, no waiting message, no event
        const keys = keyLayout().session(s.sessionId);
        expect(await redis.exists(keys.hash, keys.order, keys.queue, keys.events)).toBe(0);
      } finally {
        socket.close();
      }
    });

    it('a socket that outlives its token is disconnected at its next event', async () => {
      const s = await createSession(app.url);
      const token = craft(SECRET_A, s.sessionId, nowSeconds() + 2);
      const socket = chatSocket(app.url, '/chat', { sessionId: s.sessionId, token });
      try {
        expect(await handshake(socket)).toBe('connected');
        const live: unknown = await socket.timeout(5000).emitWithAck('chat.send', { content: 'while the token lives' });
        expect(live).toEqual({ messageId: expect.any(String) });
        await new Promise((r) => setTimeout(r, 3000));
        const disconnected = new Promise<string>((resolve) => socket.once('disconnect', (reason) => resolve(reason)));
        socket.emit('chat.send', { content: 'after it expired' });
        expect(await disconnected).toBe('io server disconnect');
      } finally {
        socket.close();
      }
    });
  });

  // ===========================================================================================
  describe('rotation: SESSION_SECRET=B, SESSION_SECRET_PREVIOUS=A', () => {
    let app: AppProcess;

    beforeAll(async () => {
      app = await startApp({
        SESSION_SECRET: SECRET_B,
        SESSION_SECRET_PREVIOUS: `${SECRET_A}, other-old-secret-0123456789`,
        RATE_LIMIT_NEW_SESSIONS_PER_MINUTE: '0',
      });
    }, 30_000);

    it('accepts tokens signed with the previous secret, issues tokens signed with the current one, refuses any other secret', async () => {
      const s = await createSession(app.url);
      const expiresAt = Date.parse(s.expiresAt) / 1000;
      expect(s.token).toBe(craft(SECRET_B, s.sessionId, expiresAt));
      expect(await everyWayIn(app.url, s.sessionId, s.token)).toEqual(ALL_ACCEPTED);

      const fromA = craft(SECRET_A, s.sessionId, nowSeconds() + 600);
      expect(await everyWayIn(app.url, s.sessionId, fromA)).toEqual(ALL_ACCEPTED);
      // a token of the previous secret is traded for one of the current secret
      const reissued = (await call(app.url, 'POST', `/sessions/${s.sessionId}/token`, bearer(fromA))).body as unknown as Issued;
      expect(reissued.token).toBe(craft(SECRET_B, s.sessionId, Date.parse(reissued.expiresAt) / 1000));

      const unknown = craft(SECRET_UNKNOWN, s.sessionId, nowSeconds() + 600);
      expect(await everyWayIn(app.url, s.sessionId, unknown)).toEqual(ALL_REFUSED);
    });
  });

  // ===========================================================================================
  describe('AUTH_MODE=none', () => {
    let app: AppProcess;

    beforeAll(async () => {
      app = await startApp({ AUTH_MODE: 'none' });
    }, 30_000);

    it('DELETE revokes nothing: there are no tokens to revoke', async () => {
      const sessionId = 'no-tokens_1';
      expect((await call(app.url, 'DELETE', `/chat/${sessionId}`)).status).toBe(204);
      expect(await redis.exists(keyLayout().session(sessionId).revoked)).toBe(0);
      expect((await call(app.url, 'GET', `/chat/${sessionId}/history`)).status).toBe(200);
    });
  });

  // ===========================================================================================
  describe('RATE_LIMIT_NEW_SESSIONS_PER_MINUTE=3', () => {
    let app: AppProcess;

    beforeAll(async () => {
      app = await startApp({ RATE_LIMIT_NEW_SESSIONS_PER_MINUTE: '3' });
    }, 30_000);

    it('refuses the 4th POST /sessions of an address in a minute with 429 and Retry-After; reissues are not limited', async () => {
      await awayFromMinuteBoundary();
      const created = [await createSession(app.url), await createSession(app.url), await createSession(app.url)];
      const refused = await call(app.url, 'POST', '/sessions');
      expect({ status: refused.status, body: refused.body }).toEqual({
        status: 429,
        body: {
          statusCode: 429,
          error: 'Too Many Requests',
          message: expect.stringMatching(/at most 3 new sessions per minute from one address/),
        },
      });
      const retryAfter = Number(refused.headers.get('retry-after'));
      const untilNextMinute = Math.ceil((60_000 - (Date.now() % 60_000)) / 1000);
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(Math.abs(retryAfter - untilNextMinute)).toBeLessThanOrEqual(2);
      expect((await call(app.url, 'POST', '/sessions')).status).toBe(429);

      // reissuing a token creates no session and is not counted
      for (const s of created) expect((await call(app.url, 'POST', `/sessions/${s.sessionId}/token`, bearer(s.token))).status).toBe(201);
      // the window's key names a hash of the address, never the address itself
      const keys = await allKeys(redis, 'chat:rate:new-sessions:*');
      expect(keys).toHaveLength(1);
      expect(keys[0]).not.toMatch(/127\.0\.0\.1|::1|::ffff/);
    });
  });

  // ===========================================================================================
  describe(`the built-in page (Chromium), TOKEN_TTL_SECONDS=${TTL}`, () => {
    let app: AppProcess;
    let browser: Browser;
    let page: Page;
    const pageErrors: string[] = [];

    interface Stored extends Issued {
      issuedAt: number;
    }
    /** The open chat's entry in the page's chat list (src/public/js/chats.js), in the fields of an issued token. */
    const stored = () =>
      page.evaluate((): Stored | null => {
        const list = JSON.parse(localStorage.getItem('ai-assistant.chats') ?? '[]') as {
          sessionId: string;
          token: string;
          tokenExpiresAt: string;
          tokenIssuedAt: number;
        }[];
        const open = list.find((c) => c.sessionId === sessionStorage.getItem('ai-assistant.open-chat'));
        return open ? { sessionId: open.sessionId, token: open.token, expiresAt: open.tokenExpiresAt, issuedAt: open.tokenIssuedAt } : null;
      });
    const connected = () => page.locator('#state[data-state="connected"]').waitFor();

    beforeAll(async () => {
      if (!existsSync(CHROMIUM)) throw new Error(`Chromium is needed at ${CHROMIUM} (apt-get install chromium) or CHROMIUM_PATH`);
      app = await startApp({
        WORKER_ENABLED: 'true',
        SESSION_SECRET: SECRET_A,
        TOKEN_TTL_SECONDS: String(TTL),
        RATE_LIMIT_NEW_SESSIONS_PER_MINUTE: '0',
      });
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run'],
      });
      page = await (await browser.newContext()).newPage();
      page.setDefaultTimeout(10_000);
      page.on('pageerror', (err) => pageErrors.push(err.message));
    }, 30_000);

    afterAll(async () => {
      await browser?.close();
    });

    afterEach(() => {
      expect(pageErrors.splice(0)).toEqual([]);
    });

    it('keeps the token with its expiry, and trades it for a fresh one on load once past half its life', async () => {
      await page.goto(app.url);
      await connected();
      const first = (await stored())!;
      expect(first).toEqual({
        sessionId: expect.any(String),
        token: expect.any(String),
        expiresAt: expect.any(String),
        issuedAt: expect.any(Number),
      });
      expect(Date.parse(first.expiresAt) / 1000).toBeGreaterThanOrEqual(nowSeconds() + TTL - 5);

      // before half its life: a reload keeps the token
      await page.reload();
      await connected();
      expect((await stored())!.token).toBe(first.token);

      // past half its life (as if received long ago): the reload reissues it, same conversation
      await call(app.url, 'POST', '/chat/send', { ...bearer(first.token), json: { sessionId: first.sessionId, content: 'still here?' } });
      await sleep(1100); // expiries have one-second resolution
      await page.evaluate((sessionId) => {
        const list = JSON.parse(localStorage.getItem('ai-assistant.chats') ?? '[]') as { sessionId: string; tokenIssuedAt: number }[];
        for (const c of list) if (c.sessionId === sessionId) c.tokenIssuedAt = Date.now() - 3600_000;
        localStorage.setItem('ai-assistant.chats', JSON.stringify(list));
      }, first.sessionId);
      await page.reload();
      await connected();
      const fresh = (await stored())!;
      expect(fresh.sessionId).toBe(first.sessionId);
      expect(fresh.token).not.toBe(first.token);
      expect(Date.parse(fresh.expiresAt)).toBeGreaterThan(Date.parse(first.expiresAt));
      expect(await everyWayIn(app.url, fresh.sessionId, fresh.token)).toEqual(ALL_ACCEPTED);
      await page.locator('#log .user-text', { hasText: 'still here?' }).first().waitFor();
    });

    it('a deleted session (revoked token) makes the page start a new conversation, and say so', async () => {
      const before = (await stored())!;
      expect((await call(app.url, 'DELETE', `/chat/${before.sessionId}`, bearer(before.token))).status).toBe(204);
      await page.reload();
      await connected();
      expect(await page.locator('#banner').textContent()).toMatch(/new one was started/);
      const after = (await stored())!;
      expect(after.sessionId).not.toBe(before.sessionId);
      expect(await everyWayIn(app.url, after.sessionId, after.token)).toEqual(ALL_ACCEPTED);
    });
  });
});
