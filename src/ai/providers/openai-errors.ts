import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import { FailureCode, GenerationError } from '../generation-error';
import { causeCode, isConnectionRefused, isConnectionReset } from './transport-errors';

/**
 * The server refused the credentials or the account (HTTP 401/403, or OpenAI's out-of-quota 429):
 * an operator must act, so it is never retried.
 */
export const PROVIDER_AUTH: FailureCode = 'provider_auth';

/** The longest Retry-After honoured: a server asking for more is treated like one asking for this. */
const MAX_RETRY_AFTER_MS = 60_000;

export interface OpenAiErrorContext {
  model: string;
  /** Only to cut it out of any text a server echoed; never written anywhere. */
  apiKey: string | null;
  /** Whether the stream had started: a failure after that is a cut stream, not an unreachable server. */
  receivedAny: boolean;
}

/**
 * Turns whatever the `openai` client (or the fetch under it) threw into a GenerationError with the
 * same codes and retry behaviour as Ollama's (ollama-errors.ts), plus `provider_auth`. Messages go to
 * every client of the session: they never name the server's address and never carry the API key.
 */
export function classifyOpenAiError(err: unknown, ctx: OpenAiErrorContext): GenerationError {
  if (err instanceof GenerationError) return err;
  const fail = (code: FailureCode, message: string, transient: boolean) =>
    new GenerationError(code, redact(message, ctx.apiKey), transient, { cause: err });

  if (err instanceof APIError && typeof err.status === 'number') return classifyStatus(err as APIError, err.status, ctx);

  // A timeout, abort or connection failure of the request itself, before any response: the client
  // wraps fetch's error (the cause), which is read like Ollama's.
  if (err instanceof APIConnectionTimeoutError) {
    return fail('ollama_unreachable', 'The model server did not answer in time; it may be overloaded or unreachable.', true);
  }
  if (err instanceof APIUserAbortError) return fail('stream_interrupted', 'The request to the model server was aborted.', true);
  const code = causeCode(err);
  if (!ctx.receivedAny && isConnectionReset(err)) {
    return fail(
      'stream_interrupted',
      // Not the socket's own text: it names the internal address.
      `The connection to the model server was closed before it answered${code ? ` (${code})` : ''}; it may be restarting or overloaded.`,
      true,
    );
  }
  if (!ctx.receivedAny && (err instanceof APIConnectionError || isConnectionRefused(err))) {
    return fail(
      'ollama_unreachable',
      'Cannot reach the model server. Is it running? Check OPENAI_BASE_URL (e.g. http://localhost:8000/v1).',
      true,
    );
  }

  // The server's own text helps people act; it is cut short so a long body never floods a client.
  const message = textOf(err, ctx.apiKey);
  // An error event inside the stream (`data: {"error": ...}`, vLLM's and llama.cpp's way to report a
  // failed generation), a body cut short or an unparsable chunk.
  if (ctx.receivedAny || /terminated|socket|premature|aborted/i.test(message)) {
    return fail('stream_interrupted', `The answer from the model server was interrupted: ${message}`, true);
  }
  return fail('ollama_error', `The model server failed: ${message}`, true);
}

function classifyStatus(err: APIError, status: number, ctx: OpenAiErrorContext): GenerationError {
  const fail = (code: FailureCode, message: string, transient: boolean) =>
    new GenerationError(code, redact(message, ctx.apiKey), transient, { cause: err });
  const message = textOf(err, ctx.apiKey);
  const errorCode = typeof err.code === 'string' ? err.code : '';

  // The server's text is left out: OpenAI's names (part of) the key it got.
  if (status === 401) return fail(PROVIDER_AUTH, 'The model server refused the API key (HTTP 401): check OPENAI_API_KEY.', false);
  if (status === 403) {
    return fail(PROVIDER_AUTH, `The model server denied access to the model "${ctx.model}" (HTTP 403): check OPENAI_API_KEY.`, false);
  }
  if (status === 429 && errorCode === 'insufficient_quota') {
    return fail(PROVIDER_AUTH, 'The account behind OPENAI_API_KEY has no quota left (HTTP 429).', false);
  }
  if (isModelMissing(status, errorCode, message)) {
    return fail(
      'model_not_found',
      `The model "${ctx.model}" is not available on the model server. Set OPENAI_MODEL to a model it serves (GET /v1/models lists them), then try again.`,
      false,
    );
  }
  if (status === 404) {
    return fail('bad_request', `The model server has no chat completions endpoint (HTTP 404): OPENAI_BASE_URL usually ends in /v1.`, false);
  }
  if (status === 429 || status >= 500 || status === 408 || status === 409) {
    const text = `The model server ${status === 429 ? 'is rate limiting requests' : 'failed'} (HTTP ${status}): ${message}`;
    const retryAfterMs = retryAfterOf(err.headers);
    return retryAfterMs === null
      ? fail('ollama_error', text, true)
      : new GenerationError('ollama_error', redact(text, ctx.apiKey), true, { cause: err, retryAfterMs });
  }
  return fail('bad_request', `The model server rejected the request (HTTP ${status}): ${message}`, false);
}

/**
 * OpenAI says 404 `model_not_found`; vLLM 404 "The model `x` does not exist."; LM Studio and some
 * proxies a 400 naming the model. A 404 that does not mention a model is a wrong route.
 */
function isModelMissing(status: number, errorCode: string, message: string): boolean {
  if (errorCode === 'model_not_found') return true;
  return (status === 404 || status === 400) && /model\b.*(does not exist|not found|not loaded|no such)/i.test(message);
}

/** `retry-after-ms` (OpenAI's), else `Retry-After` in seconds or as an HTTP date; null when absent. */
export function retryAfterOf(headers: Headers | undefined, now = Date.now()): number | null {
  const ms = Number.parseFloat(headers?.get('retry-after-ms') ?? '');
  if (Number.isFinite(ms) && ms >= 0) return Math.min(Math.ceil(ms), MAX_RETRY_AFTER_MS);
  const raw = headers?.get('retry-after')?.trim();
  if (!raw) return null;
  const seconds = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) : null;
  const fromDate = seconds === null ? Date.parse(raw) - now : null;
  const wait = seconds !== null ? seconds * 1000 : fromDate !== null && Number.isFinite(fromDate) ? Math.max(0, fromDate) : null;
  return wait === null ? null : Math.min(Math.ceil(wait), MAX_RETRY_AFTER_MS);
}

/** The error's own text, key cut out first (a cut could leave part of it), then cut short. */
function textOf(err: unknown, apiKey: string | null): string {
  return redact(err instanceof Error ? err.message : String(err), apiKey).slice(0, 300);
}

/** A server may echo the key it was sent (some in full): it is cut out of every message. */
function redact(text: string, apiKey: string | null): string {
  return apiKey ? text.split(apiKey).join('[redacted]') : text;
}
