import { expect } from '@jest/globals';
/**
 * Hostile input, auth, limits and security headers, end to end with real parts: the built app as
 * child processes (sometimes two or three at once on one Redis database), real HTTP requests, real
 * socket.io-client sockets, a real redis-server, the fake Ollama server.
 *
 * Every refused request is checked for the contract's error shape `{statusCode, error, message}`
 * (a message naming the problem, no stack or internals) and for having changed nothing: no command in
 * any partition's `chat:incoming:{T}`, no event in any `chat:outgoing:{T}`, no message accepted (no
 * member added to any `chat:backlog:{T}`), no new Redis key, the session's history unchanged
 * (docs/design.md, "Partitions and keys"). Apps run without a worker where queue lengths are
 * asserted, so nothing drains behind our back.
 */
import { KeyLayout } from '../src/event-bus/stream-names';
import { AppProcess } from './support/app-process';
import { ChatClient, Session } from './support/chat-client';
import { FakeOllama } from './support/fake-ollama';
import { call, expectAckError, expectError, Reply } from './support/http-call';
import { handshakeOutcome } from './support/socket-handshake';
import {
  acceptedCount,
  allKeys,
  commandsAdded,
  flush,
  freshTestRedis,
  keyLayout,
  type TestRedis,
  testRedisEnv,
} from './support/test-redis';
import { awayFromMinuteBoundary } from './support/timing';

/** Small, so oversized payloads stay small. */
const MAX_CHARS = 200;
/** The JSON body limit and Socket.IO's maxHttpBufferSize: MAX_MESSAGE_CHARS * 6 + 16 KiB (every character as a \uXXXX escape). */
const BYTE_LIMIT = MAX_CHARS * 6 + 16 * 1024;
const ID_RULE = 'must be 1-64 characters of A-Z, a-z, 0-9, _ or -';

/** Ids that must never reach a Redis key. */
const HOSTILE_IDS: [string, string][] = [
  ['path traversal ../x', '../x'],
  ['glob a*b', 'a*b'],
  ['hash tag {x}', '{x}'],
  ['embedded newline a\\nb', 'a\nb'],
  ['space a b', 'a b'],
  ['65 characters', 'x'.repeat(65)],
  ['empty string', ''],
  ['unicode', 'sëssiön-ü'],
  ['emoji', 'id-😀'],
  ['key separator chat:x', 'chat:x'],
];

// ---------------------------------------------------------------------------------------------
// Redis helpers

