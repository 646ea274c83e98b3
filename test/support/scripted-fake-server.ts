/**
 * What FakeOllama and FakeOpenAi have in common: an HTTP server whose chat answers follow scripts
 * queued by the test, which records every chat request and lets tests wait for requests and client
 * aborts, and which can close every connection at once (hanging and streaming ones included).
 *
 * The wire format (routes, bodies, error shapes) is each fake's own; this file knows nothing of it.
 * Only Node's `http` module is used, for the same reason as in the fakes: no framework sits between
 * the tests and the bytes on the wire.
 */
import { EventEmitter } from 'node:events';
import http, { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const DEFAULT_WAIT_TIMEOUT_MS = 5_000;

/** One HTTP request/response pair in flight. */
export interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  /** The request's path, without the query string. */
  path: string;
  /** Aborted as soon as the response closes for any reason, so delays and loops stop early. */
  signal: AbortSignal;
  /** Set when the server itself closes the connection (cut fault, stop()): not a client abort. */
  closedByServer: boolean;
}

/** A recorded chat request; the base sets the two flags as the response ends. */
export interface RecordedRequest<Body> {
  body: Body;
  /** Date.now() when the body had been read. */
  receivedAt: number;
  /** The client closed the connection before the server finished the response. */
  aborted: boolean;
  /** The server wrote the complete response (any status). False for hangs, cuts and aborts. */
  finished: boolean;
}

/** A script, or a function of the request body that picks one. */
export type ScriptSource<Script, Body> = Script | ((request: Body) => Script);

/**
 * The script fields both fakes read the same way: which tokens to stream, how fast, and when to
 * fail. Each fake's ChatScript extends it and says what thinking and the faults look like on its wire.
 */
export interface StreamScript {
  /** Answer tokens; replaces the default echo (`You said: <last user message>`). */
  content?: string[];
  /** Thinking tokens, streamed before content. */
  thinking?: string[];
  /** Wait before the first chunk. Headers of a streamed answer are sent immediately. Defaults to tokenDelayMs. */
  firstTokenDelayMs?: number;
  /** Wait between chunks. Defaults to the server's defaultTokenDelayMs. */
  tokenDelayMs?: number;
  /** After N chunks close the connection before the stream's end (a stream cut). */
  cutAfterChunks?: number;
  /** After N chunks send the wire's mid-stream error. */
  errorAfterChunks?: number;
}

export interface TextChunk {
  kind: 'thinking' | 'content';
  text: string;
}

export interface Fault {
  kind: 'cut' | 'error';
  afterChunks: number;
}

/** A StreamScript made concrete for one request. */
export interface StreamPlan {
  chunks: TextChunk[];
  firstTokenDelayMs: number;
  tokenDelayMs: number;
  /** The fault that fires first, if it fires before the stream completes at all. */
  fault?: Fault;
}

/** Thinking streams before content; what the script leaves out comes from `fallback` (the fake's default echo). */
export function planStream(
  script: StreamScript,
  fallback: { thinking: string[]; content: string[] },
  defaultTokenDelayMs: number,
): StreamPlan {
  const chunks: TextChunk[] = [
    ...(script.thinking ?? fallback.thinking).map((text): TextChunk => ({ kind: 'thinking', text })),
    ...(script.content ?? fallback.content).map((text): TextChunk => ({ kind: 'content', text })),
  ];
  const tokenDelayMs = script.tokenDelayMs ?? defaultTokenDelayMs;
  return {
    chunks,
    tokenDelayMs,
    firstTokenDelayMs: script.firstTokenDelayMs ?? tokenDelayMs,
    fault: firstFault(script, chunks.length),
  };
}

