import { Inject, Injectable, Logger } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { FailureReason, GenerateCommand, Usage } from '../event-bus/envelopes';
import { EventBus } from '../event-bus/event-bus.service';
import { sleep as delay } from '../event-bus/stream-tail';
import { ChatHistoryStore, isFinal, TurnState } from '../history/chat-history.store';
import { ContextMessage, FinalStatus, StoredAssistantPart } from '../history/stored-message';
import { DeltaBatcher } from './delta-batcher';
import { isCancelled } from './abort-reasons';
import { GenerationError } from './generation-error';
import { GenerationSlots } from './generation-slots';
import { ProgressSnapshots } from './progress-snapshots';
import { about } from '../observability/log-fields';
import { Metrics } from '../observability/metrics.service';
import { AI_PROVIDER, AiProvider, buildMessages, GenerationRequest } from './providers/ai-provider';

/** `finished`: an outcome was published and stored, ack it. `abandoned`: leave it for another worker. */
export type RunResult = 'finished' | 'abandoned';

/** Which stream entry is being processed, and how many times it has been delivered. */
export interface Delivery {
  entryId: string;
  attempt: number;
}

type MessageRef = { sessionId: string; messageId: string };
type PartialReply = { content: string; thinking: string };
const EMPTY: PartialReply = Object.freeze({ content: '', thinking: '' });

const ANNOUNCE_GRACE_MS = 3000;
const ANNOUNCE_POLL_MS = 50;
const HISTORY_ENTRY_WAIT_MS = 10_000;
const HISTORY_ENTRY_BACKOFF_MS = [0, 1, 2, 4, 8, 16, 20];
const TURN_POLL_MS = 50;

/** Transient provider failures are retried this many times, with this backoff. */
const MAX_RETRIES = 2;
const RETRY_BACKOFF_MS = [500, 2000];

