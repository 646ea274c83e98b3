import { GenerationError } from '../generation-error';

/** The server could not be reached at all: nothing listens there, or the name or route is wrong. */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/**
 * The connection was made, then reset or closed before (or while) Ollama answered: it was reachable,
 * so this is a cut stream (transient), not "is it running?". Node's http says `socket hang up`
 * (ECONNRESET), undici `other side closed` (UND_ERR_SOCKET) under `fetch failed`, or `terminated`.
 */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);
const RESET_MESSAGE = /socket hang up|other side closed|terminated|ECONNRESET|EPIPE/i;

/**
 * Errors by shape, not `instanceof Error`: fetch's errors may come from another realm (undici's
 * own, a test sandbox), where that check fails.
 */
function isErrorLike(value: unknown): value is Error {
  return typeof value === 'object' && value !== null && typeof (value as { message?: unknown }).message === 'string';
}

function causeCode(err: unknown): string | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 4 && isErrorLike(current); depth++) {
    const code = (current as Error & { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = (current as Error & { cause?: unknown }).cause;
  }
  return undefined;
}

/** The messages of an error and its causes, outermost first. */
function causeMessages(err: unknown): string[] {
  const messages: string[] = [];
  let current: unknown = err;
  for (let depth = 0; depth < 4 && isErrorLike(current); depth++) {
    messages.push(current.message);
    current = (current as Error & { cause?: unknown }).cause;
  }
  return messages;
}

function isReset(err: unknown, code: string | undefined): boolean {
  return (code !== undefined && RESET_CODES.has(code)) || causeMessages(err).some((m) => RESET_MESSAGE.test(m));
}

/**
 * Turns whatever the `ollama` client threw into a GenerationError with a stable code and a message a
 * person can act on. `receivedAny` tells whether the stream had started (a failure after that is a
 * cut stream, not an unreachable server).
 */
export function classifyOllamaError(err: unknown, ctx: { host: string; model: string; receivedAny: boolean }): GenerationError {
  if (err instanceof GenerationError) return err;
  // Ollama's own text helps people act; it is cut short so a long body never floods a client.
  const message = (err instanceof Error ? err.message : String(err)).slice(0, 300);
  const status = (err as { status_code?: unknown } | null)?.status_code;

  if (typeof status === 'number') {
    if (status === 404 && /model\b.*not found/i.test(message)) {
      return new GenerationError(
        'model_not_found',
        `The model "${ctx.model}" is not available on the Ollama server. ` +
          `Pull it with \`ollama pull ${ctx.model}\` (or \`npm run model:pull\`), then try again.`,
        false,
        { cause: err },
      );
    }
    if (status >= 500) {
      return new GenerationError('ollama_error', `Ollama failed (HTTP ${status}): ${message}`, true, { cause: err });
    }
    return new GenerationError('bad_request', `Ollama rejected the request (HTTP ${status}): ${message}`, false, { cause: err });
  }

  const code = causeCode(err);
  // A reset or a cut body: the server was reachable (whatever else the error chain says).
  if (!ctx.receivedAny && isReset(err, code)) {
    return new GenerationError(
      'stream_interrupted',
      // Not the socket's own text: it names the internal address, and this goes to every client.
      `The connection to Ollama was closed before it answered${code ? ` (${code})` : ''}; it may be restarting or overloaded.`,
      true,
      { cause: err },
    );
  }
  if (!ctx.receivedAny && ((code && CONNECTION_CODES.has(code)) || /fetch failed/i.test(message))) {
    return new GenerationError(
      'ollama_unreachable',
      // Sent to every client of the session: the internal address stays in the operator's config.
      'Cannot reach Ollama. Is it running? Start it with `ollama serve`, or set OLLAMA_HOST to where it runs.',
      true,
      { cause: err },
    );
  }
  if (ctx.receivedAny || /did not receive done|terminated|socket|premature|aborted/i.test(message)) {
    return new GenerationError('stream_interrupted', `The answer from Ollama was interrupted: ${message}`, true, { cause: err });
  }
  return new GenerationError('ollama_error', `Ollama failed: ${message}`, true, { cause: err });
}
