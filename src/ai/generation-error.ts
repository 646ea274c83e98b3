import { FailureReason } from '../event-bus/envelopes';

/** Stable codes of chat.failed, documented in the README. */
export type FailureCode =
  | 'model_not_found'
  | 'ollama_unreachable'
  | 'ollama_error'
  | 'stream_interrupted'
  | 'bad_request'
  | 'first_token_timeout'
  | 'generation_timeout'
  | 'delivery_limit'
  | 'internal_error';

/** A generation that could not finish, with what to tell the person and whether a retry may help. */
export class GenerationError extends Error {
  constructor(
    readonly code: FailureCode,
    message: string,
    readonly transient: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'GenerationError';
  }

  toReason(): FailureReason {
    return { code: this.code, message: this.message };
  }
}
