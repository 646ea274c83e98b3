import { GenerationError } from '../generation-error';
import { causeCode, isConnectionRefused, isConnectionReset } from './transport-errors';

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
  if (!ctx.receivedAny && isConnectionReset(err)) {
    return new GenerationError(
      'stream_interrupted',
      // Not the socket's own text: it names the internal address, and this goes to every client.
      `The connection to Ollama was closed before it answered${code ? ` (${code})` : ''}; it may be restarting or overloaded.`,
      true,
      { cause: err },
    );
  }
  if (!ctx.receivedAny && isConnectionRefused(err)) {
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
