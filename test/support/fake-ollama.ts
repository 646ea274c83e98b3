/**
 * A fake Ollama server that speaks Ollama's real HTTP wire protocol, so the official `ollama`
 * client (`new Ollama({ host })`) can be pointed at it unchanged.
 *
 * Used by end-to-end tests (scriptable faults: slow first token, mid-stream errors, cut
 * connections, hangs, HTTP errors), by benchmarks, and to run the app without a GPU
 * (see fake-ollama.cli.ts).
 *
 * Only Node's `http` module is used on purpose: no framework sits between the tests and the
 * bytes on the wire, so what the client sees is exactly what is written here.
 *
 * Endpoints: POST /api/chat, GET|HEAD /api/tags, POST /api/show, POST /api/pull,
 * GET|HEAD /api/version, GET|HEAD /. Known paths with another method answer 405 and unknown
 * paths 404, both as plain text, like Ollama's gin router.
 */
import { countTokens as countO200k } from 'gpt-tokenizer/encoding/o200k_base';
import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { cutConnection, joinChunks, pause, planStream, readBody, ScriptedFakeServer } from './scripted-fake-server';
import type { Exchange, RecordedRequest, ScriptSource, StreamPlan, StreamScript, TextChunk } from './scripted-fake-server';

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/** How the fake answers one /api/chat request. Every field is optional; content and the delays are StreamScript's. */
export interface ChatScript extends StreamScript {
  /** Thinking tokens, streamed before content. Streamed even when the request's `think` is falsy. */
  thinking?: string[];
  /** After N chunks close the connection without a done line (a stream cut). */
  cutAfterChunks?: number;
  /** After N chunks write `{"error": errorMessage}` and end the response (Ollama's mid-stream error). */
  errorAfterChunks?: number;
  /** Message for `errorAfterChunks` and `status`. */
  errorMessage?: string;
  /** Answer immediately with this HTTP status and `{"error": errorMessage}`. */
  status?: number;
  /**
   * Read the request and never answer, until the client disconnects or stop() is called.
   * A streamed request still gets its headers (like every streamed answer), so the client's
   * `chat()` resolves and its iterator can be aborted; a `stream:false` request gets nothing.
   */
  hang?: boolean;
  /** Override the usage numbers of the done line. */
  promptEvalCount?: number;
  evalCount?: number;
}

export interface ChatMessage {
  role: string;
  content: string;
  thinking?: string;
}

/** The think levels gpt-oss accepts, plus the boolean form every thinking model accepts. */
export type ThinkValue = boolean | 'low' | 'medium' | 'high';

/** A validated /api/chat request body (fields the fake does not use, like tools, are dropped). */
export interface ChatRequestBody {
  model: string;
  messages: ChatMessage[];
  stream?: boolean;
  think?: ThinkValue;
  options?: Record<string, unknown>;
  keep_alive?: string | number;
}

export type RecordedChatRequest = RecordedRequest<ChatRequestBody>;

export type ChatScriptSource = ScriptSource<ChatScript, ChatRequestBody>;

export interface FakeOllamaOptions {
  /** Models the server "has". Default: ['gpt-oss:20b']. */
  models?: string[];
  /**
   * A prompt larger than the request's num_ctx (default 4096, Ollama's) is an overflow: a real
   * Ollama would silently drop its beginning. The fake answers 500 and stop() throws, failing the
   * suite, unless the test expects overflows.
   */
  allowOverflow?: boolean;
  /** Delay between streamed chunks when a script does not set one. Default: 0. */
  defaultTokenDelayMs?: number;
  /** Delay between /api/pull progress lines. Default: 5. */
  pullDelayMs?: number;
}

// ---------------------------------------------------------------------------------------------
// Constants describing the pretend model
// ---------------------------------------------------------------------------------------------

export const DEFAULT_MODEL = 'gpt-oss:20b';
export const OLLAMA_VERSION = '0.12.6';

/** What a crashed llama runner reports mid-stream; a realistic default for scripted errors. */
const DEFAULT_ERROR_MESSAGE = 'an error was encountered while running the model: unexpected EOF';
const DEFAULT_PULL_DELAY_MS = 5;

/** Fixed so that listings are deterministic. */
const MODIFIED_AT = '2025-10-01T12:00:00.000000000Z';
const MODEL_SIZE_BYTES = 13_793_441_244;

