import { Logger } from '@nestjs/common';
import OpenAI, { APIError } from 'openai';
import { Usage } from '../../event-bus/envelopes';
import { GenerationError } from '../generation-error';
import { AiProvider, GenerationChunk, GenerationRequest, ProviderHealth } from './ai-provider';
import { NodeHttpFetch } from './node-http-fetch';
import { mapOpenAiChunk } from './openai-chunks';
import { classifyOpenAiError, PROVIDER_AUTH } from './openai-errors';

/** AppConfig's `ai.openai`. */
export interface OpenAiProviderOptions {
  /** The API root, e.g. http://localhost:8000/v1 (no trailing slash needed). */
  baseUrl: string;
  /** Sent as a bearer token; null for a local server that wants none. Never logged. */
  apiKey: string | null;
  model: string;
}

/** /health must answer quickly even when the server hangs. */
const HEALTH_TIMEOUT_MS = 2000;
/**
 * The client's own request timeout (10 minutes by default) would race the attempt's first-token and
 * total timers (ProviderAttempt), which alone decide when a generation has taken too long and which
 * abort `signal`: it is set to the longest a Node timer takes.
 */
const NO_CLIENT_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * Any OpenAI-compatible server (vLLM, llama.cpp's llama-server, LM Studio, OpenAI itself) through
 * the official `openai` client, streamed over the worker's keep-alive transport (NodeHttpFetch).
 */
export class OpenAiProvider implements AiProvider {
  readonly name = 'openai';
  private readonly logger = new Logger(OpenAiProvider.name);
  private readonly client: OpenAI;
  /** The base URL as shown to operators: without any user:password of the URL. */
  private readonly shownBaseUrl: string;

  constructor(private readonly options: OpenAiProviderOptions) {
    const url = new URL(options.baseUrl);
    url.username = '';
    url.password = '';
    this.shownBaseUrl = url.origin + url.pathname.replace(/\/+$/, '');
    this.client = new OpenAI({
      baseURL: options.baseUrl,
      // The client insists on a key; for a keyless server a placeholder satisfies it and the
      // Authorization header is then dropped, so the server sees no credentials at all.
      apiKey: options.apiKey ?? 'none',
      ...(options.apiKey === null ? { defaultHeaders: { Authorization: null } } : {}),
      // Explicit nulls: otherwise the client reads OPENAI_ORG_ID and the like from the environment,
      // and the app's configuration would not be the whole story.
      organization: null,
      project: null,
      adminAPIKey: null,
      // The runner retries (with chat.status to the client); the client's own retries would hide it.
      maxRetries: 0,
      timeout: NO_CLIENT_TIMEOUT_MS,
      // Each request carries its own signal (the generation's, or the probe's timeout).
      fetch: new NodeHttpFetch().fetchWith(new AbortController().signal),
      // Failures reach the logs as GenerationErrors; the client's console lines would bypass pino.
      logLevel: 'off',
    });
  }

  async *stream(request: GenerationRequest, signal: AbortSignal): AsyncIterable<GenerationChunk> {
    const model = request.model ?? this.options.model;
    const ctx = { model, apiKey: this.options.apiKey, receivedAny: false };
    let usage: Usage | null = null;
    let finished = false;
    try {
      if (signal.aborted) return;
      // The signal reaches the request at any point, also while no headers came yet (a queued
      // request on vLLM, a model loading in LM Studio): aborting it closes the connection.
      const stream = await this.client.chat.completions.create(
        {
          model,
          messages: request.messages,
          ...(request.maxTokens ? { max_tokens: request.maxTokens } : {}),
          stream: true,
          stream_options: { include_usage: true },
          // gpt-oss and the other reasoning models take the app's think levels as they are.
          ...(request.think ? { reasoning_effort: request.think } : {}),
        },
        { signal },
      );
      for await (const chunk of stream) {
        ctx.receivedAny = true;
        const mapped = mapOpenAiChunk(chunk);
        yield* mapped.parts;
        usage = mapped.usage ?? usage;
        finished ||= mapped.finished;
      }
    } catch (err) {
      if (signal.aborted) return; // the caller knows why it aborted
      throw classifyOpenAiError(err, ctx);
    }
    // On abort the client's stream may also just end, without an error.
    if (signal.aborted) return;
    // Usage comes last, after the finish; `done` waits for the stream's end (`data: [DONE]`) so the
    // request is never cut short. A server ignoring include_usage still finishes, with no counts.
    if (!finished && !usage)
      throw new GenerationError('stream_interrupted', 'The model server ended the answer without finishing it.', true);
    yield { kind: 'done', usage: usage ?? { promptTokens: 0, completionTokens: 0 } };
  }

  async health(): Promise<ProviderHealth> {
    const { model } = this.options;
    const details = { baseUrl: this.shownBaseUrl, model };
    let models: string[];
    try {
      models = await this.listModels(AbortSignal.timeout(HEALTH_TIMEOUT_MS));
    } catch (err) {
      const failure = classifyOpenAiError(err, { model, apiKey: this.options.apiKey, receivedAny: false });
      this.logger.debug(`health check failed: ${failure.message}`);
      const answered = err instanceof APIError && typeof err.status === 'number';
      return { ok: false, message: this.unhealthy(err, failure), details: { ...details, reachable: answered, modelPresent: false } };
    }
    if (!models.includes(model)) {
      const served = models.slice(0, 5).join(', ') + (models.length > 5 ? ', ...' : '');
      return {
        ok: false,
        message: `The model server is up but does not serve "${model}": set OPENAI_MODEL to one it lists (${served || 'none'}).`,
        details: { ...details, reachable: true, modelPresent: false },
      };
    }
    return { ok: true, message: 'ok', details: { ...details, reachable: true, modelPresent: true } };
  }

  /** The model ids the server serves (GET /v1/models). */
  async listModels(signal: AbortSignal = AbortSignal.timeout(HEALTH_TIMEOUT_MS)): Promise<string[]> {
    const ids: string[] = [];
    for await (const entry of this.client.models.list({ signal })) ids.push(entry.id);
    return ids;
  }

  /** What an operator reads at /health when the probe failed. */
  private unhealthy(err: unknown, failure: GenerationError): string {
    if (failure.code === PROVIDER_AUTH) return 'The model server refused the API key: check OPENAI_API_KEY.';
    if (err instanceof APIError && typeof err.status === 'number') {
      return `The model server answered GET /models with HTTP ${err.status}: check OPENAI_BASE_URL (it usually ends in /v1).`;
    }
    return 'Cannot reach the model server: start it, or check OPENAI_BASE_URL.';
  }
}
