import { Inject, Injectable, Logger } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { FailureReason, GenerateCommand, Usage } from '../event-bus/envelopes';
import { EventBus } from '../event-bus/event-bus.service';
import { ChatHistoryStore } from '../history/chat-history.store';
import { DeltaBatcher } from './delta-batcher';
import { GenerationError } from './generation-error';
import { AI_PROVIDER, AiProvider, buildMessages, GenerationRequest } from './providers/ai-provider';

/** `finished`: an outcome was published and stored, ack it. `abandoned`: leave it for another worker. */
export type RunResult = 'finished' | 'abandoned';

/** Which stream entry is being processed, and how many times it has been delivered. */
export interface Delivery {
  entryId: string;
  attempt: number;
}

/** Transient provider failures are retried this many times, with this backoff. */
const MAX_RETRIES = 2;
const RETRY_BACKOFF_MS = [500, 2000];

interface AttemptOutcome {
  content: string;
  thinking: string;
  usage: Usage;
}

/**
 * Runs one chat.generate command: builds the conversation, streams the provider's answer to
 * chat:outgoing (started, thinking, deltas) and ends with exactly one of completed / failed,
 * stored in the history. Aborting `signal` (shutdown) abandons the message unacknowledged.
 */
@Injectable()
export class GenerationRunner {
  private readonly logger = new Logger(GenerationRunner.name);

  constructor(
    private readonly bus: EventBus,
    private readonly history: ChatHistoryStore,
    private readonly config: AppConfig,
    @Inject(AI_PROVIDER) private readonly provider: AiProvider,
  ) {}

  async run(command: GenerateCommand, delivery: Delivery, signal: AbortSignal): Promise<RunResult> {
    const ref = { sessionId: command.sessionId, messageId: command.messageId };
    const status = await this.history.getStatus(ref.sessionId, ref.messageId);
    if (status === 'completed' || status === 'failed' || status === 'cancelled') {
      // A redelivery of a message that already ended (e.g. the ack was lost): nothing to do.
      return 'finished';
    }
    if (status === null) {
      this.logger.log(`message ${ref.messageId} of session ${ref.sessionId} is gone from the history (cleared); skipping`);
      return 'finished';
    }
    const context = await this.history.contextBefore(ref.sessionId, ref.messageId);
    const request: GenerationRequest = {
      messages: buildMessages(this.config.ai.systemPrompt, context, command.content),
      ...(command.think ? { think: command.think } : {}),
    };
    await this.history.markStreaming(ref.sessionId, ref.messageId);

    const started = Date.now();
    let attempt = delivery.attempt;
    for (let retry = 0; ; retry++) {
      await this.bus.publishEvent({ type: 'chat.started', payload: { ...ref, attempt } });
      const partial = { content: '', thinking: '' };
      try {
        const outcome = await this.attempt(ref, request, signal, partial);
        if (outcome === null) return 'abandoned';
        const completed = {
          ...ref,
          content: outcome.content,
          ...(outcome.thinking ? { thinking: outcome.thinking } : {}),
          usage: outcome.usage,
        };
        await this.bus.publishEvent({ type: 'chat.completed', payload: completed });
        await this.history.finish(ref.sessionId, ref.messageId, 'completed', {
          content: outcome.content,
          createdAt: new Date().toISOString(),
          ...(outcome.thinking ? { thinking: outcome.thinking } : {}),
          usage: outcome.usage,
        });
        this.logger.log(
          `completed session=${ref.sessionId} message=${ref.messageId} attempt=${attempt} ` +
            `tokens=${outcome.usage.completionTokens} ms=${Date.now() - started}`,
        );
        return 'finished';
      } catch (err) {
        if (signal.aborted) return 'abandoned';
        const failure = toGenerationError(err);
        if (failure.transient && retry < MAX_RETRIES) {
          this.logger.warn(`attempt ${attempt} of ${ref.messageId} failed (${failure.code}), retrying: ${failure.message}`);
          await sleep(RETRY_BACKOFF_MS[retry] ?? 2000, signal);
          if (signal.aborted) return 'abandoned';
          attempt++;
          continue;
        }
        await this.fail(ref, failure.toReason(), partial, command, delivery);
        return 'finished';
      }
    }
  }