const MODEL_DETAILS = {
  parent_model: '',
  format: 'gguf',
  family: 'gptoss',
  families: ['gptoss'],
  parameter_size: '20.9B',
  quantization_level: 'MXFP4',
};

const MODEL_INFO = {
  'general.architecture': 'gptoss',
  'general.basename': 'gpt-oss',
  'general.file_type': 4,
  'general.parameter_count': 20_914_757_184,
  'general.quantization_version': 2,
  'gptoss.attention.head_count': 64,
  'gptoss.attention.head_count_kv': 8,
  'gptoss.attention.sliding_window': 128,
  'gptoss.block_count': 24,
  'gptoss.context_length': 131_072,
  'gptoss.embedding_length': 2880,
  'gptoss.expert_count': 32,
  'gptoss.expert_used_count': 4,
  'tokenizer.ggml.model': 'gpt2',
};

const CAPABILITIES = ['completion', 'tools', 'thinking'];

/** A shortened harmony template: enough for code that only checks it is present. */
const TEMPLATE = '{{- range .Messages }}<|start|>{{ .Role }}<|message|>{{ .Content }}<|end|>{{ end -}}<|start|>assistant';

/** Layer sizes of a real gpt-oss:20b pull: weights, template, license, params... */
const PULL_LAYER_SIZES = [13_780_154_624, 7_240, 11_353, 18, 489];

// ---------------------------------------------------------------------------------------------
// Deterministic default reply
// ---------------------------------------------------------------------------------------------

/**
 * Split text into word-ish tokens that keep their leading whitespace, so that
 * `tokenize(s).join('') === s` for every string (trailing whitespace becomes its own token).
 */
export function tokenize(text: string): string[] {
  return text.match(/\s*\S+|\s+/g) ?? [];
}

/** The reply used when no script overrides it: an echo of the last user message. */
export function defaultReply(request: ChatRequestBody): { thinking: string[]; content: string[] } {
  const lastUserMessage = [...request.messages].reverse().find((m) => m.role === 'user')?.content ?? '';
  return {
    thinking: request.think ? tokenize(`Thinking about: ${lastUserMessage}`) : [],
    content: tokenize(`You said: ${lastUserMessage}`),
  };
}

// ---------------------------------------------------------------------------------------------
// Reply planning: a script plus the request become a concrete list of chunks and faults
// ---------------------------------------------------------------------------------------------

interface ReplyPlan extends StreamPlan {
  errorMessage: string;
  status?: number;
  hang: boolean;
  promptEvalCount: number;
  evalCount: number;
}

function planReply(script: ChatScript, request: ChatRequestBody, defaultTokenDelayMs: number): ReplyPlan {
  const stream = planStream(script, defaultReply(request), defaultTokenDelayMs);
  return {
    ...stream,
    errorMessage: script.errorMessage ?? DEFAULT_ERROR_MESSAGE,
    status: script.status,
    hang: script.hang ?? false,
    promptEvalCount: script.promptEvalCount ?? promptTokens(request.messages),
    evalCount: script.evalCount ?? stream.chunks.length,
  };
}

// ---------------------------------------------------------------------------------------------
// Response bodies
// ---------------------------------------------------------------------------------------------

/** performance.now() marks used for the *_duration fields. */
interface Clock {
  receivedAt: number;
  firstChunkAt?: number;
}

function nanosSince(fromMs: number, toMs: number): number {
  // Ollama never reports a zero duration; keep every field a positive integer.
  return Math.max(1, Math.round((toMs - fromMs) * 1e6));
}

function usageFields(plan: ReplyPlan, clock: Clock) {
  const end = performance.now();
  const firstChunkAt = clock.firstChunkAt ?? end;
  return {
    total_duration: nanosSince(clock.receivedAt, end),
    load_duration: 1, // the fake model is always loaded already
    prompt_eval_count: plan.promptEvalCount,
    prompt_eval_duration: nanosSince(clock.receivedAt, firstChunkAt),
    eval_count: plan.evalCount,
    eval_duration: nanosSince(firstChunkAt, end),
  };
}

function chunkResponse(model: string, chunk: TextChunk) {
  const message =
    chunk.kind === 'thinking' ? { role: 'assistant', content: '', thinking: chunk.text } : { role: 'assistant', content: chunk.text };
  return { model, created_at: new Date().toISOString(), message, done: false };
}

