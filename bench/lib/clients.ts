/**
 * Real clients of the service: one socket.io-client connection per session (namespace /chat,
 * websocket transport, one connection each) and HTTP sends (POST /chat/send over keep-alive
 * connections). A session has at most one message in flight: messages of one session are answered
 * one at a time by design, so a second send would only wait behind the first and measure that.
 */
import http from 'node:http';
import { io, Socket } from 'socket.io-client';
import { expectedReply, messageContent, nextNonce, ReplyShape } from './fake';
import { sleep } from './stats';

export interface InFlight {
  nonce: string;
  tokens: number;
  sentAt: number;
  acceptedAt?: number;
  httpStatus?: number;
  messageId?: string;
  firstDeltaAt?: number;
  completedAt?: number;
  text: string;
  deltaEvents: number;
  outcome?: 'completed' | 'failed' | 'cancelled' | 'rejected';
}

export interface BenchSession {
  index: number;
  id: string;
  socket: Socket;
  current: InFlight | null;
}

export interface PoolCounters {
  sent: number;
  accepted: number;
  rejected: number;
  completed: number;
  failed: number;
  wrongContent: number;
  deltaEvents: number;
  deltaTokens: number;
  strayEvents: number;
  idMismatch: number;
  /** rejected sends by HTTP status (0 = no HTTP answer), with the first answer of each */
  rejectedByStatus: Record<string, { count: number; example: string }>;
}

const zero = (): PoolCounters => ({
  sent: 0,
  accepted: 0,
  rejected: 0,
  completed: 0,
  failed: 0,
  wrongContent: 0,
  deltaEvents: 0,
  deltaTokens: 0,
  strayEvents: 0,
  idMismatch: 0,
  rejectedByStatus: {},
});

type DeltaPayload = { messageId: string; delta: string };
type CompletedPayload = { messageId: string; content: string };
type EndPayload = { messageId: string };

export class SessionPool {
  readonly sessions: BenchSession[] = [];
  private readonly free: BenchSession[] = [];
  counters = zero();
  /** Called once per message that ended (any outcome, rejections included). */
  onEnd: ((session: BenchSession, message: InFlight) => void) | null = null;
  /** Called with the tokens of each delta as it arrives (for delivery delays); null = off. */
  onTokens: ((tokens: string[], at: number) => void) | null = null;
  private readonly agent: http.Agent;
  private readonly host: string;
  private readonly port: number;

  private constructor(readonly baseUrl: string) {
    const url = new URL(baseUrl);
    this.host = url.hostname;
    this.port = Number(url.port);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
  }

  /** Opens `count` sessions (ids `<prefix>-<i>`), each with its own connected socket. */
  static async open(baseUrl: string, prefix: string, count: number): Promise<SessionPool> {
    const pool = new SessionPool(baseUrl);
    const batch = 50;
    for (let start = 0; start < count; start += batch) {
      const opened = await Promise.all(
        Array.from({ length: Math.min(batch, count - start) }, (_, k) => pool.connect(start + k, `${prefix}-${start + k}`)),
      );
      for (const s of opened) {
        pool.sessions.push(s);
        pool.free.push(s);
      }
    }
    return pool;
  }

  get size(): number {
    return this.sessions.length;
  }

  get freeCount(): number {
    return this.free.length;
  }

  get inFlight(): number {
    return this.sessions.length - this.free.length;
  }

  resetCounters(): PoolCounters {
    const old = this.counters;
    this.counters = zero();
    return old;
  }

  /**
   * Sends on the free session that has waited longest; returns false when every session has a
   * message in flight. Oldest first (not the one just freed): at a low rate the few sessions that
   * finish first would otherwise carry all traffic, and so a few partitions — on a cluster
   * (--cluster) one master took 80 % of a step's commands that way.
   */
  sendOnFree(shape: ReplyShape): boolean {
    const session = this.free.shift();
    if (!session) return false;
    this.send(session, shape);
    return true;
  }

  /** Resolves once no message is in flight, or after `timeoutMs`; returns the messages still open. */
  async drain(timeoutMs: number): Promise<InFlight[]> {
    const deadline = performance.now() + timeoutMs;
    while (this.inFlight > 0 && performance.now() < deadline) await sleep(10);
    return this.sessions.filter((s) => s.current).map((s) => s.current as InFlight);
  }

  close(): void {
    for (const s of this.sessions) s.socket.close();
    this.agent.destroy();
  }