interface AttemptOutcome {
  content: string;
  thinking: string;
  usage: Usage;
  /** From the first token to the end. */
  streamingMs: number;
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
    private readonly metrics: Metrics,
  ) {}

  async run(command: GenerateCommand, delivery: Delivery, signal: AbortSignal, slots: GenerationSlots): Promise<RunResult> {
    const ref = { sessionId: command.sessionId, messageId: command.messageId };
    const slot: { release: (() => void) | null } = { release: null };
    // With a slot free right now, a read of the turn may also start the message (one round trip less
    // before the model request). Otherwise the slot is taken only once it is the message's turn, and
    // none is held between reads.
    const read = async (): Promise<TurnState> => {
      slot.release = slots.tryAcquire();
      const state = await this.history.turn(ref.sessionId, ref.messageId, {
        start: slot.release !== null && !signal.aborted,
        announcedOnly: true,
      });
      if (state.started === null) {
        slot.release?.();
        slot.release = null;
      }
      return state;
    };
    try {
      const state = await this.untilAnnounced(signal, await read(), read);
      if (state.started === 'started') {
        // Stopped while the read ran: no chat.started for an answer that will not be given.
        if (signal.aborted) return await this.stopped(ref, signal, EMPTY);
        return await this.generate(command, state.context, delivery, signal, 'started');
      }
      if (state.started === 'cancel-requested') return await this.cancelled(ref, EMPTY);
      if (signal.aborted) return await this.stopped(ref, signal, EMPTY);
      if (state.status === null) {
        this.logger.log(about(ref, 'not in the history (cleared, or its send failed): skipping'));
        return 'finished';
      }
      // A redelivery of a message that already ended (its ack or final event was lost).
      if (isFinal(state.status)) return await this.announceStored(ref);
      const context = state.ready ? state.context : await this.waitForTurn(ref, signal);
      if (!context) return await this.stopped(ref, signal, EMPTY);
      slot.release = await slots.acquire(signal);
      if (!slot.release) return await this.stopped(ref, signal, EMPTY);
      return await this.generate(command, context, delivery, signal, 'not-started');
    } finally {
      slot.release?.();
    }
  }

  /**
   * The API queues the command, then writes the history entry, then announces chat.user_message
   * and marks the entry so. A fast worker reads the turn again until that mark is there (so
   * chat.user_message always comes before chat.started), or for the entry alone once the wait is
   * over (the API died in between). Each read may start the message, like the first: one round trip
   * instead of three (wait, read, start), and under load many messages find the mark missing at
   * first (bench/NOTES.md). Until the mark is there a read looks at the message's own two fields
   * only (announcedOnly), not the whole session.
   */
  private async untilAnnounced(signal: AbortSignal, first: TurnState, read: () => Promise<TurnState>): Promise<TurnState> {
    const deadline = Date.now() + HISTORY_ENTRY_WAIT_MS;
    const enough = (state: TurnState) =>
      state.started !== null ||
      (state.status !== null && (state.userAnnounced || isFinal(state.status))) ||
      signal.aborted ||
      Date.now() > deadline;
    let state = first;
    for (let poll = 0; !enough(state); poll++) {
      // The API's mark is normally already on its way (it is written as soon as the command is
      // queued): look again at once, then back off. A timer's shortest wait is a millisecond.
      const ms = HISTORY_ENTRY_BACKOFF_MS[Math.min(poll, HISTORY_ENTRY_BACKOFF_MS.length - 1)];
      if (ms === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      else await sleep(ms, signal);
      if (signal.aborted) break;
      state = await read();
    }
    return state;
  }

  /**
   * Messages of one session are answered one at a time, in the order they were accepted, so each
   * sees the earlier answers. Returns the context to send, or null when aborted while waiting.
   */
  private async waitForTurn(ref: MessageRef, signal: AbortSignal): Promise<ContextMessage[] | null> {
    // An earlier message ends within its longest possible life (every delivery timing out); past
    // that it is stuck for a reason of its own and must not hold the session hostage.
    const { claimIdleMs, maxDeliveries } = this.config.worker;
    const deadline = Date.now() + this.config.ai.totalTimeoutMs + claimIdleMs * (maxDeliveries + 1);
    let logged = false;
    while (!signal.aborted) {
      const { ready, context } = await this.history.turn(ref.sessionId, ref.messageId);
      if (ready !== false) return context;
      if (Date.now() > deadline) {
        this.logger.warn(about(ref, 'stops waiting for earlier messages of its session'));
        return context;
      }
      if (!logged) this.logger.debug(about(ref, 'waits for earlier messages of its session'));
      logged = true;
      await sleep(TURN_POLL_MS, signal);
    }
    return null;
  }

  /** `started`: the turn read has already marked the message streaming. */
  private async generate(
    command: GenerateCommand,
    context: ContextMessage[],
    delivery: Delivery,
    signal: AbortSignal,
    state: 'started' | 'not-started',
  ): Promise<RunResult> {
    const ref = { sessionId: command.sessionId, messageId: command.messageId };
    const request: GenerationRequest = {
      messages: buildMessages(this.config.ai.systemPrompt, context, command.content),
      ...(command.think ? { think: command.think } : {}),
    };
    if (state === 'not-started') {
      const marked = await this.history.markStreaming(ref.sessionId, ref.messageId);
      if (marked === 'cancel-requested') return this.cancelled(ref, EMPTY);
      if (marked === 'already-ended') return this.announceStored(ref); // cancelled while queued
      if (marked === 'gone') return 'finished';
    }

    const started = Date.now();
    let attempt = delivery.attempt;
    for (let retry = 0; ; retry++) {
      // Only the provider attempt is retried. A Redis error while publishing or storing escapes:
      // the command stays unacknowledged and its redelivery repairs what is missing.
      // chat.started goes out with the model request, not a round trip before it: the deltas are
      // written after it on the same connection, and none is published unless it was (see attempt).
      const startedEvent = this.bus.publishEvent({ type: 'chat.started', payload: { ...ref, attempt } });
      const startFailure = startedEvent.then(
        () => null,
        (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
      );
      const progress = new ProgressSnapshots(this.history, ref, startedEvent);
      progress.begin();
      const partial = { content: '', thinking: '' };
      let outcome: AttemptOutcome | null;
      try {
        outcome = await this.attempt(ref, request, signal, partial, progress, startedEvent);
        await startedEvent;
      } catch (err) {
        const redisError = await startFailure;
        if (redisError) throw redisError;
        if (signal.aborted) return this.stopped(ref, signal, partial);
        const failure = toGenerationError(err);
        if (failure.transient && retry < MAX_RETRIES) {
          this.logger.warn(
            about(ref, `attempt ${attempt} failed (${failure.code}), retrying: ${failure.message}`, { attempt, code: failure.code }),
          );
          await sleep(RETRY_BACKOFF_MS[retry] ?? 2000, signal);
          if (signal.aborted) return this.stopped(ref, signal, EMPTY);
          attempt++;
          continue;
        }
        await this.fail(ref, failure.toReason(), partial, command, delivery);
        return 'finished';
      }
      if (outcome === null) return this.stopped(ref, signal, partial);
      const part: StoredAssistantPart = {
        content: outcome.content,
        createdAt: new Date().toISOString(),
        ...(outcome.thinking ? { thinking: outcome.thinking } : {}),
        usage: outcome.usage,
      };
      const stored = await this.history.finish(ref.sessionId, ref.messageId, 'completed', part);
      // Announce whatever outcome stands: this one, or a cancel that won the race.
      if (stored === 'applied') await this.announce(ref, 'completed', part);
      else if (stored === 'applied-as-cancelled') await this.announce(ref, 'cancelled', part);
      else if (stored === 'already-ended') await this.announceStored(ref);
      const ms = Date.now() - started;
      if (stored === 'applied') this.recordCompletion(outcome, ms);
      if (stored === 'applied-as-cancelled') {
        this.metrics.finished.inc({ outcome: 'cancelled', code: '' });
        this.logger.log(about(ref, 'completed after a cancel whose signal was missed: stored as cancelled'));
      }
      this.logger.log(
        about(ref, `completed session=${ref.sessionId} message=${ref.messageId} attempt=${attempt}`, {
          attempt,
          completionTokens: outcome.usage.completionTokens,
          ms,
        }),
      );
      return 'finished';
    }
  }

  private recordCompletion(outcome: AttemptOutcome, ms: number): void {
    this.metrics.finished.inc({ outcome: 'completed', code: '' });
    this.metrics.generationTime.observe(ms / 1000);
    const streamingSeconds = outcome.streamingMs / 1000;
    if (outcome.usage.completionTokens > 0 && streamingSeconds > 0) {
      this.metrics.tokensPerSecond.observe(outcome.usage.completionTokens / streamingSeconds);
    }
  }

  /** The signal fired: a cancel ends the message (keeping the partial answer); a shutdown abandons it. */
  private stopped(ref: MessageRef, signal: AbortSignal, partial: PartialReply): Promise<RunResult> {
    return isCancelled(signal) ? this.cancelled(ref, partial) : Promise.resolve('abandoned');
  }

  /** Stores the cancel with the partial answer, marked cancelled, and announces chat.cancelled. */
  private async cancelled(ref: MessageRef, partial: PartialReply): Promise<RunResult> {
    const part: StoredAssistantPart = {
      content: partial.content,
      createdAt: new Date().toISOString(),
      ...(partial.thinking ? { thinking: partial.thinking } : {}),
    };
    const stored = await this.history.finish(ref.sessionId, ref.messageId, 'cancelled', part);
    // Whoever stores an outcome announces it: a cancel of a queued message was stored (and is
    // announced) by the API; a cleared conversation was announced by the clear. An outcome another
    // worker stored is announced here if that worker did not get to it.
    if (stored === 'already-ended') return this.announceStored(ref);
    if (stored !== 'applied') return 'finished';
    this.metrics.finished.inc({ outcome: 'cancelled', code: '' });
    this.logger.log(about(ref, `cancelled session=${ref.sessionId} message=${ref.messageId}`, { keptChars: partial.content.length }));
    return this.announce(ref, 'cancelled', part);
  }

  /**
   * Publishes the final event of an ended message from what the history stored, unless it already
   * went out. The outcome is stored first and announced second, so a crash (or Redis outage) in
   * between is repaired by the redelivery: the event is published then.
   */
  private async announceStored(ref: MessageRef): Promise<RunResult> {
    let outcome = await this.history.outcome(ref.sessionId, ref.messageId);
    // An outcome stored moments ago is most likely being announced by whoever stored it (the API
    // cancelling a queued message as this worker picked it up, a worker finishing): leave it that
    // moment, so the final event goes out once. Past it, the storer is presumed gone.
    const deadline = Date.now() + ANNOUNCE_GRACE_MS;
    while (outcome && !outcome.announced && Date.now() < deadline && storedWithin(outcome.part, ANNOUNCE_GRACE_MS)) {
      await delay(ANNOUNCE_POLL_MS);
      outcome = await this.history.outcome(ref.sessionId, ref.messageId);
    }
    if (!outcome || outcome.announced) return 'finished';
    return this.announce(ref, outcome.status, outcome.part ?? { content: '', createdAt: new Date().toISOString() });
  }

  /** Publishes the final event of an outcome this worker has just stored (no need to read it back). */
  private async announce(ref: MessageRef, status: FinalStatus, part: StoredAssistantPart): Promise<RunResult> {
    let eventId: string;
    if (status === 'completed') {
      eventId = await this.bus.publishEvent({
        type: 'chat.completed',
        payload: {
          ...ref,
          content: part.content,
          ...(part.thinking ? { thinking: part.thinking } : {}),
          usage: part.usage ?? { promptTokens: 0, completionTokens: 0 },
        },
      });
    } else if (status === 'failed') {
      const error = part.error ?? { code: 'internal_error', message: 'The assistant could not answer this message.' };
      eventId = await this.bus.publishEvent({ type: 'chat.failed', payload: { ...ref, error } });
    } else {
      eventId = await this.bus.publishEvent({ type: 'chat.cancelled', payload: ref });
    }
    await this.history.markAnnounced(ref.sessionId, ref.messageId, eventId);
    return 'finished';
  }

  /** Ends a message that was delivered too often without an outcome (it keeps crashing workers). */
  async giveUp(command: GenerateCommand, delivery: Delivery): Promise<RunResult> {
    const ref = { sessionId: command.sessionId, messageId: command.messageId };
    const status = await this.history.getStatus(ref.sessionId, ref.messageId);
    if (status === null) return 'finished';
    if (isFinal(status)) return this.announceStored(ref);
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
    progress: ProgressSnapshots,
    startedEvent: Promise<string>,
  ): Promise<AttemptOutcome | null> {
    const controller = new AbortController();
    const attemptStart = Date.now();
    let firstTokenAt: number | null = null;
    const onOuterAbort = () => controller.abort();
    signal.addEventListener('abort', onOuterAbort, { once: true });
    if (signal.aborted) controller.abort(); // fired before the listener was there
    // No answer without its chat.started: the caller rethrows that Redis error.
    startedEvent.catch(() => controller.abort());
    // Set from the timers' callbacks: a holder, so the check after the loop sees the assignment.
    const timedOut: { error: GenerationError | null } = { error: null };
    // The error is built only when the timer fires: most attempts never time out, and an Error
    // with its stack trace per attempt showed in the worker's profile.
    const expire = (makeError: () => GenerationError) => () => {
      timedOut.error = makeError();
      controller.abort();
    };
    const { firstTokenTimeoutMs, totalTimeoutMs } = this.config.ai;
    let firstTokenTimer: NodeJS.Timeout | null = setTimeout(
      expire(
        () =>
          new GenerationError(
            'first_token_timeout',
            `The model sent nothing for ${seconds(firstTokenTimeoutMs)} (it may still be loading); try again.`,
            true,
          ),
      ),
      firstTokenTimeoutMs,
    );
    const totalTimer = setTimeout(
      expire(
        () => new GenerationError('generation_timeout', `The answer took longer than ${seconds(totalTimeoutMs)} and was stopped.`, false),
      ),
      totalTimeoutMs,
    );
    const batcher = new DeltaBatcher(async (kind, delta) => {
      await startedEvent;
      const eventId = await this.bus.publishEvent(
        kind === 'thinking' ? { type: 'chat.thinking', payload: { ...ref, delta } } : { type: 'chat.delta', payload: { ...ref, delta } },
      );
      await progress.published(kind, delta, eventId);
    }, this.config.worker.deltaCoalesceMs);
    let usage: Usage | null = null;
    try {
      for await (const chunk of this.provider.stream(request, controller.signal)) {
        if (firstTokenTimer) {
          clearTimeout(firstTokenTimer);
          firstTokenTimer = null;
        }
        if (firstTokenAt === null) {
          firstTokenAt = Date.now();
          this.metrics.timeToFirstToken.observe((firstTokenAt - attemptStart) / 1000);
        }
        if (chunk.kind === 'done') {
          usage = chunk.usage;
          break;
        }
        if (chunk.kind === 'thinking') partial.thinking += chunk.text;
        else partial.content += chunk.text;
        batcher.push(chunk.kind, chunk.text);
      }
      if (timedOut.error) throw timedOut.error;
      if (signal.aborted) {
        await batcher.discard();
        return null;
      }
      if (!usage) throw new GenerationError('stream_interrupted', 'The model stream ended without finishing.', true);
      await batcher.close();
      await progress.settled();
      return { content: partial.content, thinking: partial.thinking, usage, streamingMs: Date.now() - (firstTokenAt ?? attemptStart) };
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
    ref: MessageRef,
    error: FailureReason,
    partial: { content: string; thinking: string },
    command: GenerateCommand,
    delivery: Delivery,
  ): Promise<void> {
    const part: StoredAssistantPart = {
      content: partial.content,
      createdAt: new Date().toISOString(),
      ...(partial.thinking ? { thinking: partial.thinking } : {}),
      error,
    };
    const stored = await this.history.finish(ref.sessionId, ref.messageId, 'failed', part);
    if (stored === 'gone') return; // cleared meanwhile: the clear announced it
    if (stored === 'already-ended') {
      await this.announceStored(ref); // a cancel won the race
      return;
    }
    await this.bus.deadLetter({
      stream: 'chat:incoming',
      entryId: delivery.entryId,
      reason: `${error.code}: ${error.message}`,
      sessionId: ref.sessionId,
      messageId: ref.messageId,
      fields: ['command', JSON.stringify(command)],
    });
    this.metrics.deadLetters.inc();
    this.metrics.finished.inc({ outcome: 'failed', code: error.code });
    await this.announce(ref, 'failed', part);
    this.logger.warn(about(ref, `failed session=${ref.sessionId} message=${ref.messageId} code=${error.code}`, { code: error.code }));
  }
}

function storedWithin(part: StoredAssistantPart | null, ms: number): boolean {
  const at = part ? Date.parse(part.createdAt) : NaN;
  return Number.isFinite(at) && Date.now() - at < ms;
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
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