function doneResponse(model: string, plan: ReplyPlan, clock: Clock) {
  return {
    model,
    created_at: new Date().toISOString(),
    message: { role: 'assistant', content: '' },
    done: true,
    done_reason: 'stop',
    ...usageFields(plan, clock),
  };
}

/** The stream:false answer: one object carrying the whole message. */
function fullResponse(model: string, plan: ReplyPlan, clock: Clock) {
  const thinking = joinChunks(plan.chunks, 'thinking');
  return {
    ...doneResponse(model, plan, clock),
    // Like Ollama, the thinking field is omitted when there was none.
    message: { role: 'assistant', content: joinChunks(plan.chunks, 'content'), ...(thinking ? { thinking } : {}) },
  };
}

/** Ollama's answer to a chat without messages: it only loads the model. */
function loadResponse(model: string) {
  return {
    model,
    created_at: new Date().toISOString(),
    message: { role: 'assistant', content: '' },
    done: true,
    done_reason: 'load',
  };
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function tagsEntry(name: string) {
  return {
    name,
    model: name,
    modified_at: MODIFIED_AT,
    size: MODEL_SIZE_BYTES,
    digest: sha256(name),
    details: MODEL_DETAILS,
  };
}

function showResponse(name: string) {
  return {
    license: 'Apache License 2.0',
    modelfile: [
      '# Modelfile generated by "ollama show"',
      '# To build a new Modelfile based on this, replace FROM with:',
      `# FROM ${name}`,
      '',
      `FROM ${name}`,
      `TEMPLATE """${TEMPLATE}"""`,
      'PARAMETER temperature 1',
      '',
    ].join('\n'),
    parameters: 'temperature                    1',
    template: TEMPLATE,
    details: MODEL_DETAILS,
    model_info: MODEL_INFO,
    capabilities: CAPABILITIES,
    modified_at: MODIFIED_AT,
  };
}

interface ProgressLine {
  status: string;
  digest?: string;
  total?: number;
  completed?: number;
}

/** The progress lines of a real `ollama pull`, with digests derived from the model name. */
function pullProgress(name: string): ProgressLine[] {
  const layers = PULL_LAYER_SIZES.map((size, i) => ({ digest: sha256(`${name}#${i}`), size }));
  return [
    { status: 'pulling manifest' },
    ...layers.flatMap(({ digest, size }) => layerProgress(digest, size)),
    { status: 'verifying sha256 digest' },
    { status: 'writing manifest' },
    { status: 'success' },
  ];
}

function layerProgress(digest: string, total: number): ProgressLine[] {
  const steps = total > 1_000_000 ? 4 : 1; // only the big weights layer shows intermediate progress
  return Array.from({ length: steps }, (_, i) => ({
    status: `pulling ${digest.slice(0, 12)}`,
    digest: `sha256:${digest}`,
    total,
    completed: Math.round((total * (i + 1)) / steps),
  }));
}

/** Ollama (like `ollama run`) treats `name` and `name:latest` as the same model. */
function normalizeModelName(name: string): string {
  const trimmed = name.trim();
  const lastPathSegment = trimmed.slice(trimmed.lastIndexOf('/') + 1);
  return lastPathSegment.includes(':') ? trimmed : `${trimmed}:latest`;
}

// ---------------------------------------------------------------------------------------------
// Request parsing: unknown JSON in, typed values or Go-flavoured error messages out
// ---------------------------------------------------------------------------------------------

type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(error: string): Parsed<T> => ({ ok: false, error });

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The JSON kind name Go's encoding/json uses in its unmarshal errors. */
function goKind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'boolean') return 'bool';
  return typeof value === 'object' ? 'object' : typeof value;
}

function unmarshalError(value: unknown, target: string, goType: string): string {
  return `json: cannot unmarshal ${goKind(value)} into Go struct field ${target} of type ${goType}`;
}

/** Approximates Go's json syntax errors, which is what Ollama returns for a malformed body. */
function goJsonSyntaxError(raw: string, error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  if (message.includes('end of JSON input')) return 'unexpected EOF';
  const position = /position (\d+)/.exec(message)?.[1];
  const char = /Unexpected token '(.)'/.exec(message)?.[1] ?? (position === undefined ? undefined : raw[Number(position)]);
  const where = message.includes('after JSON') ? 'after top-level value' : 'looking for beginning of value';
  return char === undefined ? `invalid JSON: ${message}` : `invalid character '${char}' ${where}`;
}