  private send(session: BenchSession, shape: ReplyShape): void {
    const nonce = nextNonce();
    const message: InFlight = { nonce, tokens: shape.tokens, sentAt: performance.now(), text: '', deltaEvents: 0 };
    session.current = message;
    this.counters.sent++;
    const body = JSON.stringify({ sessionId: session.id, content: messageContent(nonce, shape) });
    const req = http.request(
      {
        host: this.host,
        port: this.port,
        method: 'POST',
        path: '/chat/send',
        agent: this.agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => this.answered(session, message, res.statusCode ?? 0, Buffer.concat(chunks).toString()));
      },
    );
    req.on('error', (err) => this.answered(session, message, 0, err.message));
    req.end(body);
  }

  private answered(session: BenchSession, message: InFlight, status: number, body: string): void {
    message.httpStatus = status;
    message.acceptedAt = performance.now();
    if (status === 202) {
      this.counters.accepted++;
      let id: string | undefined;
      try {
        id = (JSON.parse(body) as { messageId?: string }).messageId;
      } catch {
        id = undefined;
      }
      if (message.messageId && id !== message.messageId) this.counters.idMismatch++;
      message.messageId ??= id;
      return;
    }
    this.counters.rejected++;
    const seen = (this.counters.rejectedByStatus[String(status)] ??= { count: 0, example: body.slice(0, 300) });
    seen.count++;
    message.outcome = 'rejected';
    if (session.current === message) this.end(session, message);
  }

  private end(session: BenchSession, message: InFlight): void {
    session.current = null;
    this.free.push(session);
    this.onEnd?.(session, message);
  }

  /** The in-flight message an event belongs to, or null for a stray event. */
  private mine(session: BenchSession, messageId: string): InFlight | null {
    const m = session.current;
    if (!m || m.outcome === 'rejected') {
      this.counters.strayEvents++;
      return null;
    }
    if (m.messageId === undefined) m.messageId = messageId; // the event beat the HTTP answer
    if (m.messageId !== messageId) {
      this.counters.strayEvents++;
      return null;
    }
    return m;
  }

  private connect(index: number, id: string): Promise<BenchSession> {
    const socket = io(`${this.baseUrl}/chat`, { auth: { sessionId: id }, transports: ['websocket'], reconnection: false, forceNew: true });
    const session: BenchSession = { index, id, socket, current: null };
    socket.on('chat.delta', (p: DeltaPayload) => {
      const now = performance.now();
      const m = this.mine(session, p.messageId);
      if (!m) return;
      m.firstDeltaAt ??= now;
      m.deltaEvents++;
      m.text += p.delta;
      this.counters.deltaEvents++;
      // every token starts with a space
      let n = 0;
      for (let i = p.delta.indexOf(' '); i >= 0; i = p.delta.indexOf(' ', i + 1)) n++;
      this.counters.deltaTokens += n;
      if (this.onTokens) this.onTokens(p.delta.slice(1).split(' '), now);
    });
    socket.on('chat.completed', (p: CompletedPayload) => {
      const now = performance.now();
      const m = this.mine(session, p.messageId);
      if (!m) return;
      m.completedAt = now;
      m.outcome = 'completed';
      const expected = expectedReply(m.nonce, m.tokens);
      if (p.content === expected && m.text === expected) this.counters.completed++;
      else this.counters.wrongContent++;
      this.end(session, m);
    });
    const ended = (outcome: 'failed' | 'cancelled') => (p: EndPayload) => {
      const m = this.mine(session, p.messageId);
      if (!m) return;
      m.completedAt = performance.now();
      m.outcome = outcome;
      this.counters.failed++;
      this.end(session, m);
    };
    socket.on('chat.failed', ended('failed'));
    socket.on('chat.cancelled', ended('cancelled'));
    return new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(session));
      socket.once('connect_error', (err) => reject(new Error(`socket of ${id}: ${err.message}`)));
    });
  }
}

/**
 * Offers `rate` sends per second for `seconds` (uniform arrivals on a 1 ms tick; when the timer is
 * late the missed sends go out at once, so the offered count is kept). `sendOne` returns false when
 * it could not send (no free session): those are counted, not retried.
 */
export async function openLoop(
  rate: number,
  seconds: number,
  sendOne: () => boolean,
): Promise<{ offered: number; skipped: number; elapsed: number }> {
  const start = performance.now();
  const end = start + seconds * 1000;
  let offered = 0;
  let skipped = 0;
  for (;;) {
    const now = performance.now();
    const due = Math.min(Math.floor(((now - start) / 1000) * rate), Math.round(rate * seconds));
    while (offered < due) {
      offered++;
      if (!sendOne()) skipped++;
    }
    if (now >= end) break;
    await sleep(1);
  }
  return { offered, skipped, elapsed: (performance.now() - start) / 1000 };
}
