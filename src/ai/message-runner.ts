import { Inject, Injectable, Logger } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { decodeCommand, FailureReason } from '../event-bus/envelopes';
import { DeadLetters } from '../event-bus/dead-letters';
import { pause } from '../event-bus/stream-tail';
import { PartitionEntry, WorkerGroup } from '../event-bus/worker-group';
import { FinishOutcome, MessageRef, MessageStore, StartOutcome } from '../history/message-store';
import { StoredAssistantPart } from '../history/stored-message';
import { about } from '../observability/log-fields';
import { Metrics } from '../observability/metrics.service';
import { countTokens } from '../history/token-count';
import { isCancelled } from './abort-reasons';
import { CancelListener } from './cancel-listener';
import { ContextBudget } from './context-budget';
import { GenerationError } from './generation-error';
import { AttemptResult, Partial, ProviderAttempt } from './provider-attempt';
import { AI_PROVIDER, AiProvider, buildMessages } from './providers/ai-provider';
import { TitleWriter } from './title-writer';

/** `done`: the message's entry is settled (acknowledged by its script); `left`: leave it pending for another worker. */
export type RunResult = 'done' | 'left';

/** Transient provider failures are tried again this many times, after these waits. */
const MAX_RETRIES = 2;
const RETRY_BACKOFF_MS = [500, 2000];

type Started = Extract<StartOutcome, { result: 'started' }>;

/**
 * Runs one delivered command to its end: `start` (attempt+1, chat.started), provider attempts with
 * retries (each a new `start` under the attempt it holds), then one `finish`. Every write is a
 * script that refuses a stale attempt, so a worker that was paused or cut off stops without a trace
 * (docs/design.md). Redis errors are thrown: the worker runs the entry again once Redis answers.
 */
@Injectable()
export class MessageRunner {
  private readonly logger = new Logger(MessageRunner.name);

  constructor(
    private readonly store: MessageStore,
    private readonly group: WorkerGroup,
    private readonly deadLetters: DeadLetters,
    private readonly cancels: CancelListener,
    private readonly config: AppConfig,
    @Inject(AI_PROVIDER) private readonly provider: AiProvider,
    private readonly metrics: Metrics,
    private readonly budget: ContextBudget,
    private readonly titles: TitleWriter,
  ) {}

  async run(entry: PartitionEntry, consumer: string, signal: AbortSignal): Promise<RunResult> {
    const decoded = decodeCommand(entry.fields);
    if (!decoded.ok) {
      const reason = `malformed command: ${decoded.reason}`;
      const at = new Date().toISOString();
      await this.deadLetters.add(entry.partition.dead, {
        stream: entry.partition.incoming,
        entryId: entry.id,
        reason,
        sessionId: null,
        messageId: null,
        fields: entry.fields,
        at,
      });
      this.metrics.deadLetters.inc();
      await this.group.ack(entry);
      this.logger.warn(`dead-lettered ${entry.partition.incoming} ${entry.id}: ${reason}`);
      return 'done';
    }
    const ref: MessageRef = { sessionId: decoded.value.payload.sessionId, messageId: decoded.value.payload.messageId };
    if (signal.aborted) return 'left';
    const budget = this.budget.conversationTokens;
    const start = await this.store.start(ref, entry.id, consumer, null, entry.attemptFloor, budget);
    if (start.result !== 'started') return this.notStarted(ref, entry, start);
    const release = this.cancels.hold(entry.partition);
    try {
      if (entry.deliveries > this.config.worker.maxDeliveries) {
        const error = new GenerationError(
          'delivery_limit',
          `The assistant stopped ${entry.deliveries - 1} times while answering this message, so it was set aside. Please try again, perhaps rephrased.`,
          false,
        );
        return await this.fail(ref, entry, start, error.toReason(), { content: '', thinking: '' });
      }
      if (start.contextInfo.tokens > budget) {
        // It passed the check at send, but the window shrank since (a lower OLLAMA_NUM_CTX, a
        // correction learnt from the model's counts): Ollama would silently cut it.
        const { windowTokens, reserveTokens } = this.config.context;
        const error = new GenerationError(
          'context_overflow',
          `This message no longer fits the model's context window (OLLAMA_NUM_CTX=${windowTokens}, ` +
            `CONTEXT_RESERVE_TOKENS=${reserveTokens} kept for the answer). Please shorten it or split it.`,
          false,
        );
        return await this.fail(ref, entry, start, error.toReason(), { content: '', thinking: '' });
      }
      this.titles.generationStarted();
      try {
        return await this.generate(ref, entry, consumer, start, signal);
      } finally {
        this.titles.generationEnded();
      }
    } finally {
      release();
    }
  }

