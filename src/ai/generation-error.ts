import { FailureReason } from '../event-bus/envelopes';

/** Stable codes of chat.failed, documented in the README. */
export type FailureCode =
  | 'model_not_found'
  | 'provider_auth'
  | 'ollama_unreachable'
  | 'ollama_error'
  | 'stream_interrupted'
  | 'bad_request'
  | 'first_token_timeout'
  | 'generation_timeout'
  | 'delivery_limit'
  | 'context_overflow'
  | 'internal_error';

/** A generation that could not finish, with what to tell the person and whether a retry may help. */
export class GenerationError extends Error {
  /** The server said how long to wait before trying again (HTTP 429/503 `Retry-After`), or null. */
  readonly retryAfterMs: number | null;

  constructor(
    readonly code: FailureCode,
    message: string,
    readonly transient: boolean,
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super(message, options);
    this.name = 'GenerationError';
    this.retryAfterMs = options?.retryAfterMs ?? null;
  }

  toReason(): FailureReason {
    return { code: this.code, message: this.message };
  }
}
