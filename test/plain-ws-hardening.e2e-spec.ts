/**
 * The plain WebSocket (`/ws/:sessionId?token=...`) against hostile clients, end to end: the built
 * API as a child process, `ws` as the client, raw `node:net` sockets for what `ws` will not send.
 *
 * A bad frame, a reset handshake or a flood must cost the offending socket only: that socket is
 * closed with the RFC 6455 code naming the fault, and the process keeps serving everyone else.
 */
import { connect, Socket } from 'node:net';
import { WebSocket } from 'ws';
import { AppProcess } from './support/app-process';
import { eventually } from './support/eventually';
import { freshTestRedis, type TestRedis, testRedisEnv } from './support/test-redis';

const BURST = 5;
const ENV = {
  AI_PROVIDER: 'mock',
  WORKER_ENABLED: 'false',
  MAX_CONNECTIONS_PER_SESSION: '3',
  MAX_CONNECTIONS_PER_ADDRESS: '5',
  SOCKET_EVENT_BURST: String(BURST),
  SOCKET_EVENTS_PER_MINUTE: '60',
};

interface Session {
  sessionId: string;
  token: string;
}

interface Opened {
  ws: WebSocket;
  frames: Record<string, unknown>[];
  /** Resolves with the close code the client saw. */
  closed: Promise<number>;
}

