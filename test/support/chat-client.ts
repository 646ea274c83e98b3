import { io, Socket } from 'socket.io-client';

export interface ReceivedEvent {
  type: string;
  payload: Record<string, unknown> & { messageId: string; sessionId: string; eventId: string };
}

export interface Session {
  sessionId: string;
  token: string;
}

/** A real HTTP + Socket.IO client of the service, recording every event it receives. */
export class ChatClient {
  readonly events: ReceivedEvent[] = [];
  socket: Socket | null = null;

  constructor(
    readonly baseUrl: string,
    readonly session: Session,
  ) {}

  static async createSession(baseUrl: string): Promise<Session> {
    const res = await fetch(`${baseUrl}/sessions`, { method: 'POST' });
    if (res.status !== 201) throw new Error(`POST /sessions: ${res.status} ${await res.text()}`);
    return (await res.json()) as Session;
  }

  static async open(baseUrl: string, session?: Session): Promise<ChatClient> {
    const client = new ChatClient(baseUrl, session ?? (await ChatClient.createSession(baseUrl)));
    await client.connect();
    return client;
  }

  connect(auth: Record<string, unknown> = { sessionId: this.session.sessionId, token: this.session.token }): Promise<void> {
    const socket = io(`${this.baseUrl}/chat`, { auth, transports: ['websocket'], reconnection: false, forceNew: true });
    this.socket = socket;
    socket.onAny((type: string, payload: ReceivedEvent['payload']) => this.events.push({ type, payload }));
    return new Promise((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', (err) => reject(err));
    });
  }

  close(): void {
    this.socket?.close();
    this.socket = null;
  }

  async send(content: string, extra: Record<string, unknown> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
    return this.http('POST', '/chat/send', { sessionId: this.session.sessionId, content, ...extra });
  }

  async history(): Promise<{ status: number; body: { messages: Record<string, unknown>[] } & Record<string, unknown> }> {
    const res = await this.http('GET', `/chat/${this.session.sessionId}/history`);
    return res as { status: number; body: { messages: Record<string, unknown>[] } };
  }

  async http(method: string, path: string, body?: unknown, token: string | null = this.session.token) {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${this.baseUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
  }

  emitWithAck(event: string, payload: unknown): Promise<Record<string, unknown>> {
    if (!this.socket) throw new Error('not connected');
    return this.socket.timeout(5000).emitWithAck(event, payload) as Promise<Record<string, unknown>>;
  }

  eventsOf(messageId: string): ReceivedEvent[] {
    return this.events.filter((e) => e.payload.messageId === messageId);
  }

  /** Waits for the final event (completed / failed / cancelled) of a message and returns all its events. */
  async waitForEnd(messageId: string, timeoutMs = 15_000): Promise<ReceivedEvent[]> {
    await this.waitFor((e) => e.payload.messageId === messageId && /^chat\.(completed|failed|cancelled)$/.test(e.type), timeoutMs);
    return this.eventsOf(messageId);
  }

  waitFor(predicate: (e: ReceivedEvent) => boolean, timeoutMs = 15_000): Promise<ReceivedEvent> {
    return new Promise((resolve, reject) => {
      const found = this.events.find(predicate);
      if (found) return resolve(found);
      const started = Date.now();
      const timer = setInterval(() => {
        const hit = this.events.find(predicate);
        if (hit) {
          clearInterval(timer);
          resolve(hit);
        } else if (Date.now() - started > timeoutMs) {
          clearInterval(timer);
          reject(new Error(`timed out; events so far:\n${this.events.map((e) => `${e.type} ${JSON.stringify(e.payload)}`).join('\n')}`));
        }
      }, 10);
    });
  }
}

/** The answer text of a message's last attempt, rebuilt from its deltas. */
export function deltasOfLastAttempt(events: ReceivedEvent[], type = 'chat.delta'): string {
  const lastStart = events.map((e) => e.type).lastIndexOf('chat.started');
  return events
    .slice(lastStart + 1)
    .filter((e) => e.type === type)
    .map((e) => String(e.payload.delta))
    .join('');
}