/** A fault set beyond the last chunk never fires (the stream completes first); a cut wins ties. */
function firstFault(script: StreamScript, chunkCount: number): Fault | undefined {
  const candidates: Fault[] = [];
  if (script.cutAfterChunks !== undefined) candidates.push({ kind: 'cut', afterChunks: script.cutAfterChunks });
  if (script.errorAfterChunks !== undefined) candidates.push({ kind: 'error', afterChunks: script.errorAfterChunks });
  return candidates.filter((fault) => fault.afterChunks <= chunkCount).sort((a, b) => a.afterChunks - b.afterChunks)[0];
}

/** The text of one kind of chunk, for the answers that carry the whole message in one object. */
export function joinChunks(chunks: TextChunk[], kind: TextChunk['kind']): string {
  return chunks
    .filter((c) => c.kind === kind)
    .map((c) => c.text)
    .join('');
}

/** Stand-in for the prompt token count: whitespace-separated words of all messages. */
export function countWords(messages: { content: string }[]): number {
  return messages.reduce((total, m) => total + (m.content.match(/\S+/g)?.length ?? 0), 0);
}

/**
 * Wait `ms`, giving up early when the exchange closes.
 * Resolves to whether the exchange is still open and the caller should carry on.
 */
export async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (ms > 0 && !signal.aborted) {
    try {
      await sleep(ms, undefined, { signal });
    } catch {
      return false;
    }
  }
  return !signal.aborted;
}

export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Close the connection without finishing the response. `end()` first flushes what was already
 * written, so the client reliably receives exactly the chunks sent before the cut.
 */
export function cutConnection(exchange: Exchange): void {
  exchange.closedByServer = true;
  const socket = exchange.res.socket;
  if (socket) socket.end(() => socket.destroy());
  else exchange.res.destroy();
}

/** A URL host for clients: wildcard listen addresses are reached through loopback. */
function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * The server, the script queue, the recorded requests and the waits on them. A fake routes each
 * exchange itself (`route`) and says how it reports a bug of its own (`sendServerError`).
 */
export abstract class ScriptedFakeServer<Script extends object, Request extends RecordedRequest<unknown>> {
  /** Models the server has; tests may add or delete entries at any time. */
  readonly models: Set<string>;
  /** Every well-formed chat request, in arrival order. */
  readonly requests: Request[] = [];

  private readonly queue: Script[] = [];
  private defaultScript?: ScriptSource<Script, Request['body']>;
  /** Emits 'change' whenever a recorded request changes; the waitFor* helpers listen to it. */
  private readonly changes = new EventEmitter();
  private readonly sockets = new Set<Socket>();
  private readonly inFlight = new Set<Exchange>();
  /** Keeps this name: the bench (bench/lib/fake.ts) reaches it to watch every response written. */
  private server?: http.Server;
  private origin?: string;
  private stopping?: Promise<void>;

  /** `name` is the fake's class name, for its error messages. */
  protected constructor(
    private readonly name: string,
    models: Iterable<string>,
  ) {
    this.models = new Set(models);
    this.changes.setMaxListeners(0); // any number of concurrent waiters is fine
  }

  /** The origin, e.g. http://127.0.0.1:54321. Throws when the server is not started. */
  get url(): string {
    if (this.origin === undefined) throw new Error(`${this.name} is not started`);
    return this.origin;
  }