describe('plain WebSocket hardening', () => {
  let redis: TestRedis;
  let app: AppProcess;
  const sockets: WebSocket[] = [];

  beforeAll(async () => {
    redis = await freshTestRedis();
  });

  afterAll(async () => {
    await redis?.quit();
  });

  /** A fresh API per test: connection counts and crashes never leak from one case into the next. */
  beforeEach(async () => {
    app = await AppProcess.start({ env: { ...testRedisEnv(), ...ENV } });
  });

  afterEach(async () => {
    for (const ws of sockets.splice(0)) ws.terminate();
    await app?.stop();
  });

  const newSession = async (): Promise<Session> => {
    const res = await fetch(`${app.url}/sessions`, { method: 'POST' });
    expect(res.status).toBe(201);
    return (await res.json()) as Session;
  };

  const wsUrl = (s: Session) => `${app.url.replace('http', 'ws')}/ws/${s.sessionId}?token=${encodeURIComponent(s.token)}`;

  const open = async (s: Session): Promise<Opened> => {
    const ws = new WebSocket(wsUrl(s));
    sockets.push(ws);
    const frames: Record<string, unknown>[] = [];
    ws.on('message', (data) => frames.push(JSON.parse((data as Buffer).toString('utf8')) as Record<string, unknown>));
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.on('error', () => undefined); // the close code is what is asserted
    await new Promise((resolve, reject) => ws.once('open', resolve).once('unexpected-response', reject));
    return { ws, frames, closed };
  };

  /** The HTTP status of a refused upgrade, or 101 when it was accepted. */
  const upgradeStatus = (s: Session) =>
    new Promise<number>((resolve) => {
      const ws = new WebSocket(wsUrl(s));
      sockets.push(ws);
      ws.once('open', () => resolve(101));
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('error', () => resolve(0));
    });

  /** Alive: still answering HTTP, and still delivering a new event to a socket opened earlier. */
  const expectServing = async (s: Session, witness: Opened) => {
    const live = await fetch(`${app.url}/health/live`).then(
      (res) => res.status,
      () => 'refused',
    );
    const crash = app.log.split('\n').find((line) => /Unhandled|uncaught|^\S*Error: /.test(line)) ?? null;
    expect({ live, crash }).toEqual({ live: 200, crash: null });
    const res = await fetch(`${app.url}/chat/send`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${s.token}` },
      body: JSON.stringify({ sessionId: s.sessionId, content: 'still there?' }),
    });
    expect(res.status).toBeLessThan(300);
    await eventually(
      () => witness.frames.some((f) => f.event === 'chat.user_message' && f.content === 'still there?'),
      (seen) => seen,
    );
  };

  /** A raw TCP connection that has completed the WebSocket handshake for `s`. */
  const rawUpgrade = async (s: Session): Promise<{ socket: Socket; received: () => Buffer }> => {
    const { hostname, port } = new URL(app.url);
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(handshake(s));
    const received = () => Buffer.concat(chunks);
    await eventually(
      () => received().includes('\r\n\r\n'),
      (done) => done,
    );
    expect(received().toString('latin1')).toMatch(/^HTTP\/1\.1 101 /);
    return { socket, received: () => received().subarray(received().indexOf('\r\n\r\n') + 4) };
  };

  const handshake = (s: Session) =>
    `GET /ws/${s.sessionId}?token=${encodeURIComponent(s.token)} HTTP/1.1\r\n` +
    `Host: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;

  describe('bad frames close that socket only, with the code naming the fault', () => {
    it('a text frame over maxPayload (5000 B) → 1009', async () => {
      const s = await newSession();
      const witness = await open(s);
      const bad = await open(s);
      bad.ws.send('x'.repeat(5000));
      expect(await bad.closed).toBe(1009);
      await expectServing(s, witness);
    });

    it('a text frame that is not UTF-8 → 1007', async () => {
      const s = await newSession();
      const witness = await open(s);
      const bad = await open(s);
      bad.ws.send(Buffer.from([0x68, 0x69, 0xff, 0xfe, 0xc3]), { binary: false });
      expect(await bad.closed).toBe(1007);
      await expectServing(s, witness);
    });

    it('an unmasked client frame → 1002', async () => {
      const s = await newSession();
      const witness = await open(s);
      const { socket, received } = await rawUpgrade(s);
      socket.write(Buffer.from([0x81, 0x02, 0x68, 0x69])); // FIN + text, MASK bit clear, "hi"
      const code = await eventually(
        () => closeCodeIn(received()),
        (c) => c !== null,
      );
      expect(code).toBe(1002);
      socket.destroy();
      await expectServing(s, witness);
    });

    it('a TCP reset in the middle of the handshake (valid token, refused path, garbage) harms nothing', async () => {
      const s = await newSession();
      const witness = await open(s);
      const { hostname, port } = new URL(app.url);
      const requests = [handshake(s), handshake({ sessionId: 'a*b', token: 'x' }), handshake({ ...s, token: 'forged' })];
      for (let round = 0; round < 10; round++) {
        await Promise.all(
          requests.map(
            (request) =>
              new Promise<void>((resolve) => {
                const socket = connect(Number(port), hostname);
                socket.on('error', () => undefined);
                socket.once('close', () => resolve());
                socket.once('connect', () => {
                  socket.write(request);
                  // RST as soon as the request is out, while the server is verifying the token
                  setImmediate(() => socket.resetAndDestroy());
                });
              }),
          ),
        );
      }
      await new Promise((r) => setTimeout(r, 300));
      await expectServing(s, witness);
    });
  });

  describe('connection caps', () => {
    it('the 4th socket of a session and the 6th of an address are refused with 429; closing one frees a place', async () => {
      const a = await newSession();
      const b = await newSession();
      const fromA = [await open(a), await open(a), await open(a)];
      expect(await upgradeStatus(a)).toBe(429); // session A is full (3)
      await open(b);
      await open(b);
      expect(await upgradeStatus(b)).toBe(429); // B has 2 of 3, but the address is full (5)

      fromA[0].ws.close();
      await fromA[0].closed;
      const status = await eventually(
        () => upgradeStatus(b),
        (code) => code === 101,
      );
      expect(status).toBe(101);
      expect(await upgradeStatus(a)).toBe(429); // the address is full again
      await expectServing(a, fromA[1]);
    });
  });

  describe('event rate', () => {
    it('a flood of 200 messages gets at most burst + a few error frames, then the socket is closed with 1008', async () => {
      const s = await newSession();
      const witness = await open(s);
      const flood = await open(s);
      for (let i = 0; i < 200; i++) flood.ws.send(`spam ${i}`);
      const code = await Promise.race([flood.closed, new Promise((r) => setTimeout(() => r('still open after 10 s'), 10_000))]);
      expect(code).toBe(1008);
      const errors = flood.frames.filter((f) => f.event === 'error');
      expect(errors.length).toBeGreaterThanOrEqual(1);
      expect(errors.length).toBeLessThanOrEqual(BURST + 2);
      await expectServing(s, witness);
      // the place the flooder held is given back
      await eventually(
        () => upgradeStatus(s),
        (code) => code === 101,
      );
    });

    it('a message within the limit still gets the error frame explaining the endpoint only sends', async () => {
      const s = await newSession();
      const one = await open(s);
      one.ws.send('hello?');
      await eventually(
        () => one.frames.some((f) => f.event === 'error' && /only sends/.test(String(f.message))),
        (seen) => seen,
      );
      expect(one.ws.readyState).toBe(WebSocket.OPEN);
    });
  });
});

/** The status code of the first close frame among the server's (unmasked) frames, if one arrived. */
function closeCodeIn(bytes: Buffer): number | null {
  let at = 0;
  while (at + 2 <= bytes.length) {
    const opcode = bytes[at] & 0x0f;
    let length = bytes[at + 1] & 0x7f;
    let header = 2;
    if (length === 126) {
      if (at + 4 > bytes.length) return null;
      length = bytes.readUInt16BE(at + 2);
      header = 4;
    } else if (length === 127) {
      if (at + 10 > bytes.length) return null;
      length = Number(bytes.readBigUInt64BE(at + 2));
      header = 10;
    }
    if (at + header + length > bytes.length) return null;
    if (opcode === 0x8) return length >= 2 ? bytes.readUInt16BE(at + header) : 1005;
    at += header + length;
  }
  return null;
}
