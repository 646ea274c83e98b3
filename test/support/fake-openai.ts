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
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { tokenize } from './fake-ollama';
import { countWords, cutConnection, joinChunks, pause, planStream, readBody, ScriptedFakeServer } from './scripted-fake-server';
import type { Exchange, RecordedRequest, ScriptSource, StreamPlan, StreamScript, TextChunk } from './scripted-fake-server';

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/** Which delta field carries reasoning: vLLM < 0.10 and llama.cpp say `reasoning_content`, newer vLLM `reasoning`. */
export type ReasoningField = 'reasoning_content' | 'reasoning' | 'both';

/** How the fake answers one chat completion request. Every field is optional; content and the delays are StreamScript's. */
export interface ChatScript extends StreamScript {
  /** Reasoning tokens, streamed before content. Streamed even when the request has no reasoning_effort. */
  thinking?: string[];
  /** Default 'reasoning_content'; 'both' sends the same text under both names (a server in transition). */
  reasoningField?: ReasoningField;
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

export interface RecordedChatRequest extends RecordedRequest<ChatRequestBody> {
  /** The Authorization header as sent, or null. */
  authorization: string | null;
  headers: IncomingHttpHeaders;
}

export type ChatScriptSource = ScriptSource<ChatScript, ChatRequestBody>;

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

interface ReplyPlan extends StreamPlan {
  reasoningField: ReasoningField;
  finish: boolean;
  promptTokens: number;
  completionTokens: number;
}

function planReply(script: ChatScript, request: ChatRequestBody, defaultTokenDelayMs: number): ReplyPlan {
  const stream = planStream(script, defaultReply(request), defaultTokenDelayMs);
  return {
    ...stream,
    reasoningField: script.reasoningField ?? 'reasoning_content',
    finish: script.finish ?? true,
    promptTokens: script.promptTokens ?? countWords(request.messages),
    completionTokens: script.completionTokens ?? stream.chunks.length,
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

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function writeEvent(res: ServerResponse, data: unknown): void {
  if (!res.destroyed) res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
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

export class FakeOpenAi extends ScriptedFakeServer<ChatScript, RecordedChatRequest> {
  /** The key required of every request; null: none (a local server started without --api-key). */
  apiKey: string | null;

  private readonly defaultTokenDelayMs: number;
  private nextId = 1;

  constructor(options: FakeOpenAiOptions = {}) {
    super('FakeOpenAi', options.models ?? [DEFAULT_MODEL]);
    this.defaultTokenDelayMs = options.defaultTokenDelayMs ?? 0;
    this.apiKey = options.apiKey ?? null;
  }

  /** What clients take as their base URL: the origin (`url`) plus /v1. */
  get baseUrl(): string {
    return `${this.url}/v1`;
  }

  /** Listen (port 0 = any free port) and resolve the base URL (…/v1). */
  override async start(port = 0, host = '127.0.0.1'): Promise<string> {
    await super.start(port, host);
    return this.baseUrl;
  }

  protected async route(exchange: Exchange): Promise<void> {
    const { req, res, path } = exchange;
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

  protected sendServerError(res: ServerResponse, message: string): void {
    sendJson(res, 500, errorBody(500, message));
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
    const { headers } = exchange.req;
    this.record(exchange, {
      body: request,
      authorization: headers.authorization ?? null,
      headers,
      receivedAt: Date.now(),
      aborted: false,
      finished: false,
    });

    if (![...this.models].includes(request.model)) {
      return sendJson(res, 404, errorBody(404, `The model \`${request.model}\` does not exist or you do not have access to it.`));
    }
    const script = this.nextScript(request) ?? {};
    if (script.status !== undefined) {
      const headers: Record<string, string> = script.retryAfter !== undefined ? { 'Retry-After': script.retryAfter } : {};
      return sendJson(res, script.status, errorBody(script.status, script.errorMessage ?? DEFAULT_ERROR_MESSAGE, script), headers);
    }
    if (script.hangBeforeHeaders) return; // a client abort or stop() closes it
    const plan = planReply(script, request, this.defaultTokenDelayMs);
    if (request.stream === true) return this.answerStreaming(exchange, request, plan, script);
    return this.answerOnce(exchange, request, plan, script);
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

    if (plan.fault?.kind === 'cut') return cutConnection(exchange);
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
    if (plan.fault?.kind === 'cut') return cutConnection(exchange);
    if (plan.fault?.kind === 'error') return sendJson(res, 500, errorBody(500, script.errorMessage ?? DEFAULT_ERROR_MESSAGE, script));
    const reasoning = joinChunks(plan.chunks, 'thinking');
    const message = {
      role: 'assistant',
      content: joinChunks(plan.chunks, 'content'),
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
}