  /** Listen (port 0 = any free port) and resolve the origin. */
  async start(port = 0, host = '127.0.0.1'): Promise<string> {
    if (this.server) throw new Error(`${this.name} is already started`);
    const server = http.createServer((req, res) => this.onRequest(req, res));
    server.on('connection', (socket) => this.track(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.origin = `http://${urlHost(host)}:${(server.address() as AddressInfo).port}`;
    return this.origin;
  }

  /** Close every connection (hanging and streaming ones included) and the listener. Idempotent. */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    const server = this.server;
    if (!server) return Promise.resolve();
    this.stopping = this.shutDown(server).finally(() => {
      this.stopping = undefined;
    });
    return this.stopping;
  }

  /** Queue scripts; each chat request consumes the oldest one. */
  enqueue(...scripts: Script[]): void {
    this.queue.push(...scripts);
  }

  /** The script (or a function of the request) used when the queue is empty. Queued scripts replace it, not merge. */
  setDefault(script: ScriptSource<Script, Request['body']>): void {
    this.defaultScript = script;
  }

  /** Resolves with all recorded requests once at least `n` chat requests arrived. */
  waitForRequests(n: number, timeoutMs = DEFAULT_WAIT_TIMEOUT_MS): Promise<Request[]> {
    return this.waitUntil(() => (this.requests.length >= n ? [...this.requests] : undefined), timeoutMs, `${n} chat request(s)`);
  }

  /** Resolves once chat request #index (0-based) saw its client disconnect before the response finished. */
  async waitForAbort(index: number, timeoutMs = DEFAULT_WAIT_TIMEOUT_MS): Promise<void> {
    await this.waitUntil(() => (this.requests[index]?.aborted ? true : undefined), timeoutMs, `the client to abort chat request #${index}`);
  }

  /** Forget queued scripts, the default script and recorded requests; the models and the options are kept. */
  reset(): void {
    this.queue.length = 0;
    this.defaultScript = undefined;
    this.requests.length = 0;
  }

  /** Answer one exchange; a throw or rejection becomes a 500 (or a destroyed response). */
  protected abstract route(exchange: Exchange): Promise<void> | void;

  /** Answer 500 with the fake's own error body. */
  protected abstract sendServerError(res: ServerResponse, message: string): void;

  /**
   * The next queued script, else the default one. Undefined when neither is set: the fake then
   * answers with every field of its script at the default.
   */
  protected nextScript(request: Request['body']): Script | undefined {
    const queued = this.queue.shift();
    if (queued) return queued;
    return typeof this.defaultScript === 'function' ? this.defaultScript(request) : this.defaultScript;
  }

  /** Record a well-formed chat request, then follow its response to flag it finished or aborted. */
  protected record(exchange: Exchange, record: Request): void {
    this.requests.push(record);
    const { res } = exchange;
    res.once('finish', () => {
      record.finished = true;
      this.notify();
    });
    res.once('close', () => {
      if (res.writableFinished || exchange.closedByServer) return;
      record.aborted = true;
      this.notify();
    });
    this.notify();
  }

  // --- connection plumbing ---------------------------------------------------------------------

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private async shutDown(server: http.Server): Promise<void> {
    for (const exchange of this.inFlight) exchange.closedByServer = true;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
    this.server = undefined;
    this.origin = undefined;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const controller = new AbortController();
    const path = new URL(req.url ?? '/', 'http://fake-server').pathname;
    const exchange: Exchange = { req, res, path, signal: controller.signal, closedByServer: false };
    this.inFlight.add(exchange);
    res.on('close', () => {
      this.inFlight.delete(exchange);
      controller.abort();
    });
    // Write errors after a disconnect are expected here; the 'close' handlers account for them.
    res.on('error', () => undefined);
    Promise.resolve()
      .then(() => this.route(exchange))
      .catch((error: unknown) => this.failExchange(exchange, error));
  }

  /** A bug in the fake (or a body read failing) must not crash the test process. */
  private failExchange(exchange: Exchange, error: unknown): void {
    if (exchange.res.headersSent) exchange.res.destroy();
    else this.sendServerError(exchange.res, error instanceof Error ? error.message : String(error));
  }

  private notify(): void {
    this.changes.emit('change');
  }

  private waitUntil<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const attempt = () => {
        const result = check();
        if (result === undefined) return;
        cleanUp();
        resolve(result);
      };
      const timer = setTimeout(() => {
        cleanUp();
        const seen = `${this.requests.length} chat request(s) recorded`;
        reject(new Error(`${this.name}: timed out after ${timeoutMs} ms waiting for ${what} (${seen})`));
      }, timeoutMs);
      const cleanUp = () => {
        clearTimeout(timer);
        this.changes.off('change', attempt);
      };
      this.changes.on('change', attempt);
      attempt();
    });
  }
}