  private async generate(
    ref: MessageRef,
    entry: PartitionEntry,
    consumer: string,
    first: Started,
    signal: AbortSignal,
  ): Promise<RunResult> {
    const began = Date.now();
    let current = first;
    for (let retry = 0; ; retry++) {
      if (!current.user) {
        const error = new GenerationError('internal_error', 'The message could not be read back; please send it again.', false);
        return this.fail(ref, entry, current, error.toReason(), { content: '', thinking: '' });
      }
      const user = current.user;
      const request = {
        messages: buildMessages(this.config.ai.systemPrompt, current.context, user.content),
        ...(user.think ? { think: user.think } : {}),
        ...(user.model ? { model: user.model } : {}),
      };
      const deps = { provider: this.provider, store: this.store, config: this.config, metrics: this.metrics };
      const result: AttemptResult = await new ProviderAttempt(deps, ref, current.attempt, signal).run(request);
      switch (result.kind) {
        case 'completed': {
          const model = user.model ?? this.config.ai.model;
          const part: StoredAssistantPart = {
            content: result.content,
            createdAt: new Date().toISOString(),
            ...(result.thinking ? { thinking: result.thinking } : {}),
            usage: result.usage,
            model,
          };
          const payload = {
            ...ref,
            content: result.content,
            ...(result.thinking ? { thinking: result.thinking } : {}),
            usage: result.usage,
            model,
          };
          // counted once here, so later contexts fit this answer without reading it (docs/design.md)
          const tokens = countTokens(result.content);
          const finished = await this.store.finish(ref, entry.id, current.attempt, part, { type: 'chat.completed', payload }, null, tokens);
          if (finished.result === 'completed') {
            this.recordCompletion(result, Date.now() - began);
            this.budget.observe(current.contextInfo.tokens, result.usage.promptTokens);
            if (current.untitled)
              this.titles.request({ ref, question: user.content, answer: result.content, ...(user.model ? { model } : {}) });
          }
          return this.settled(ref, entry, finished, current.attempt);
        }
        case 'cancelled':
          return this.settled(
            ref,
            entry,
            await this.store.finish(ref, entry.id, current.attempt, partOf(result.partial), { type: 'chat.cancelled', payload: ref }),
            current.attempt,
          );
        case 'shutdown':
          return 'left';
        case 'fenced':
          this.logger.warn(about(ref, `attempt ${current.attempt} was taken over by a newer attempt; stopping it here`));
          return 'left';
        case 'gone':
          return this.gone(ref, entry);
        case 'error': {
          const failure = result.error;
          if (!failure.transient || retry >= MAX_RETRIES) return this.fail(ref, entry, current, failure.toReason(), result.partial);
          // at least what the server asked for (HTTP 429/503 Retry-After), never less than our backoff
          const waitMs = Math.max(RETRY_BACKOFF_MS[retry] ?? 2000, failure.retryAfterMs ?? 0);
          this.logger.warn(
            about(ref, `attempt ${current.attempt} failed (${failure.code}), retrying: ${failure.message}`, {
              attempt: current.attempt,
              code: failure.code,
            }),
          );
          const detail = `${failure.message} Trying again in ${(waitMs / 1000).toFixed(1)} s.`;
          const told = await this.store.emit(ref, current.attempt, { type: 'chat.status', payload: { ...ref, state: 'retrying', detail } });
          if (told.result === 'fenced') return 'left';
          if (told.result === 'gone') return this.gone(ref, entry);
          await pause(waitMs, signal);
          if (signal.aborted && !isCancelled(signal)) return 'left';
          if (isCancelled(signal) || told.result === 'cancel_requested') {
            return this.settled(
              ref,
              entry,
              await this.store.finish(ref, entry.id, current.attempt, partOf(result.partial), { type: 'chat.cancelled', payload: ref }),
              current.attempt,
            );
          }
          const again = await this.store.start(ref, entry.id, consumer, current.attempt, 0, this.budget.conversationTokens);
          if (again.result !== 'started') return this.notStarted(ref, entry, again);
          current = again;
        }
      }
    }
  }