function parseJsonObject(raw: string, goType: string): Parsed<Record<string, unknown>> {
  if (raw.trim() === '') return fail('missing request body');
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (error) {
    return fail(goJsonSyntaxError(raw, error));
  }
  if (!isRecord(value)) return fail(`json: cannot unmarshal ${goKind(value)} into Go value of type ${goType}`);
  return ok(value);
}

/** `null` decodes to Go's zero value, so it is treated like an absent field throughout. */
function optionalString(value: unknown, target: string): Parsed<string | undefined> {
  if (value === undefined || value === null) return ok(undefined);
  return typeof value === 'string' ? ok(value) : fail(unmarshalError(value, target, 'string'));
}

function parseMessage(value: unknown): Parsed<ChatMessage> {
  if (!isRecord(value)) return fail(unmarshalError(value, 'ChatRequest.messages', 'api.Message'));
  const role = optionalString(value.role, 'ChatRequest.messages.role');
  if (!role.ok) return fail(role.error);
  const content = optionalString(value.content, 'ChatRequest.messages.content');
  if (!content.ok) return fail(content.error);
  const thinking = optionalString(value.thinking, 'ChatRequest.messages.thinking');
  if (!thinking.ok) return fail(thinking.error);
  return ok({
    role: role.value ?? '',
    content: content.value ?? '',
    ...(thinking.value === undefined ? {} : { thinking: thinking.value }),
  });
}

function parseMessages(value: unknown): Parsed<ChatMessage[]> {
  if (value === undefined || value === null) return ok([]);
  if (!Array.isArray(value)) return fail(unmarshalError(value, 'ChatRequest.messages', '[]api.Message'));
  const messages: ChatMessage[] = [];
  for (const item of value) {
    const message = parseMessage(item);
    if (!message.ok) return fail(message.error);
    messages.push(message.value);
  }
  return ok(messages);
}

function parseThink(value: unknown): Parsed<ThinkValue | undefined> {
  if (value === undefined || value === null) return ok(undefined);
  if (typeof value === 'boolean') return ok(value);
  if (value === 'low' || value === 'medium' || value === 'high') return ok(value);
  const shown = typeof value === 'string' ? JSON.stringify(value) : goKind(value);
  return fail(`invalid think value: ${shown} (must be "high", "medium", "low", true, or false)`);
}

function parseChatRequest(body: Record<string, unknown>): Parsed<ChatRequestBody> {
  const model = optionalString(body.model, 'ChatRequest.model');
  if (!model.ok) return fail(model.error);
  if (!model.value) return fail('model is required');
  const messages = parseMessages(body.messages);
  if (!messages.ok) return fail(messages.error);
  const think = parseThink(body.think);
  if (!think.ok) return fail(think.error);

  const request: ChatRequestBody = { model: model.value, messages: messages.value };
  const { stream, options, keep_alive: keepAlive } = body;
  if (stream !== undefined && stream !== null) {
    if (typeof stream !== 'boolean') return fail(unmarshalError(stream, 'ChatRequest.stream', 'bool'));
    request.stream = stream;
  }
  if (think.value !== undefined) request.think = think.value;
  if (options !== undefined && options !== null) {
    if (!isRecord(options)) return fail(unmarshalError(options, 'ChatRequest.options', 'map[string]interface {}'));
    request.options = options;
  }
  if (keepAlive !== undefined && keepAlive !== null) {
    if (typeof keepAlive !== 'string' && typeof keepAlive !== 'number') {
      return fail(unmarshalError(keepAlive, 'ChatRequest.keep_alive', 'api.Duration'));
    }
    request.keep_alive = keepAlive;
  }
  return ok(request);
}

/** /api/show and /api/pull accept the model as `model` or (deprecated, still sent by ollama-js pull) `name`. */
function modelNameOf(body: Record<string, unknown>): string {
  for (const value of [body.model, body.name]) if (typeof value === 'string' && value !== '') return value;
  return '';
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------

type Handler = (exchange: Exchange) => Promise<void> | void;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}

function sendError(res: ServerResponse, status: number, error: string): void {
  sendJson(res, status, { error });
}

function sendText(res: ServerResponse, status: number, text: string): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(text);
}

/** Headers go out now rather than with the first line, so the client's call resolves immediately. */
function startNdjson(res: ServerResponse): void {
  res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
  res.flushHeaders();
}

function writeLine(res: ServerResponse, body: unknown): void {
  if (!res.destroyed) res.write(`${JSON.stringify(body)}\n`);
}