/** The length of every non-empty stream of one kind, one per partition, by key (one XLEN each: the streams span a cluster's nodes). */
async function streamLengths(redis: TestRedis, kind: 'incoming' | 'outgoing'): Promise<Record<string, number>> {
  const streams = keyLayout().partitions.map((p) => p[kind]);
  const lengths: Record<string, number> = {};
  (await Promise.all(streams.map((stream) => redis.xlen(stream)))).forEach((length, i) => {
    if (length > 0) lengths[streams[i]] = length;
  });
  return lengths;
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

function retryAfterOf(reply: Reply): number {
  const header = reply.headers.get('retry-after');
  expect(header).toMatch(/^\d+$/);
  return Number(header);
}

/** A raw JSON body of exactly `bytes` bytes whose content is all 'x'. */
function bodyOfBytes(sessionId: string, bytes: number): string {
  const shell = Buffer.byteLength(JSON.stringify({ sessionId, content: '' }));
  const body = JSON.stringify({ sessionId, content: 'x'.repeat(bytes - shell) });
  expect(Buffer.byteLength(body)).toBe(bytes);
  return body;
}

// ---------------------------------------------------------------------------------------------

describe('input validation, auth, limits and security headers', () => {
  let redis: TestRedis;
  let ollama: FakeOllama;
  const apps: AppProcess[] = [];
  const clients: ChatClient[] = [];

  const startApp = async (env: Record<string, string>): Promise<AppProcess> => {
    const app = await AppProcess.start({ env: { ...testRedisEnv(), OLLAMA_HOST: ollama.url, ...env } });
    apps.push(app);
    return app;
  };
  const stopApps = async () => {
    await Promise.all(apps.splice(0).map((a) => a.stop()));
  };
  const open = async (baseUrl: string, session?: Session): Promise<ChatClient> => {
    const client = await ChatClient.open(baseUrl, session);
    clients.push(client);
    return client;
  };
  const historyOf = async (baseUrl: string, s: Session) => {
    const res = await call(baseUrl, 'GET', `/chat/${s.sessionId}/history`, { token: s.token });
    expect(res.status).toBe(200);
    return res.body as { sessionId: string; messages: Record<string, unknown>[] };
  };
  /** A session of the first group, whose token is signed with the secret that pair shared through Redis. */
  let tokenOfRedisSecret: Session | null = null;
  const sendHttp = (baseUrl: string, s: Session, content: string, extra: Record<string, unknown> = {}) =>
    call(baseUrl, 'POST', '/chat/send', { token: s.token, json: { sessionId: s.sessionId, content, ...extra } });

  beforeAll(async () => {
    redis = await freshTestRedis();
    ollama = new FakeOllama({ defaultTokenDelayMs: 2 });
    await ollama.start();
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });

  afterAll(async () => {
    for (const c of clients.splice(0)) c.close();
    await stopApps();
    await ollama?.stop();
    await redis?.quit();
  });

  // ===========================================================================================
  describe('two API instances on one Redis, no SESSION_SECRET, MAX_MESSAGE_CHARS=200, no worker', () => {
    let a: AppProcess;
    let b: AppProcess;
    /** The session whose state every refused request must leave alone. */
    let main: Session;
    let other: Session;
    let seededMessageId: string;
    let mainSocket: ChatClient;
    const env = {
      MAX_MESSAGE_CHARS: String(MAX_CHARS),
      WORKER_ENABLED: 'false',
      RATE_LIMIT_SESSION_PER_MINUTE: '0',
      RATE_LIMIT_IP_PER_MINUTE: '0',
    };

    /** Everything a refused request could have touched. */
    const snapshot = async () => ({
      incoming: await streamLengths(redis, 'incoming'),
      outgoing: await streamLengths(redis, 'outgoing'),
      accepted: await acceptedCount(redis),
      keys: (await allKeys(redis)).sort(),
      history: await historyOf(a.url, main),
    });

    beforeAll(async () => {
      await flush(redis);
      [a, b] = await Promise.all([startApp(env), startApp(env)]);
      main = await ChatClient.createSession(a.url);
      other = await ChatClient.createSession(a.url);
      const seeded = await sendHttp(a.url, main, 'the one message this session has');
      expect(seeded.status).toBe(202);
      seededMessageId = String(seeded.body!.messageId);
      // the session's head: the one command in any partition
      expect(await streamLengths(redis, 'incoming')).toEqual({ [keyLayout().partitionOf(main.sessionId).incoming]: 1 });
      tokenOfRedisSecret = main;
    }, 40_000);

    beforeEach(async () => {
      mainSocket = await open(a.url, main);
    });

    afterAll(async () => {
      await stopApps();
    });

    // ---- bad input over HTTP -----------------------------------------------------------------

    interface HttpCase {
      name: string;
      method: 'GET' | 'POST' | 'DELETE';
      path: (s: Session, messageId: string) => string;
      json?: (s: Session) => unknown;
      raw?: (s: Session) => string;
      contentType?: string;
      status: number;
      message: RegExp;
    }

    const send = (name: string, json: (s: Session) => unknown, message: RegExp): HttpCase => ({
      name: `POST /chat/send: ${name}`,
      method: 'POST',
      path: () => '/chat/send',
      json,
      status: 400,
      message,
    });
    const sendRaw = (name: string, raw: (s: Session) => string, status: number, message: RegExp, contentType?: string): HttpCase => ({
      name: `POST /chat/send: ${name}`,
      method: 'POST',
      path: () => '/chat/send',
      raw,
      contentType,
      status,
      message,
    });
    const withBody = (extra: Record<string, unknown>) => (s: Session) => ({ sessionId: s.sessionId, content: 'hello', ...extra });
    const enc = encodeURIComponent;

    const httpCases: HttpCase[] = [
      // content
      send('content missing', (s) => ({ sessionId: s.sessionId }), /content must (not be empty|be a string)/),
      send('content empty', withBody({ content: '' }), /content must not be empty/),
      send('content whitespace only', withBody({ content: ' \n\t\r ' }), /content must not be empty/),
      send(
        `content of ${MAX_CHARS + 1} characters`,
        withBody({ content: 'x'.repeat(MAX_CHARS + 1) }),
        new RegExp(`content must be at most ${MAX_CHARS} characters`),
      ),
      send(
        `content of ${MAX_CHARS + 1} two-byte characters`,
        withBody({ content: 'ü'.repeat(MAX_CHARS + 1) }),
        new RegExp(`content must be at most ${MAX_CHARS} characters`),
      ),
      send('content is a number', withBody({ content: 42 }), /content must be a string/),
      send('content is an array', withBody({ content: ['hello'] }), /content must be a string/),
      send('content is an object', withBody({ content: { text: 'hello' } }), /content must be a string/),
      send('content is null', withBody({ content: null }), /content must be a string/),
      send('content is a boolean', withBody({ content: true }), /content must be a string/),
      // unknown fields
      send('unknown field role', withBody({ role: 'system' }), /property role should not exist/),
      send('unknown field messageId', withBody({ messageId: 'm-1' }), /property messageId should not exist/),
      send(
        'two unknown fields',
        withBody({ priority: 'high', status: 'completed' }),
        /property priority should not exist.*property status should not exist/,
      ),
      // JSON.parse makes `__proto__` / `constructor` own keys; class-transformer skips them, so they escape forbidNonWhitelisted
      sendRaw(
        'unknown field __proto__ (raw JSON)',
        (s) => `{"sessionId":"${s.sessionId}","content":"hello","__proto__":{"admin":true}}`,
        400,
        /__proto__/,
      ),
      sendRaw(
        'unknown field constructor (raw JSON)',
        (s) => `{"sessionId":"${s.sessionId}","content":"hello","constructor":{"prototype":{"admin":true}}}`,
        400,
        /constructor/,
      ),
      // think
      ...(['max', 'LOW', '', 1, ['low']] as unknown[]).map((think) =>
        send(`think ${JSON.stringify(think)}`, withBody({ think }), /think must be one of the following values: low, medium, high/),
      ),
      // sessionId in the body
      send('sessionId missing', () => ({ content: 'hello' }), /sessionId must be a string/),
      send('sessionId is a number', withBody({ sessionId: 123 }), /sessionId must be a string/),
      send('sessionId is null', withBody({ sessionId: null }), /sessionId must be a string/),
      ...HOSTILE_IDS.map(([name, id]) => send(`sessionId ${name}`, withBody({ sessionId: id }), new RegExp(`sessionId ${ID_RULE}`))),
      // clientMessageId
      send('clientMessageId is a number', withBody({ clientMessageId: 7 }), /clientMessageId must be a string/),
      ...HOSTILE_IDS.map(([name, id]) =>
        send(`clientMessageId ${name}`, withBody({ clientMessageId: id }), new RegExp(`clientMessageId ${ID_RULE}`)),
      ),
      // the body as a whole
      send('empty object', () => ({}), /sessionId.*content/),
      sendRaw('empty body with content-type json', () => '', 400, /sessionId.*content/),
      sendRaw('truncated JSON', (s) => `{"sessionId": "${s.sessionId}", "content": "hel`, 400, /JSON/),
      sendRaw('JSON with a trailing comma', (s) => `{"sessionId": "${s.sessionId}", "content": "hello",}`, 400, /JSON/),
      sendRaw('not JSON at all', () => 'sessionId=abc&content=hello', 400, /JSON/),
      sendRaw('single-quoted pseudo JSON', (s) => `{'sessionId': '${s.sessionId}', 'content': 'hello'}`, 400, /JSON/),
      sendRaw('a JSON array', (s) => JSON.stringify([{ sessionId: s.sessionId, content: 'hello' }]), 400, /sessionId|object/),
      sendRaw('a JSON string', (s) => JSON.stringify(JSON.stringify({ sessionId: s.sessionId, content: 'hello' })), 400, /JSON/),
      sendRaw('JSON null', () => 'null', 400, /JSON/),
      sendRaw('a JSON number', () => '42', 400, /JSON/),
      sendRaw(
        'valid JSON sent as text/plain',
        (s) => JSON.stringify({ sessionId: s.sessionId, content: 'hello' }),
        400,
        /sessionId.*content/,
        'text/plain',
      ),
      sendRaw(
        `a body of exactly the limit (${BYTE_LIMIT} bytes) is parsed, its content too long`,
        (s) => bodyOfBytes(s.sessionId, BYTE_LIMIT),
        400,
        new RegExp(`content must be at most ${MAX_CHARS} characters`),
      ),
      sendRaw(
        `a body one byte over the limit (${BYTE_LIMIT + 1} bytes)`,
        (s) => bodyOfBytes(s.sessionId, BYTE_LIMIT + 1),
        413,
        /too large/,
      ),
      sendRaw('a 1 MB body', (s) => bodyOfBytes(s.sessionId, 1_000_000), 413, /too large/),
      // route parameters
      ...HOSTILE_IDS.map(([name, id]): HttpCase =>
        id === ''
          ? { name: `GET history: sessionId ${name}`, method: 'GET', path: () => '/chat//history', status: 404, message: /Cannot GET/ }
          : {
              name: `GET history: sessionId ${name}`,
              method: 'GET',
              path: () => `/chat/${enc(id)}/history`,
              status: 400,
              message: new RegExp(`sessionId ${ID_RULE}`),
            },
      ),
      {
        name: 'GET history: sessionId with a broken percent-encoding',
        method: 'GET',
        path: () => '/chat/%FF/history',
        status: 400,
        message: /^malformed percent-encoding in the URL$/,
      },
      ...HOSTILE_IDS.map(([name, id]): HttpCase =>
        id === ''
          ? {
              name: `POST cancel: messageId ${name}`,
              method: 'POST',
              path: (s) => `/chat/${s.sessionId}/messages//cancel`,
              status: 404,
              message: /Cannot POST/,
            }
          : {
              name: `POST cancel: messageId ${name}`,
              method: 'POST',
              path: (s) => `/chat/${s.sessionId}/messages/${enc(id)}/cancel`,
              status: 400,
              message: new RegExp(`messageId ${ID_RULE}`),
            },
      ),
      ...['../x', 'a*b', '{x}'].map((id): HttpCase => ({
        name: `POST cancel: sessionId ${JSON.stringify(id)}`,
        method: 'POST',
        path: (_s, messageId) => `/chat/${enc(id)}/messages/${messageId}/cancel`,
        status: 400,
        message: new RegExp(`sessionId ${ID_RULE}`),
      })),
      ...['../x', '{x}', 'a\nb', 'x'.repeat(65)].map((id): HttpCase => ({
        name: `DELETE: sessionId ${JSON.stringify(id)}`,
        method: 'DELETE',
        path: () => `/chat/${enc(id)}`,
        status: 400,
        message: new RegExp(`sessionId ${ID_RULE}`),
      })),
      { name: 'DELETE: empty sessionId', method: 'DELETE', path: () => '/chat/', status: 404, message: /Cannot DELETE/ },
    ];

    it.each(httpCases)('HTTP $name → $status, queues and stores nothing', async (c) => {
      const before = await snapshot();
      const reply = await call(a.url, c.method, c.path(main, seededMessageId), {
        token: main.token,
        ...(c.json ? { json: c.json(main) } : {}),
        ...(c.raw ? { raw: c.raw(main) } : {}),
        ...(c.contentType ? { contentType: c.contentType } : {}),
      });
      expectError(reply, c.status, c.message, c.name);
      expect(await snapshot()).toEqual(before);
    });

    // ---- bad input over Socket.IO --------------------------------------------------------------

    const notObjects: [string, unknown][] = [
      ['a string', 'hello'],
      ['a JSON text', JSON.stringify({ content: 'hello' })],
      ['a number', 42],
      ['null', null],
      ['an array', [{ content: 'hello' }]],
      ['an empty array', []],
      ['a boolean', true],
    ];

    const socketSendCases: [string, unknown, RegExp][] = [
      ...notObjects.map(([name, p]): [string, unknown, RegExp] => [name, p, /payload must be a JSON object/]),
      ['content missing', {}, /content must (not be empty|be a string)/],
      ['content empty', { content: '' }, /content must not be empty/],
      ['content whitespace only', { content: ' \n\t ' }, /content must not be empty/],
      [
        `content of ${MAX_CHARS + 1} characters`,
        { content: 'x'.repeat(MAX_CHARS + 1) },
        new RegExp(`content must be at most ${MAX_CHARS} characters`),
      ],
      ['content is a number', { content: 42 }, /content must be a string/],
      ['content is an array', { content: ['hello'] }, /content must be a string/],
      ['content is an object', { content: { text: 'hello' } }, /content must be a string/],
      ['content is null', { content: null }, /content must be a string/],
      ['content is a boolean', { content: false }, /content must be a string/],
      ['think "max"', { content: 'hello', think: 'max' }, /think must be one of the following values: low, medium, high/],
      ['think "HIGH"', { content: 'hello', think: 'HIGH' }, /think must be one of/],
      ['think 3', { content: 'hello', think: 3 }, /think must be one of/],
      [
        'a sessionId (the socket is bound to its session)',
        { content: 'hello', sessionId: 'someone-else' },
        /property sessionId should not exist/,
      ],
      ['unknown field role', { content: 'hello', role: 'system' }, /property role should not exist/],
      ['unknown field __proto__', JSON.parse('{"content":"hello","__proto__":{"admin":true}}'), /__proto__/],
      ['clientMessageId is a number', { content: 'hello', clientMessageId: 7 }, /clientMessageId must be a string/],
      ...HOSTILE_IDS.map(([name, id]): [string, unknown, RegExp] => [
        `clientMessageId ${name}`,
        { content: 'hello', clientMessageId: id },
        new RegExp(`clientMessageId ${ID_RULE}`),
      ]),
    ];

    const socketCancelCases: [string, unknown, RegExp][] = [
      ...notObjects.slice(0, 5).map(([name, p]): [string, unknown, RegExp] => [name, p, /payload must be a JSON object/]),
      ['messageId missing', {}, /messageId must be a string/],
      ['messageId is a number', { messageId: 5 }, /messageId must be a string/],
      ['messageId is null', { messageId: null }, /messageId must be a string/],
      ['unknown field', { messageId: 'm-1', reason: 'because' }, /property reason should not exist/],
      ...HOSTILE_IDS.map(([name, id]): [string, unknown, RegExp] => [
        `messageId ${name}`,
        { messageId: id },
        new RegExp(`messageId ${ID_RULE}`),
      ]),
    ];

    it.each(socketSendCases)('Socket.IO chat.send with %s → ack 400, queues and stores nothing', async (_name, payload, message) => {
      const before = await snapshot();
      expectAckError(await mainSocket.emitWithAck('chat.send', payload), 400, message);
      expect(await snapshot()).toEqual(before);
      expect(mainSocket.socket?.connected).toBe(true);
    });

    it.each(socketCancelCases)('Socket.IO chat.cancel with %s → ack 400, changes nothing', async (_name, payload, message) => {
      const before = await snapshot();
      expectAckError(await mainSocket.emitWithAck('chat.cancel', payload), 400, message);
      expect(await snapshot()).toEqual(before);
    });

    it('Socket.IO chat.send without any payload → ack 400', async () => {
      const before = await snapshot();
      const ack = (await mainSocket.socket!.timeout(5000).emitWithAck('chat.send')) as Record<string, unknown>;
      expectAckError(ack, 400, /payload must be a JSON object/);
      expect(await snapshot()).toEqual(before);
    });

    it('a socket message over maxHttpBufferSize disconnects that socket only; the server keeps serving others', async () => {
      const bystander = await open(a.url, other);
      const victim = mainSocket;
      const before = await snapshot();
      const disconnected = new Promise<string>((resolve) => victim.socket!.once('disconnect', (reason) => resolve(reason)));
      let acked = false;
      // the content alone is as long as the limit, so the frame is over it
      victim.socket!.emit('chat.send', { content: 'y'.repeat(BYTE_LIMIT) }, () => (acked = true));
      expect(await disconnected).toBe('transport close');
      expect(acked).toBe(false);
      expect(await snapshot()).toEqual(before);

      // the server is still up: the bystander's socket still works, new handshakes still work
      expect(bystander.socket?.connected).toBe(true);
      const ack = await bystander.emitWithAck('chat.send', { content: 'still there?' });
      expect(ack).toEqual({ messageId: expect.any(String) });
      await bystander.waitFor((e) => e.type === 'chat.user_message' && e.payload.messageId === ack.messageId);
      const again = await open(a.url, main);
      expect(await again.emitWithAck('chat.cancel', { messageId: String(ack.messageId) })).toEqual({
        error: { statusCode: 404, error: 'Not Found', message: expect.stringContaining(String(ack.messageId)) },
      });
      expect((await call(a.url, 'GET', '/health/live')).status).toBe(200);
    });

    // ---- auth over HTTP: every route -------------------------------------------------------------

    interface Route {
      name: string;
      method: 'GET' | 'POST' | 'DELETE';
      path: (s: Session) => string;
      json?: (s: Session) => unknown;
    }
    const routes: Route[] = [
      {
        name: 'POST /chat/send',
        method: 'POST',
        path: () => '/chat/send',
        json: (s) => ({ sessionId: s.sessionId, content: 'let me in' }),
      },
      { name: 'GET /chat/:sessionId/history', method: 'GET', path: (s) => `/chat/${s.sessionId}/history` },
      {
        name: 'POST /chat/:sessionId/messages/:messageId/cancel',
        method: 'POST',
        path: (s) => `/chat/${s.sessionId}/messages/${seededMessageId}/cancel`,
      },
      { name: 'DELETE /chat/:sessionId', method: 'DELETE', path: (s) => `/chat/${s.sessionId}` },
    ];

    const flip = (c: string) => (c === 'A' ? 'B' : 'A');
    /** `<sessionId>.<expiry>` of a token: everything its signature covers. */
    const signedPart = (s: Session) => s.token.slice(0, s.token.lastIndexOf('.'));
    interface Credential {
      name: string;
      header: () => string | null;
      status: 401 | 403;
      message: RegExp;
    }
    const credentials: Credential[] = [
      { name: 'no Authorization header', header: () => null, status: 401, message: /missing bearer token/ },
      { name: '"Bearer " and nothing', header: () => 'Bearer ', status: 401, message: /missing bearer token/ },
      { name: 'the token without "Bearer "', header: () => main.token, status: 401, message: /missing bearer token/ },
      {
        name: 'Basic credentials',
        header: () => `Basic ${Buffer.from(`${main.sessionId}:${main.token}`).toString('base64')}`,
        status: 401,
        message: /missing bearer token/,
      },
      {
        name: 'forged: right session id, one character of the signature changed',
        header: () => `Bearer ${main.token.slice(0, -1)}${flip(main.token.slice(-1))}`,
        status: 401,
        message: /invalid token/,
      },
      {
        name: "forged: right session id, another session's signature",
        header: () => `Bearer ${signedPart(main)}.${other.token.split('.').pop()}`,
        status: 401,
        message: /invalid token/,
      },
      {
        name: 'forged: right session id, no signature',
        header: () => `Bearer ${signedPart(main)}.`,
        status: 401,
        message: /invalid token/,
      },
      { name: 'forged: the session id alone', header: () => `Bearer ${main.sessionId}`, status: 401, message: /invalid token/ },
      { name: 'garbage', header: () => 'Bearer garbage', status: 401, message: /invalid token/ },
      { name: 'a 4 KB token', header: () => `Bearer ${'a'.repeat(4096)}.${'b'.repeat(43)}`, status: 401, message: /invalid token/ },
      { name: 'a valid token of another session', header: () => `Bearer ${other.token}`, status: 403, message: /another session/ },
    ];
    const authCases = routes.flatMap((route) =>
      credentials.map((credential) => ({ name: `${route.name} with ${credential.name}`, route, credential })),
    );

    it.each(authCases)('$name → refused, changes nothing', async ({ name, route, credential }) => {
      const before = await snapshot();
      const reply = await call(a.url, route.method, route.path(main), {
        authorization: credential.header(),
        ...(route.json ? { json: route.json(main) } : {}),
      });
      expectError(reply, credential.status, credential.message, name);
      const after = await snapshot();
      expect(after).toEqual(before);
      // the seeded message was neither cancelled nor cleared
      expect(after.history.messages).toContainEqual(
        expect.objectContaining({ messageId: seededMessageId, role: 'user', status: 'queued' }),
      );
    });

    it('every route accepts the right token (control for the table above)', async () => {
      const s = await ChatClient.createSession(a.url);
      const sent = await sendHttp(a.url, s, 'mine');
      expect(sent.status).toBe(202);
      expect((await call(a.url, 'GET', `/chat/${s.sessionId}/history`, { token: s.token })).status).toBe(200);
      expect(
        (await call(a.url, 'POST', `/chat/${s.sessionId}/messages/${String(sent.body!.messageId)}/cancel`, { token: s.token })).status,
      ).toBe(202);
      expect((await call(a.url, 'DELETE', `/chat/${s.sessionId}`, { token: s.token })).status).toBe(204);
      // DELETE revokes the session: its token is refused from then on (test/tokens.e2e-spec.ts)
      expectError(await call(a.url, 'GET', `/chat/${s.sessionId}/history`, { token: s.token }), 401, /session was deleted/);
    });

    it('auth is checked before input: a bad body without a token is 401, with a token of another session 403', async () => {
      const before = await snapshot();
      expectError(
        await call(a.url, 'POST', '/chat/send', { json: { sessionId: main.sessionId, content: '' } }),
        401,
        /missing bearer token/,
      );
      expectError(
        await call(a.url, 'POST', '/chat/send', { token: other.token, json: { sessionId: main.sessionId, content: 42 } }),
        403,
        /another session/,
      );
      expect(await snapshot()).toEqual(before);
    });

    // ---- auth over the Socket.IO handshake ---------------------------------------------------------

    const handshakes: [string, () => Record<string, unknown> | undefined][] = [
      ['no auth at all', () => undefined],
      ['a session id without a token', () => ({ sessionId: main.sessionId })],
      ['a token without a session id', () => ({ token: main.token })],
      [
        'a forged token (signature changed)',
        () => ({ sessionId: main.sessionId, token: `${main.token.slice(0, -1)}${flip(main.token.slice(-1))}` }),
      ],
      [
        "a forged token (another session's signature)",
        () => ({ sessionId: main.sessionId, token: `${signedPart(main)}.${other.token.split('.').pop()}` }),
      ],
      ['a garbage token', () => ({ sessionId: main.sessionId, token: 'garbage' })],
      ['a token that is not a string', () => ({ sessionId: main.sessionId, token: 12345 })],
      ["another session's valid token", () => ({ sessionId: main.sessionId, token: other.token })],
      ["a session's own token under another session id", () => ({ sessionId: other.sessionId, token: main.token })],
      ['a hostile session id', () => ({ sessionId: '../x', token: main.token })],
    ];

    it.each(handshakes)('Socket.IO handshake with %s → connect_error "unauthorized"', async (_name, auth) => {
      expect(await handshakeOutcome(a.url, auth())).toBe('unauthorized');
    });

    it('Socket.IO handshake with the right token connects (control)', async () => {
      const client = await open(a.url, main);
      expect(client.socket?.connected).toBe(true);
    });

    // ---- tokens across instances (shared secret in Redis, zero configuration) ------------------------

    it('a token issued by one instance is accepted by the other, both ways, over HTTP and Socket.IO', async () => {
      const fromA = await ChatClient.createSession(a.url);
      const fromB = await ChatClient.createSession(b.url);
      for (const [issuer, verifier, s] of [
        [a, b, fromA],
        [b, a, fromB],
      ] as const) {
        const label = `issued by ${issuer === a ? 'A' : 'B'}, used on ${verifier === a ? 'A' : 'B'}`;
        const watcher = await open(verifier.url, s); // the handshake on the other instance
        const sent = await sendHttp(verifier.url, s, label);
        expect({ label, status: sent.status }).toEqual({ label, status: 202 });
        expect((await historyOf(verifier.url, s)).messages).toEqual([expect.objectContaining({ content: label, role: 'user' })]);
        // the instance that issued the token relays to its own sockets what the other accepted
        const home = await open(issuer.url, s);
        const ack = await home.emitWithAck('chat.send', { content: `${label}, via socket` });
        expect(ack).toEqual({ messageId: expect.any(String) });
        await watcher.waitFor((e) => e.type === 'chat.user_message' && e.payload.messageId === ack.messageId);
      }
      // another session's token is still 403 on the other instance
      expectError(await call(b.url, 'GET', `/chat/${fromA.sessionId}/history`, { token: fromB.token }), 403, /another session/);
      expect(await handshakeOutcome(b.url, { sessionId: fromA.sessionId, token: fromB.token })).toBe('unauthorized');
    });

    // ---- security headers --------------------------------------------------------------------------

    it('serves / and /docs with helmet headers, and API answers carry them too', async () => {
      for (const path of ['/', '/docs', '/docs-json', '/health']) {
        const res = await fetch(`${a.url}${path}`);
        expect({ path, status: res.status }).toEqual({ path, status: 200 });
        expect(res.headers.get('x-content-type-options')).toBe('nosniff');
        expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN');
        expect(res.headers.get('x-powered-by')).toBeNull();
        const csp = res.headers.get('content-security-policy');
        expect(csp).toContain("default-src 'self'");
        expect(csp).toContain("object-src 'none'");
        // self-hosted instances run over plain http on a LAN: no forced upgrade to https
        expect(csp).not.toContain('upgrade-insecure-requests');
        await res.arrayBuffer();
      }
      expect(await (await fetch(`${a.url}/`)).text()).toContain('socket.io');
      const refused = await call(a.url, 'GET', `/chat/${main.sessionId}/history`);
      expect(refused.status).toBe(401);
      expect(refused.headers.get('x-content-type-options')).toBe('nosniff');
      expect(refused.headers.get('content-security-policy')).toContain("default-src 'self'");
      const accepted = await call(a.url, 'GET', `/chat/${main.sessionId}/history`, { token: main.token });
      expect(accepted.headers.get('x-content-type-options')).toBe('nosniff');
    });
  });

  // ===========================================================================================
  describe('SESSION_SECRET: two instances with the same secret, one with another', () => {
    const SECRET = 'test-shared-secret-0123456789abcdef';
    const OTHER_SECRET = 'a-different-secret-fedcba9876543210';
    let c: AppProcess;
    let d: AppProcess;
    let e: AppProcess;

    beforeAll(async () => {
      await flush(redis);
      const env = { WORKER_ENABLED: 'false' };
      [c, d, e] = await Promise.all([
        startApp({ ...env, SESSION_SECRET: SECRET }),
        startApp({ ...env, SESSION_SECRET: SECRET }),
        startApp({ ...env, SESSION_SECRET: OTHER_SECRET }),
      ]);
    }, 40_000);

    afterAll(async () => {
      await stopApps();
    });

    it('tokens from one instance work on the other, both ways', async () => {
      const fromC = await ChatClient.createSession(c.url);
      const fromD = await ChatClient.createSession(d.url);
      for (const [verifier, s] of [
        [d, fromC],
        [c, fromD],
      ] as const) {
        expect((await sendHttp(verifier.url, s, 'hello')).status).toBe(202);
        expect((await historyOf(verifier.url, s)).messages).toHaveLength(1);
        const client = await open(verifier.url, s);
        expect(client.socket?.connected).toBe(true);
      }
    });

    it('a token issued under a different SESSION_SECRET is rejected (401, handshake unauthorized), both ways', async () => {
      const fromE = await ChatClient.createSession(e.url);
      const fromC = await ChatClient.createSession(c.url);
      const before = await commandsAdded(redis);
      for (const [verifier, s] of [
        [c, fromE],
        [d, fromE],
        [e, fromC],
      ] as const) {
        expectError(await call(verifier.url, 'GET', `/chat/${s.sessionId}/history`, { token: s.token }), 401, /invalid token/);
        expectError(await sendHttp(verifier.url, s, 'should not pass'), 401, /invalid token/);
        expectError(await call(verifier.url, 'DELETE', `/chat/${s.sessionId}`, { token: s.token }), 401, /invalid token/);
        expect(await handshakeOutcome(verifier.url, { sessionId: s.sessionId, token: s.token })).toBe('unauthorized');
      }
      expect(await commandsAdded(redis)).toBe(before);
      // while each instance accepts its own
      expect((await call(e.url, 'GET', `/chat/${fromE.sessionId}/history`, { token: fromE.token })).status).toBe(200);
    });

    it('a token signed with the zero-configuration Redis secret of the earlier instances is rejected', async () => {
      const old = tokenOfRedisSecret;
      expect(old).not.toBeNull();
      expectError(await call(c.url, 'GET', `/chat/${old!.sessionId}/history`, { token: old!.token }), 401, /invalid token/);
      expect(await handshakeOutcome(d.url, { sessionId: old!.sessionId, token: old!.token })).toBe('unauthorized');
    });
  });

  // ===========================================================================================
  describe('AUTH_MODE=none', () => {
    let f: AppProcess;

    beforeAll(async () => {
      await flush(redis);
      ollama.reset();
      f = await startApp({ AUTH_MODE: 'none', DELTA_COALESCE_MS: '0' });
    }, 30_000);

    afterAll(async () => {
      await stopApps();
    });

    it('warns at start-up', () => {
      expect(f.log).toContain('AUTH_MODE=none');
    });

    it('serves every /chat route and the handshake without a token, end to end', async () => {
      const s: Session = { sessionId: 'local-hacking_1', token: '' };
      const watcher = await open(f.url, s); // no token in the handshake
      const sent = await call(f.url, 'POST', '/chat/send', { json: { sessionId: s.sessionId, content: 'no token needed' } });
      expect(sent.status).toBe(202);
      const events = await watcher.waitForEnd(String(sent.body!.messageId));
      expect(events.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: 'You said: no token needed' } });

      const history = await call(f.url, 'GET', `/chat/${s.sessionId}/history`);
      expect(history.status).toBe(200);
      expect((history.body as { messages: unknown[] }).messages).toHaveLength(2);
      // a stray Authorization header is ignored, not an error
      expect((await call(f.url, 'GET', `/chat/${s.sessionId}/history`, { authorization: 'Bearer garbage' })).status).toBe(200);
      expectError(await call(f.url, 'POST', `/chat/${s.sessionId}/messages/no-such-message/cancel`), 404, /no-such-message/);
      expect((await call(f.url, 'POST', `/chat/${s.sessionId}/messages/${String(sent.body!.messageId)}/cancel`)).status).toBe(202);
      expect((await call(f.url, 'DELETE', `/chat/${s.sessionId}`)).status).toBe(204);
      expect((await call(f.url, 'GET', `/chat/${s.sessionId}/history`)).body).toMatchObject({ sessionId: s.sessionId, messages: [] });
      // socket send works too
      const ack = await watcher.emitWithAck('chat.send', { content: 'over the socket' });
      expect(ack).toEqual({ messageId: expect.any(String) });
      expect((await watcher.waitForEnd(String(ack.messageId))).at(-1)).toMatchObject({ type: 'chat.completed' });
    });

    it('still validates session ids', async () => {
      const before = await commandsAdded(redis);
      expectError(await call(f.url, 'POST', '/chat/send', { json: { sessionId: '../x', content: 'hi' } }), 400, /sessionId must be/);
      expectError(await call(f.url, 'GET', '/chat/a%20b/history'), 400, /sessionId must be/);
      expect(await handshakeOutcome(f.url, { sessionId: '{x}' })).toBe('unauthorized');
      expect(await handshakeOutcome(f.url, undefined)).toBe('unauthorized');
      expect(await commandsAdded(redis)).toBe(before);
    });
  });

  // ===========================================================================================
  describe('rate limits: RATE_LIMIT_SESSION_PER_MINUTE=3, RATE_LIMIT_IP_PER_MINUTE=5', () => {
    let g: AppProcess;
    /** One client address for HTTP and Socket.IO alike. */
    let url: string;

    beforeAll(async () => {
      await flush(redis);
      g = await startApp({ WORKER_ENABLED: 'false', RATE_LIMIT_SESSION_PER_MINUTE: '3', RATE_LIMIT_IP_PER_MINUTE: '5' });
      url = g.url.replace('localhost', '127.0.0.1');
    }, 30_000);

    afterAll(async () => {
      await stopApps();
    });

    const expectRetryAfterWithinMinute = (reply: Reply) => {
      const seconds = retryAfterOf(reply);
      expect(seconds).toBeGreaterThanOrEqual(1);
      expect(seconds).toBeLessThanOrEqual(60);
      // the window is the wall-clock minute: the wait ends at its end
      const untilNextMinute = Math.ceil((60_000 - (Date.now() % 60_000)) / 1000);
      expect(Math.abs(seconds - untilNextMinute)).toBeLessThanOrEqual(2);
    };

    it('limits a session, then the address, over HTTP and Socket.IO; idempotent repeats are neither counted nor refused', async () => {
      await awayFromMinuteBoundary();
      const first = await ChatClient.createSession(url);
      const second = await ChatClient.createSession(url);
      const third = await ChatClient.createSession(url);
      // accepted messages: a session's first is its head (in chat:incoming), the next ones wait in its queue
      const queued = () => acceptedCount(redis);

      // session 1: three sends pass; a repeat of the first in between is not counted
      const s1 = await sendHttp(url, first, 'one', { clientMessageId: 'c-1' });
      expect(s1.status).toBe(202);
      const repeat = await sendHttp(url, first, 'one', { clientMessageId: 'c-1' });
      expect(repeat.status).toBe(202);
      expect(repeat.body!.messageId).toBe(s1.body!.messageId);
      expect(await queued()).toBe(1);
      expect((await sendHttp(url, first, 'two')).status).toBe(202);
      expect((await sendHttp(url, first, 'three')).status).toBe(202);
      expect(await queued()).toBe(3);
      // one head, two waiting behind it
      expect(await redis.llen(keyLayout().session(first.sessionId).queue)).toBe(2);

      // the 4th send of the session in this minute is refused
      const historyBefore = await historyOf(url, first);
      const fourth = await sendHttp(url, first, 'four', { clientMessageId: 'c-4' });
      expectError(fourth, 429, /at most 3 messages per minute in a session/);
      expectRetryAfterWithinMinute(fourth);
      expect(await queued()).toBe(3);
      expect(await historyOf(url, first)).toEqual(historyBefore);

      // a repeat of an accepted send is still answered (same messageId), and queues nothing
      const lateRepeat = await sendHttp(url, first, 'one', { clientMessageId: 'c-1' });
      expect(lateRepeat.status).toBe(202);
      expect(lateRepeat.body!.messageId).toBe(s1.body!.messageId);
      expect(await queued()).toBe(3);

      // over the socket, the session limit answers through the ack
      const socket1 = await open(url, first);
      expectAckError(
        await socket1.emitWithAck('chat.send', { content: 'four, by socket' }),
        429,
        /at most 3 messages per minute in a session/,
      );
      expect(await queued()).toBe(3);
      expect(await historyOf(url, first)).toEqual(historyBefore);

      // session 2, same address: two more pass (5 in total from the address), then the address limit
      expect((await sendHttp(url, second, 'b1')).status).toBe(202);
      expect((await sendHttp(url, second, 'b2')).status).toBe(202);
      expect(await queued()).toBe(5);
      const overAddress = await sendHttp(url, second, 'b3');
      expectError(overAddress, 429, /at most 5 messages per minute from one address/);
      expectRetryAfterWithinMinute(overAddress);
      expect(await queued()).toBe(5);
      expect((await historyOf(url, second)).messages.map((m) => m.content)).toEqual(['b1', 'b2']);

      // a third, fresh session from the same address is refused by the address limit, HTTP and socket
      expectError(await sendHttp(url, third, 'c1'), 429, /from one address/);
      const socket3 = await open(url, third);
      expectAckError(await socket3.emitWithAck('chat.send', { content: 'c1, by socket' }), 429, /from one address/);
      expect(await queued()).toBe(5);
      expect((await historyOf(url, third)).messages).toEqual([]);

      // a refused send with a clientMessageId did not keep it: a later repeat is refused again, not answered with a dead id
      const retried = await sendHttp(url, first, 'four', { clientMessageId: 'c-4' });
      expectError(retried, 429, /per minute in a session/);
      expect(await queued()).toBe(5);
    });
  });

  // ===========================================================================================
  // The backlog bound is per partition (ceil(MAX_BACKLOG / PARTITIONS), docs/design.md): with one
  // partition it is MAX_BACKLOG itself, shared by every session.
  describe('backlog: MAX_BACKLOG=2, PARTITIONS=1, without a worker', () => {
    const layout = new KeyLayout(1);
    const partition = layout.partitions[0];
    let h: AppProcess;

    beforeAll(async () => {
      await flush(redis);
      h = await startApp({ WORKER_ENABLED: 'false', MAX_BACKLOG: '2', PARTITIONS: '1' });
    }, 30_000);

    afterAll(async () => {
      await stopApps();
    });

    it('refuses the third send with 503 and Retry-After, over HTTP and Socket.IO, queueing nothing', async () => {
      const s = await ChatClient.createSession(h.url);
      /** The session's head in chat:incoming, the one waiting behind it, and the partition's backlog. */
      const queued = async () => ({
        incoming: await redis.xlen(partition.incoming),
        waiting: await redis.llen(layout.session(s.sessionId).queue),
        backlog: await redis.zcard(partition.backlog),
      });
      const first = await sendHttp(h.url, s, 'first', { clientMessageId: 'b-1' });
      expect(first.status).toBe(202);
      expect((await sendHttp(h.url, s, 'second')).status).toBe(202);
      expect(await queued()).toEqual({ incoming: 1, waiting: 1, backlog: 2 });
      const historyBefore = await historyOf(h.url, s);
      const outgoingBefore = await redis.xlen(partition.outgoing);

      const third = await sendHttp(h.url, s, 'third');
      expectError(third, 503, /busy|backlog|waiting/);
      expect(retryAfterOf(third)).toBeGreaterThanOrEqual(1);

      // the backlog is the partition's, here every session's: another session is refused too
      const otherSession = await ChatClient.createSession(h.url);
      const refused = await sendHttp(h.url, otherSession, 'me too');
      expectError(refused, 503, /busy|backlog|waiting/);
      expect(retryAfterOf(refused)).toBeGreaterThanOrEqual(1);

      const socket = await open(h.url, s);
      expectAckError(await socket.emitWithAck('chat.send', { content: 'third, by socket' }), 503, /busy|backlog|waiting/);

      // a repeat of an accepted send is answered, not refused
      const repeat = await sendHttp(h.url, s, 'first', { clientMessageId: 'b-1' });
      expect(repeat.status).toBe(202);
      expect(repeat.body!.messageId).toBe(first.body!.messageId);

      expect(await queued()).toEqual({ incoming: 1, waiting: 1, backlog: 2 });
      expect(await redis.xlen(partition.outgoing)).toBe(outgoingBefore);
      const otherKeys = layout.session(otherSession.sessionId);
      expect(await redis.exists(otherKeys.hash, otherKeys.order, otherKeys.queue, otherKeys.events)).toBe(0);
      expect(await historyOf(h.url, s)).toEqual(historyBefore);
      expect((await historyOf(h.url, otherSession)).messages).toEqual([]);
    });
  });
});