  /** Ends a message that was delivered too often without an outcome (it keeps crashing workers). */
  async giveUp(command: GenerateCommand, delivery: Delivery): Promise<RunResult> {
    const ref = { sessionId: command.sessionId, messageId: command.messageId };
    const status = await this.history.getStatus(ref.sessionId, ref.messageId);
    if (status === 'completed' || status === 'failed' || status === 'cancelled') return 'finished';
    const error = new GenerationError(
      'delivery_limit',
      `The assistant stopped ${delivery.attempt - 1} times while answering this message, so it was set aside. Please try again, perhaps rephrased.`,
      false,
    );
    await this.fail(ref, error.toReason(), { content: '', thinking: '' }, command, delivery);
    return 'finished';
  }

  /** One try against the provider. Returns null when aborted by `signal`. */
  private async attempt(
    ref: { sessionId: string; messageId: string },
    request: GenerationRequest,
    signal: AbortSignal,
    partial: { content: string; thinking: string },
  ): Promise<AttemptOutcome | null> {
    const controller = new AbortController();
    const onOuterAbort = () => controller.abort();
    signal.addEventListener('abort', onOuterAbort, { once: true });
    let timeout: GenerationError | null = null;
    const expire = (error: GenerationError) => () => {
      timeout = error;
      controller.abort();
    };
    const { firstTokenTimeoutMs, totalTimeoutMs } = this.config.ai;
    let firstTokenTimer: NodeJS.Timeout | null = setTimeout(
      expire(new GenerationError('first_token_timeout', `The model sent nothing for ${Math.round(firstTokenTimeoutMs / 1000)} s (it may still be loading); try again.`, true)),
      firstTokenTimeoutMs,
    );
    const totalTimer = setTimeout(
      expire(new GenerationError('generation_timeout', `The answer took longer than ${Math.round(totalTimeoutMs / 1000)} s and was stopped.`, false)),
      totalTimeoutMs,
    );
    const batcher = new DeltaBatcher(
      (kind, delta) =>
        this.bus.publishEvent(
          kind === 'thinking'
            ? { type: 'chat.thinking', payload: { ...ref, delta } }
            : { type: 'chat.delta', payload: { ...ref, delta } },
        ),
      this.config.worker.deltaCoalesceMs,
    );
    let usage: Usage | null = null;
    try {
      for await (const chunk of this.provider.stream(request, controller.signal)) {
        if (firstTokenTimer) {
          clearTimeout(firstTokenTimer);
          firstTokenTimer = null;
        }
        if (chunk.kind === 'done') {
          usage = chunk.usage;
          break;
        }
        if (chunk.kind === 'thinking') partial.thinking += chunk.text;
        else partial.content += chunk.text;
        batcher.push(chunk.kind, chunk.text);
      }
      if (timeout) throw timeout;
      if (signal.aborted) {
        await batcher.discard();
        return null;
      }
      if (!usage) throw new GenerationError('stream_interrupted', 'The model stream ended without finishing.', true);
      await batcher.close();
      return { content: partial.content, thinking: partial.thinking, usage };
    } catch (err) {
      await batcher.discard();
      throw err;
    } finally {
      if (firstTokenTimer) clearTimeout(firstTokenTimer);
      clearTimeout(totalTimer);
      signal.removeEventListener('abort', onOuterAbort);
    }
  }

  private async fail(
    ref: { sessionId: string; messageId: string },
    error: FailureReason,
    partial: { content: string; thinking: string },
    command: GenerateCommand,
    delivery: Delivery,
  ): Promise<void> {
    await this.bus.publishEvent({ type: 'chat.failed', payload: { ...ref, error } });
    await this.history.finish(ref.sessionId, ref.messageId, 'failed', {
      content: partial.content,
      createdAt: new Date().toISOString(),
      ...(partial.thinking ? { thinking: partial.thinking } : {}),
      error,
    });
    await this.bus.deadLetter({
      stream: 'chat:incoming',
      entryId: delivery.entryId,
      reason: `${error.code}: ${error.message}`,
      sessionId: ref.sessionId,
      messageId: ref.messageId,
      fields: ['command', JSON.stringify(command)],
    });
    this.logger.warn(`failed session=${ref.sessionId} message=${ref.messageId} code=${error.code}`);
  }
}

function toGenerationError(err: unknown): GenerationError {
  if (err instanceof GenerationError) return err;
  return new GenerationError('internal_error', 'The assistant hit an internal error; please try again.', true, { cause: err });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