function endWithLine(res: ServerResponse, body: unknown): void {
  if (!res.destroyed) res.end(`${JSON.stringify(body)}\n`);
}

/** Reads and parses a JSON object body; on failure answers 400 itself and returns undefined. */
async function readJsonObject(exchange: Exchange, goType: string): Promise<Record<string, unknown> | undefined> {
  const parsed = parseJsonObject(await readBody(exchange.req), goType);
  if (parsed.ok) return parsed.value;
  sendError(exchange.res, 400, parsed.error);
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/** Ollama's num_ctx when a request sets none. */
export const OLLAMA_DEFAULT_NUM_CTX = 4096;

/**
 * The prompt's size as the model sees it: gpt-oss's tokenizer (o200k) over every message's text, with
 * harmony's frame of each message (`<|start|>role<|message|>…<|end|>`). Below the app's own estimate,
 * which adds the system header Ollama writes: a prompt the app fitted never overflows here.
 */
export function promptTokens(messages: ChatMessage[]): number {
  return messages.reduce((total, m) => total + countO200k(m.content) + 4, 0);
}

export interface Overflow {
  promptTokens: number;
  numCtx: number;
}

export class FakeOllama extends ScriptedFakeServer<ChatScript, RecordedChatRequest> {
  /** Prompts that did not fit their num_ctx: each one fails the suite at stop() unless allowOverflow. */
  readonly overflows: Overflow[] = [];
  private readonly allowOverflow: boolean;
  private readonly defaultTokenDelayMs: number;
  private readonly pullDelayMs: number;

  private readonly routes: Record<string, Partial<Record<string, Handler>>> = {
    '/': { GET: ({ res }) => sendText(res, 200, 'Ollama is running') },
    '/api/version': { GET: ({ res }) => sendJson(res, 200, { version: OLLAMA_VERSION }) },
    '/api/tags': { GET: ({ res }) => sendJson(res, 200, { models: [...this.models].map(tagsEntry) }) },
    '/api/show': { POST: (exchange) => this.handleShow(exchange) },
    '/api/pull': { POST: (exchange) => this.handlePull(exchange) },
    '/api/chat': { POST: (exchange) => this.handleChat(exchange) },
  };

  constructor(options: FakeOllamaOptions = {}) {
    super('FakeOllama', options.models ?? [DEFAULT_MODEL]);
    this.allowOverflow = options.allowOverflow ?? false;
    this.defaultTokenDelayMs = options.defaultTokenDelayMs ?? 0;
    this.pullDelayMs = options.pullDelayMs ?? DEFAULT_PULL_DELAY_MS;
  }

  protected route(exchange: Exchange): Promise<void> | void {
    const { req, res, path } = exchange;
    const handlers = this.routes[path];
    if (!handlers) return sendText(res, 404, '404 page not found');
    // Ollama registers HEAD next to every GET route; Node drops the body of HEAD responses itself.
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
    const handler = handlers[method];
    return handler ? handler(exchange) : sendText(res, 405, '405 method not allowed');
  }

  /** Stops the server; throws when a prompt overflowed its num_ctx and the test did not expect it. */
  override async stop(): Promise<void> {
    await super.stop();
    if (this.overflows.length > 0 && !this.allowOverflow) {
      const seen = this.overflows.map((o) => `${o.promptTokens} > ${o.numCtx}`).join(', ');
      throw new Error(`FakeOllama: ${this.overflows.length} prompt(s) exceeded num_ctx (${seen}): Ollama would have cut them silently`);
    }
  }

  protected sendServerError(res: ServerResponse, message: string): void {
    sendError(res, 500, message);
  }

  private hasModel(name: string): boolean {
    const wanted = normalizeModelName(name);
    return [...this.models].some((model) => normalizeModelName(model) === wanted);
  }

  // --- /api/chat ---------------------------------------------------------------------------------

  private async handleChat(exchange: Exchange): Promise<void> {
    const body = await readJsonObject(exchange, 'api.ChatRequest');
    if (!body) return;
    const parsed = parseChatRequest(body);
    if (!parsed.ok) return sendError(exchange.res, 400, parsed.error);
    const request = parsed.value;
    const clock: Clock = { receivedAt: performance.now() };
    this.record(exchange, { body: request, receivedAt: Date.now(), aborted: false, finished: false });

    if (!this.hasModel(request.model)) {
      return sendError(exchange.res, 404, `model ${JSON.stringify(request.model)} not found, try pulling it first`);
    }
    // Checked before a script is consumed: Ollama answers this without generating anything.
    if (request.messages.length === 0) return sendJson(exchange.res, 200, loadResponse(request.model));
    const numCtx = typeof request.options?.num_ctx === 'number' ? request.options.num_ctx : OLLAMA_DEFAULT_NUM_CTX;
    const size = promptTokens(request.messages);
    if (size > numCtx) {
      this.overflows.push({ promptTokens: size, numCtx });
      return sendError(
        exchange.res,
        500,
        `fake-ollama: a prompt of ${size} tokens exceeds num_ctx ${numCtx} (Ollama would drop its beginning)`,
      );
    }

    const plan = planReply(this.nextScript(request) ?? {}, request, this.defaultTokenDelayMs);
    if (plan.status !== undefined) return sendError(exchange.res, plan.status, plan.errorMessage);
    // Ollama streams unless told otherwise (the ollama-js client always sends the flag).
    if (request.stream === false) return this.answerOnce(exchange, request, plan, clock);
    return this.answerStreaming(exchange, request, plan, clock);
  }

  private async answerStreaming(exchange: Exchange, request: ChatRequestBody, plan: ReplyPlan, clock: Clock) {
    const { res, signal } = exchange;
    startNdjson(res);
    if (plan.hang) return; // leave the response open; a client abort or stop() closes it

    const chunksToSend = plan.fault?.afterChunks ?? plan.chunks.length;
    for (let i = 0; i < chunksToSend; i++) {
      if (!(await pause(i === 0 ? plan.firstTokenDelayMs : plan.tokenDelayMs, signal))) return;
      clock.firstChunkAt ??= performance.now();
      writeLine(res, chunkResponse(request.model, plan.chunks[i]));
    }

    if (plan.fault?.kind === 'cut') return cutConnection(exchange);
    if (plan.fault?.kind === 'error') return endWithLine(res, { error: plan.errorMessage });
    endWithLine(res, doneResponse(request.model, plan, clock));
  }

  /** stream:false: spend the same generation time, then answer with one object (or fail like Ollama). */
  private async answerOnce(exchange: Exchange, request: ChatRequestBody, plan: ReplyPlan, clock: Clock) {
    const { res, signal } = exchange;
    if (plan.hang) return;

    const chunksGenerated = plan.fault?.afterChunks ?? plan.chunks.length;
    if (chunksGenerated > 0) {
      if (!(await pause(plan.firstTokenDelayMs, signal))) return;
      clock.firstChunkAt = performance.now();
      if (!(await pause(plan.tokenDelayMs * (chunksGenerated - 1), signal))) return;
    }

    if (plan.fault?.kind === 'cut') return cutConnection(exchange);
    // A generation error in non-streaming mode becomes an HTTP 500 in Ollama.
    if (plan.fault?.kind === 'error') return sendError(res, 500, plan.errorMessage);
    sendJson(res, 200, fullResponse(request.model, plan, clock));
  }

  // --- /api/show and /api/pull --------------------------------------------------------------------

  private async handleShow(exchange: Exchange): Promise<void> {
    const body = await readJsonObject(exchange, 'api.ShowRequest');
    if (!body) return;
    const name = modelNameOf(body);
    if (!name) return sendError(exchange.res, 400, 'model is required');
    // Unlike /api/chat, Ollama's show handler words its 404 this way (single quotes, no hint).
    if (!this.hasModel(name)) return sendError(exchange.res, 404, `model '${name}' not found`);
    sendJson(exchange.res, 200, showResponse(name));
  }

  private async handlePull(exchange: Exchange): Promise<void> {
    const body = await readJsonObject(exchange, 'api.PullRequest');
    if (!body) return;
    const name = modelNameOf(body);
    if (!name) return sendError(exchange.res, 400, 'invalid model name');

    const { res, signal } = exchange;
    const streamed = body.stream !== false;
    if (streamed) startNdjson(res);
    for (const line of pullProgress(name)) {
      if (!(await pause(this.pullDelayMs, signal))) return; // client gave up: the model is not added
      // Added before "success" is written, so a client that saw success can use the model at once.
      if (line.status === 'success' && !this.hasModel(name)) this.models.add(normalizeModelName(name));
      if (streamed) writeLine(res, line);
    }
    if (streamed) res.end();
    else sendJson(res, 200, { status: 'success' });
  }
}
