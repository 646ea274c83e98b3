/**
 * A fake OpenAI-compatible server (what vLLM, llama.cpp's llama-server and LM Studio serve) that
 * speaks the real wire format, so the official `openai` client can be pointed at it unchanged:
 * `POST /v1/chat/completions` streamed as server-sent events (`data: {chunk}`, then `data: [DONE]`),
 * errors as OpenAI's JSON error bodies, and `GET /v1/models`.
 *
 * The scripted faults mirror FakeOllama's (slow first token, a cut stream, an error mid-stream,
 * hangs, HTTP errors) plus what OpenAI-compatible servers add: Retry-After on 429/503 and API keys.
 *
 * Only Node's `http` module is used on purpose: no framework sits between the tests and the bytes
 * on the wire, so what the client sees is exactly what is written here.
 */
import { EventEmitter } from 'node:events';
import http, { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { tokenize } from './fake-ollama';

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/** Which delta field carries reasoning: vLLM < 0.10 and llama.cpp say `reasoning_content`, newer vLLM `reasoning`. */
export type ReasoningField = 'reasoning_content' | 'reasoning' | 'both';

/** How the fake answers one chat completion request. Every field is optional. */
export interface ChatScript {
  /** Answer tokens; replaces the default echo (`You said: <last user message>`). */
  content?: string[];
  /** Reasoning tokens, streamed before content. Streamed even when the request has no reasoning_effort. */
  thinking?: string[];
  /** Default 'reasoning_content'; 'both' sends the same text under both names (a server in transition). */
  reasoningField?: ReasoningField;
  /** Wait before the first chunk. Headers of a streamed answer are sent immediately. Defaults to tokenDelayMs. */
  firstTokenDelayMs?: number;
  /** Wait between chunks. Defaults to the server's defaultTokenDelayMs. */
  tokenDelayMs?: number;
  /** After N text chunks close the connection without a finish, usage or [DONE] (a stream cut). */
  cutAfterChunks?: number;
  /** After N text chunks send `data: {"error": {...}}` then `data: [DONE]` (vLLM's mid-stream error). */
  errorAfterChunks?: number;
  /** Message for `errorAfterChunks` and `status`. */
  errorMessage?: string;
  /** Answer immediately with this HTTP status and an OpenAI error body. */
  status?: number;
  /** `error.type` / `error.code` of that body; defaults follow the status like OpenAI's. */
  errorType?: string;
  errorCode?: string | number | null;
  /** `Retry-After` header sent with `status`. */
  retryAfter?: string;
  /** Read the request, send the headers of the stream and then nothing, until the client disconnects or stop(). */
  hang?: boolean;
  /** Read the request and send nothing at all, not even headers (a request queued behind others). */
  hangBeforeHeaders?: boolean;
  /** Send the choice's finish_reason chunk (default true); false is a server that just stops. */
  finish?: boolean;
  /** Send no usage chunk even when `stream_options.include_usage` asks for it (an older server). */
  ignoreIncludeUsage?: boolean;
  /** Override the usage numbers of the final chunk. */
  promptTokens?: number;
  completionTokens?: number;
}

export interface ChatMessage {
  role: string;
  content: string;
}

/** A /v1/chat/completions request body as recorded: the fields tests look at, and the rest as sent. */
export interface ChatRequestBody {
  model: string;
  messages: ChatMessage[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  reasoning_effort?: string;
  [field: string]: unknown;
}

export interface RecordedChatRequest {
  body: ChatRequestBody;
  /** The Authorization header as sent, or null. */
  authorization: string | null;
  headers: IncomingHttpHeaders;
  /** Date.now() when the body had been read. */
  receivedAt: number;
  /** The client closed the connection before the server finished the response. */
  aborted: boolean;
  /** The server wrote the complete response (any status). False for hangs, cuts and aborts. */
  finished: boolean;
}

export type ChatScriptSource = ChatScript | ((request: ChatRequestBody) => ChatScript);

export interface FakeOpenAiOptions {
  /** Models the server serves. Default: ['openai/gpt-oss-20b'] (vLLM's name for it). */
  models?: string[];
  /** Delay between streamed chunks when a script does not set one. Default: 0. */
  defaultTokenDelayMs?: number;
  /** When set, every /v1 request must carry `Authorization: Bearer <apiKey>` (vLLM's --api-key). */
  apiKey?: string;
}

export const DEFAULT_MODEL = 'openai/gpt-oss-20b';
const DEFAULT_ERROR_MESSAGE = 'The engine crashed while generating (EngineDeadError).';
const DEFAULT_WAIT_TIMEOUT_MS = 5_000;
/** Fixed so that listings are deterministic. */
const CREATED = 1_759_320_000;

/** What OpenAI sends as `type` and `code` for a status when a script names none. */
const ERROR_DEFAULTS: Record<number, { type: string; code: string | null }> = {
  400: { type: 'invalid_request_error', code: null },
  401: { type: 'invalid_request_error', code: 'invalid_api_key' },
  403: { type: 'invalid_request_error', code: 'unsupported_country_region_territory' },
  404: { type: 'invalid_request_error', code: 'model_not_found' },
  429: { type: 'requests', code: 'rate_limit_exceeded' },
};

// ---------------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------------

/** The reply used when no script overrides it: an echo of the last user message. */
export function defaultReply(request: ChatRequestBody): { thinking: string[]; content: string[] } {
  const lastUserMessage = [...request.messages].reverse().find((m) => m.role === 'user')?.content ?? '';
  return {
    thinking: request.reasoning_effort ? tokenize(`Thinking about: ${lastUserMessage}`) : [],
    content: tokenize(`You said: ${lastUserMessage}`),
  };
}

interface TextChunk {
  kind: 'thinking' | 'content';
  text: string;
}

interface ReplyPlan {
  chunks: TextChunk[];
  reasoningField: ReasoningField;
  firstTokenDelayMs: number;
  tokenDelayMs: number;
  fault?: { kind: 'cut' | 'error'; afterChunks: number };
  finish: boolean;
  promptTokens: number;
  completionTokens: number;
}

function planReply(script: ChatScript, request: ChatRequestBody, defaultTokenDelayMs: number): ReplyPlan {
  const fallback = defaultReply(request);
  const chunks: TextChunk[] = [
    ...(script.thinking ?? fallback.thinking).map((text): TextChunk => ({ kind: 'thinking', text })),
    ...(script.content ?? fallback.content).map((text): TextChunk => ({ kind: 'content', text })),
  ];
  const tokenDelayMs = script.tokenDelayMs ?? defaultTokenDelayMs;
  // A fault beyond the last chunk never fires; a cut wins ties (as in FakeOllama).
  const faults = [
    ...(script.cutAfterChunks !== undefined ? [{ kind: 'cut' as const, afterChunks: script.cutAfterChunks }] : []),
    ...(script.errorAfterChunks !== undefined ? [{ kind: 'error' as const, afterChunks: script.errorAfterChunks }] : []),
  ]
    .filter((fault) => fault.afterChunks <= chunks.length)
    .sort((a, b) => a.afterChunks - b.afterChunks);
  return {
    chunks,
    reasoningField: script.reasoningField ?? 'reasoning_content',
    tokenDelayMs,
    firstTokenDelayMs: script.firstTokenDelayMs ?? tokenDelayMs,
    fault: faults[0],
    finish: script.finish ?? true,
    promptTokens: script.promptTokens ?? request.messages.reduce((n, m) => n + (m.content.match(/\S+/g)?.length ?? 0), 0),
    completionTokens: script.completionTokens ?? chunks.length,
  };
}

function errorBody(status: number, message: string, script: ChatScript = {}) {
  const defaults = ERROR_DEFAULTS[status] ?? { type: status >= 500 ? 'server_error' : 'invalid_request_error', code: null };
  return {
    error: {
      message,
      type: script.errorType ?? defaults.type,
      param: null,
      code: script.errorCode !== undefined ? script.errorCode : defaults.code,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------

interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  /** Aborted as soon as the response closes for any reason, so delays and loops stop early. */
  signal: AbortSignal;
  /** Set when the server itself closes the connection (cut fault, stop()): not a client abort. */
  closedByServer: boolean;
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function writeEvent(res: ServerResponse, data: unknown): void {
  if (!res.destroyed) res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
}

/** Waits `ms`, giving up early when the exchange closes; resolves to whether to carry on. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (ms > 0 && !signal.aborted) {
    try {
      await sleep(ms, undefined, { signal });
    } catch {
      return false;
    }
  }
  return !signal.aborted;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The checks vLLM's request model makes that matter here; the message of the first that fails. */
function validate(body: unknown): ChatRequestBody | string {
  if (!isRecord(body)) return 'The request body must be a JSON object.';
  if (typeof body.model !== 'string' || body.model === '') return "'model' is a required property";
  if (!Array.isArray(body.messages)) return "'messages' is a required property";
  for (const m of body.messages as unknown[]) {
    if (!isRecord(m) || typeof m.role !== 'string' || typeof m.content !== 'string')
      return "Invalid 'messages': each needs a role and string content";
  }
  return body as ChatRequestBody;
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

export class FakeOpenAi {
  /** Models the server serves; tests may add or delete entries at any time. */
  readonly models: Set<string>;
  /** Every well-formed chat completion request, in arrival order. */
  readonly requests: RecordedChatRequest[] = [];
  /** The key required of every request; null: none (a local server started without --api-key). */
  apiKey: string | null;

  private readonly defaultTokenDelayMs: number;
  private readonly queue: ChatScript[] = [];
  private defaultScript: ChatScriptSource = {};
  private readonly changes = new EventEmitter();
  private readonly sockets = new Set<Socket>();
  private readonly inFlight = new Set<Exchange>();
  private server?: http.Server;
  private origin?: string;
  private stopping?: Promise<void>;
  private nextId = 1;

  constructor(options: FakeOpenAiOptions = {}) {
    this.models = new Set(options.models ?? [DEFAULT_MODEL]);
    this.defaultTokenDelayMs = options.defaultTokenDelayMs ?? 0;
    this.apiKey = options.apiKey ?? null;
    this.changes.setMaxListeners(0);
  }

  /** The origin, e.g. http://127.0.0.1:54321. Throws when the server is not started. */
  get url(): string {
    if (this.origin === undefined) throw new Error('FakeOpenAi is not started');
    return this.origin;
  }

  /** What clients take as their base URL: the origin plus /v1. */
  get baseUrl(): string {
    return `${this.url}/v1`;
  }

  /** Listen (port 0 = any free port) and resolve the base URL (…/v1). */
  async start(port = 0, host = '127.0.0.1'): Promise<string> {
    if (this.server) throw new Error('FakeOpenAi is already started');
    const server = http.createServer((req, res) => this.onRequest(req, res));
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.origin = `http://${host.includes(':') ? `[${host}]` : host}:${(server.address() as AddressInfo).port}`;
    return this.baseUrl;
  }

  /** Close every connection (hanging and streaming ones included) and the listener. Idempotent. */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    const server = this.server;
    if (!server) return Promise.resolve();
    for (const exchange of this.inFlight) exchange.closedByServer = true;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    this.stopping = closed.finally(() => {
      this.server = undefined;
      this.origin = undefined;
      this.stopping = undefined;
    });
    return this.stopping;
  }

  /** Queue scripts; each chat completion request consumes the oldest one. */
  enqueue(...scripts: ChatScript[]): void {
    this.queue.push(...scripts);
  }

  /** The script (or a function of the request) used when the queue is empty. */
  setDefault(script: ChatScriptSource): void {
    this.defaultScript = script;
  }

  /** Resolves with all recorded requests once at least `n` chat requests arrived. */
  waitForRequests(n: number, timeoutMs = DEFAULT_WAIT_TIMEOUT_MS): Promise<RecordedChatRequest[]> {
    return this.waitUntil(() => (this.requests.length >= n ? [...this.requests] : undefined), timeoutMs, `${n} chat request(s)`);
  }

  /** Resolves once chat request #index (0-based) saw its client disconnect before the response finished. */
  async waitForAbort(index: number, timeoutMs = DEFAULT_WAIT_TIMEOUT_MS): Promise<void> {
    await this.waitUntil(() => (this.requests[index]?.aborted ? true : undefined), timeoutMs, `the client to abort chat request #${index}`);
  }

  /** Forget queued scripts, the default script and recorded requests; models and the key are kept. */
  reset(): void {
    this.queue.length = 0;
    this.defaultScript = {};
    this.requests.length = 0;
  }

  // --- plumbing --------------------------------------------------------------------------------

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const controller = new AbortController();
    const exchange: Exchange = { req, res, signal: controller.signal, closedByServer: false };
    this.inFlight.add(exchange);
    res.on('close', () => {
      this.inFlight.delete(exchange);
      controller.abort();
    });
    res.on('error', () => undefined); // write errors after a disconnect are expected
    Promise.resolve()
      .then(() => this.route(exchange))
      .catch((error: unknown) => {
        // A bug in the fake must not crash the test process.
        if (res.headersSent) res.destroy();
        else sendJson(res, 500, errorBody(500, error instanceof Error ? error.message : String(error)));
      });
  }

  private async route(exchange: Exchange): Promise<void> {
    const { req, res } = exchange;
    const path = new URL(req.url ?? '/', 'http://fake-openai').pathname;
    const known = path === '/v1/models' || path === '/v1/chat/completions';
    // vLLM (FastAPI) answers unknown routes and methods like this.
    if (!known) return sendJson(res, 404, { detail: 'Not Found' });
    if (this.apiKey !== null && req.headers.authorization !== `Bearer ${this.apiKey}`) {
      // Echoes the key it got, in full (OpenAI masks part of it): tests prove it never reaches a client.
      const sent = req.headers.authorization?.replace(/^Bearer\s+/i, '') ?? '';
      const message = sent ? `Incorrect API key provided: ${sent}.` : 'You did not provide an API key.';
      return sendJson(res, 401, errorBody(401, message));
    }
    if (path === '/v1/models') {
      if (req.method !== 'GET') return sendJson(res, 405, { detail: 'Method Not Allowed' });
      const data = [...this.models].map((id) => ({ id, object: 'model', created: CREATED, owned_by: 'vllm' }));
      return sendJson(res, 200, { object: 'list', data });
    }
    if (req.method !== 'POST') return sendJson(res, 405, { detail: 'Method Not Allowed' });
    return this.handleChat(exchange);
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
        reject(
          new Error(`FakeOpenAi: timed out after ${timeoutMs} ms waiting for ${what} (${this.requests.length} chat request(s) recorded)`),
        );
      }, timeoutMs);
      const cleanUp = () => {
        clearTimeout(timer);
        this.changes.off('change', attempt);
      };
      this.changes.on('change', attempt);
      attempt();
    });
  }

  // --- /v1/chat/completions --------------------------------------------------------------------

  private async handleChat(exchange: Exchange): Promise<void> {
    const { res } = exchange;
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readBody(exchange.req));
    } catch (error) {
      return sendJson(res, 400, errorBody(400, `Invalid JSON: ${error instanceof Error ? error.message : String(error)}`));
    }
    const request = validate(parsed);
    if (typeof request === 'string') return sendJson(res, 400, errorBody(400, request));
    this.record(exchange, request);

    if (![...this.models].includes(request.model)) {
      return sendJson(res, 404, errorBody(404, `The model \`${request.model}\` does not exist or you do not have access to it.`));
    }
    const script = this.nextScript(request);
    if (script.status !== undefined) {
      const headers: Record<string, string> = script.retryAfter !== undefined ? { 'Retry-After': script.retryAfter } : {};
      return sendJson(res, script.status, errorBody(script.status, script.errorMessage ?? DEFAULT_ERROR_MESSAGE, script), headers);
    }
    if (script.hangBeforeHeaders) return; // a client abort or stop() closes it
    const plan = planReply(script, request, this.defaultTokenDelayMs);
    if (request.stream === true) return this.answerStreaming(exchange, request, plan, script);
    return this.answerOnce(exchange, request, plan, script);
  }

  private record(exchange: Exchange, body: ChatRequestBody): void {
    const { req, res } = exchange;
    const record: RecordedChatRequest = {
      body,
      authorization: req.headers.authorization ?? null,
      headers: req.headers,
      receivedAt: Date.now(),
      aborted: false,
      finished: false,
    };
    this.requests.push(record);
    res.once('finish', () => {
      record.finished = true;
      this.changes.emit('change');
    });
    res.once('close', () => {
      if (res.writableFinished || exchange.closedByServer) return;
      record.aborted = true;
      this.changes.emit('change');
    });
    this.changes.emit('change');
  }

  private nextScript(request: ChatRequestBody): ChatScript {
    const queued = this.queue.shift();
    if (queued) return queued;
    return typeof this.defaultScript === 'function' ? this.defaultScript(request) : this.defaultScript;
  }

  private async answerStreaming(exchange: Exchange, request: ChatRequestBody, plan: ReplyPlan, script: ChatScript): Promise<void> {
    const { res, signal } = exchange;
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache' });
    res.flushHeaders();
    if (script.hang) return;

    const includeUsage = request.stream_options?.include_usage === true && !script.ignoreIncludeUsage;
    const id = `chatcmpl-${this.nextId++}`;
    const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) => ({
      id,
      object: 'chat.completion.chunk',
      created: Math.floor(Date.now() / 1000),
      model: request.model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      // OpenAI: with include_usage, every chunk carries `usage: null` but the last.
      ...(includeUsage ? { usage: null } : {}),
    });

    const toSend = plan.fault?.afterChunks ?? plan.chunks.length;
    for (let i = 0; i < toSend; i++) {
      if (!(await pause(i === 0 ? plan.firstTokenDelayMs : plan.tokenDelayMs, signal))) return;
      // Like vLLM, the role comes in a chunk of its own, with the first token.
      if (i === 0) writeEvent(res, chunk({ role: 'assistant', content: '' }));
      writeEvent(res, chunk(this.deltaOf(plan.chunks[i], plan.reasoningField)));
    }

    if (plan.fault?.kind === 'cut') return this.cut(exchange);
    if (plan.fault?.kind === 'error') {
      writeEvent(
        res,
        errorBody(500, script.errorMessage ?? DEFAULT_ERROR_MESSAGE, { errorType: 'InternalServerError', errorCode: 500, ...script }),
      );
      writeEvent(res, '[DONE]');
      res.end();
      return;
    }
    if (toSend === 0) writeEvent(res, chunk({ role: 'assistant', content: '' }));
    if (plan.finish) writeEvent(res, chunk({}, 'stop'));
    if (includeUsage) {
      const usage = {
        prompt_tokens: plan.promptTokens,
        completion_tokens: plan.completionTokens,
        total_tokens: plan.promptTokens + plan.completionTokens,
      };
      writeEvent(res, {
        id,
        object: 'chat.completion.chunk',
        created: Math.floor(Date.now() / 1000),
        model: request.model,
        choices: [],
        usage,
      });
    }
    writeEvent(res, '[DONE]');
    res.end();
  }

  private deltaOf(chunk: TextChunk, field: ReasoningField): Record<string, string> {
    if (chunk.kind === 'content') return { content: chunk.text };
    if (field === 'both') return { reasoning: chunk.text, reasoning_content: chunk.text };
    return { [field]: chunk.text };
  }

  /** stream:false: spend the same generation time, then answer with one completion object. */
  private async answerOnce(exchange: Exchange, request: ChatRequestBody, plan: ReplyPlan, script: ChatScript): Promise<void> {
    const { res, signal } = exchange;
    if (script.hang) return;
    const generated = plan.fault?.afterChunks ?? plan.chunks.length;
    if (generated > 0) {
      if (!(await pause(plan.firstTokenDelayMs + plan.tokenDelayMs * (generated - 1), signal))) return;
    }
    if (plan.fault?.kind === 'cut') return this.cut(exchange);
    if (plan.fault?.kind === 'error') return sendJson(res, 500, errorBody(500, script.errorMessage ?? DEFAULT_ERROR_MESSAGE, script));
    const join = (kind: TextChunk['kind']) =>
      plan.chunks
        .filter((c) => c.kind === kind)
        .map((c) => c.text)
        .join('');
    const reasoning = join('thinking');
    const message = {
      role: 'assistant',
      content: join('content'),
      ...(reasoning ? (plan.reasoningField === 'reasoning' ? { reasoning } : { reasoning_content: reasoning }) : {}),
    };
    sendJson(res, 200, {
      id: `chatcmpl-${this.nextId++}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: request.model,
      choices: [{ index: 0, message, logprobs: null, finish_reason: 'stop' }],
      usage: {
        prompt_tokens: plan.promptTokens,
        completion_tokens: plan.completionTokens,
        total_tokens: plan.promptTokens + plan.completionTokens,
      },
    });
  }

  /** Close the connection without finishing the response; what was written is flushed first. */
  private cut(exchange: Exchange): void {
    exchange.closedByServer = true;
    const socket = exchange.res.socket;
    if (socket) socket.end(() => socket.destroy());
    else exchange.res.destroy();
  }
}