  private async fail(ref: MessageRef, entry: PartitionEntry, current: Started, error: FailureReason, partial: Partial): Promise<RunResult> {
    const part: StoredAssistantPart = { ...partOf(partial), error };
    const deadLetter = {
      stream: entry.partition.incoming,
      entryId: entry.id,
      reason: `${error.code}: ${error.message}`,
      sessionId: ref.sessionId,
      messageId: ref.messageId,
      fields: ['content', current.user?.content ?? ''],
      at: new Date().toISOString(),
    };
    const finished = await this.store.finish(
      ref,
      entry.id,
      current.attempt,
      part,
      { type: 'chat.failed', payload: { ...ref, error } },
      deadLetter,
    );
    if (finished.result === 'failed') {
      this.metrics.deadLetters.inc();
      this.metrics.finished.inc({ outcome: 'failed', code: error.code });
      this.logger.warn(about(ref, `failed session=${ref.sessionId} message=${ref.messageId} code=${error.code}`, { code: error.code }));
    }
    return this.settled(ref, entry, finished, current.attempt);
  }

  /** What a finish answered, as a run result (the script acknowledged the entry unless fenced). */
  private async settled(ref: MessageRef, entry: PartitionEntry, finished: FinishOutcome, attempt: number): Promise<RunResult> {
    switch (finished.result) {
      case 'completed':
        this.logger.log(about(ref, `completed session=${ref.sessionId} message=${ref.messageId} attempt=${attempt}`, { attempt }));
        return 'done';
      case 'failed':
        return 'done';
      case 'cancelled':
        this.metrics.finished.inc({ outcome: 'cancelled', code: '' });
        this.logger.log(about(ref, `cancelled session=${ref.sessionId} message=${ref.messageId}`));
        return 'done';
      case 'fenced':
        this.logger.warn(about(ref, `attempt ${attempt} was taken over before it finished; its outcome is not written`));
        return 'left';
      case 'gone':
        // gone between the last emit and the finish: deleted (silent), or lost with Redis's data
        return this.gone(ref, entry);
      case 'ended':
        return 'done';
    }
  }

  private async notStarted(ref: MessageRef, entry: PartitionEntry, start: Exclude<StartOutcome, Started>): Promise<RunResult> {
    switch (start.result) {
      case 'gone':
        return this.gone(ref, entry);
      case 'cancelled':
        this.metrics.finished.inc({ outcome: 'cancelled', code: '' });
        return 'done';
      case 'ended':
        return 'done';
      case 'fenced':
        return 'left';
    }
  }

  /** The message is not in Redis: deleted (silent), or Redis lost its data (the session is told). */
  private async gone(ref: MessageRef, entry: PartitionEntry): Promise<RunResult> {
    const error = {
      code: 'message_lost',
      message: 'The assistant lost track of this message (its database restarted without its data). Please send it again.',
    };
    const lost = await this.store.lost(ref, entry.id, error);
    if (lost === 'announced') {
      this.metrics.finished.inc({ outcome: 'failed', code: 'message_lost' });
      this.logger.warn(about(ref, 'message gone from Redis without a delete: failed as message_lost'));
    }
    return 'done';
  }

  private recordCompletion(result: Extract<AttemptResult, { kind: 'completed' }>, ms: number): void {
    this.metrics.finished.inc({ outcome: 'completed', code: '' });
    this.metrics.generationTime.observe(ms / 1000);
    const streamingSeconds = result.streamingMs / 1000;
    if (result.usage.completionTokens > 0 && streamingSeconds > 0)
      this.metrics.tokensPerSecond.observe(result.usage.completionTokens / streamingSeconds);
  }
}

function partOf(partial: Partial): StoredAssistantPart {
  return { content: partial.content, createdAt: new Date().toISOString(), ...(partial.thinking ? { thinking: partial.thinking } : {}) };
}
