import { AppConfig } from '../config/app-config';
import { Usage } from '../event-bus/envelopes';
import { isRedisError } from '../event-bus/redis-errors';
import { MessageRef, MessageStore, ProgressEvent } from '../history/message-store';
import { StoredAssistantPart } from '../history/stored-message';
import { Metrics } from '../observability/metrics.service';
import { isCancelled } from './abort-reasons';
import { DeltaBatcher } from './delta-batcher';
import { GenerationError } from './generation-error';
import { AiProvider, GenerationRequest } from './providers/ai-provider';

/** A progress snapshot goes with a delta at most this often: a reloaded page shows the answer so far. */
const SNAPSHOT_EVERY_MS = 1000;
/** While no token comes for this long, clients are told the model is still being waited for. */
export const STATUS_INTERVAL_MS = 5000;

export interface Partial {
  content: string;
  thinking: string;
}

/**
 * How one attempt ended. `fenced`: a newer attempt owns the message (this worker was paused or cut
 * off); `gone`: the message is no longer in Redis; `shutdown`: the worker is stopping.
 */
export type AttemptResult =
  | { kind: 'completed'; content: string; thinking: string; usage: Usage; streamingMs: number }
  | { kind: 'error'; error: GenerationError; partial: Partial }
  | { kind: 'cancelled'; partial: Partial }
  | { kind: 'shutdown' }
  | { kind: 'fenced' }
  | { kind: 'gone' };

export interface AttemptDeps {
  provider: AiProvider;
  store: MessageStore;
  config: AppConfig;
  metrics: Metrics;
}

/**
 * One try against the provider: streams its chunks as `emit`s of this attempt (batched by
 * DELTA_COALESCE_MS), each refused in Redis once the attempt is stale, with a progress snapshot at
 * most once a second; says `chat.status` while no token comes. A Redis error is thrown (the worker
 * runs the message again once Redis answers); everything else is an AttemptResult.
 */
export class ProviderAttempt {
  private readonly controller = new AbortController();
  private stop: 'fenced' | 'gone' | 'cancelled' | null = null;
  private redisFailure: Error | null = null;
  private readonly partial: Partial = { content: '', thinking: '' };
  private readonly published: Partial = { content: '', thinking: '' };
  private snapshotAt = Date.now();
  private readonly createdAt = new Date().toISOString();

  constructor(
    private readonly deps: AttemptDeps,
    private readonly ref: MessageRef,
    private readonly attempt: number,
    private readonly signal: AbortSignal,
  ) {}

  async run(request: GenerationRequest): Promise<AttemptResult> {
    const { firstTokenTimeoutMs, totalTimeoutMs } = this.deps.config.ai;
    const started = Date.now();
    let firstTokenAt: number | null = null;
    const onOuterAbort = () => this.controller.abort();
    this.signal.addEventListener('abort', onOuterAbort, { once: true });
    if (this.signal.aborted) this.controller.abort();
    // The error is built only when a timer fires: most attempts never time out.
    const timedOut: { error: GenerationError | null } = { error: null };
    const expire = (makeError: () => GenerationError) => () => {
      timedOut.error = makeError();
      this.controller.abort();
    };
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
    let lastTokenAt = Date.now();
    const statusTimer = setInterval(() => {
      const quietMs = Date.now() - lastTokenAt;
      // A timer may fire a few ms early against Date.now() (it runs on the monotonic clock): without
      // the slack a silent model was reported only at the second interval (seen in CI: 10.1 s).
      if (quietMs < STATUS_INTERVAL_MS - 100) return;
      const detail =
        firstTokenAt === null
          ? `Waiting for the model to answer (${Math.round(quietMs / 1000)} s so far).`
          : `The model has been silent for ${Math.round(quietMs / 1000)} s.`;
      void this.write({ type: 'chat.status', payload: { ...this.ref, state: 'waiting_for_model', detail } });
    }, STATUS_INTERVAL_MS);
    const batcher = new DeltaBatcher((kind, delta) => this.publish(kind, delta), this.deps.config.worker.deltaCoalesceMs);
    let usage: Usage | null = null;
    try {
      for await (const chunk of this.deps.provider.stream(request, this.controller.signal)) {
        lastTokenAt = Date.now();
        if (firstTokenTimer) {
          clearTimeout(firstTokenTimer);
          firstTokenTimer = null;
        }
        if (firstTokenAt === null) {
          firstTokenAt = Date.now();
          this.deps.metrics.timeToFirstToken.observe((firstTokenAt - started) / 1000);
        }
        if (chunk.kind === 'done') {
          usage = chunk.usage;
          break;
        }
        if (chunk.kind === 'thinking') this.partial.thinking += chunk.text;
        else this.partial.content += chunk.text;
        batcher.push(chunk.kind, chunk.text);
      }
      if (this.controller.signal.aborted) {
        await batcher.discard();
        return this.interrupted(timedOut.error);
      }
      if (!usage) throw new GenerationError('stream_interrupted', 'The model stream ended without finishing.', true);
      await batcher.close();
      if (this.stop || this.redisFailure) return this.interrupted(null);
      return {
        kind: 'completed',
        content: this.partial.content,
        thinking: this.partial.thinking,
        usage,
        streamingMs: Date.now() - (firstTokenAt ?? started),
      };
    } catch (err) {
      await batcher.discard();
      if (this.stop || this.redisFailure || this.signal.aborted) return this.interrupted(null);
      if (timedOut.error) return { kind: 'error', error: timedOut.error, partial: this.partial };
      if (!(err instanceof GenerationError) && isRedisError(err)) throw err;
      return { kind: 'error', error: toGenerationError(err), partial: this.partial };
    } finally {
      if (firstTokenTimer) clearTimeout(firstTokenTimer);
      clearTimeout(totalTimer);
      clearInterval(statusTimer);
      this.signal.removeEventListener('abort', onOuterAbort);
    }
  }

  /** Why the stream stopped early, in order: Redis failed, Redis refused, the worker's signal, a timeout. */
  private interrupted(timeout: GenerationError | null): AttemptResult {
    if (this.redisFailure) throw this.redisFailure;
    if (this.stop === 'fenced' || this.stop === 'gone') return { kind: this.stop };
    if (this.stop === 'cancelled' || isCancelled(this.signal)) return { kind: 'cancelled', partial: this.published };
    if (this.signal.aborted) return { kind: 'shutdown' };
    if (timeout) return { kind: 'error', error: timeout, partial: this.partial };
    return {
      kind: 'error',
      error: new GenerationError('stream_interrupted', 'The model stream ended without finishing.', true),
      partial: this.partial,
    };
  }

  private async publish(kind: 'thinking' | 'content', delta: string): Promise<void> {
    if (this.stop || this.redisFailure) return;
    if (kind === 'thinking') this.published.thinking += delta;
    else this.published.content += delta;
    let snapshot: StoredAssistantPart | null = null;
    if (Date.now() - this.snapshotAt >= SNAPSHOT_EVERY_MS) {
      this.snapshotAt = Date.now();
      snapshot = {
        content: this.published.content,
        createdAt: this.createdAt,
        ...(this.published.thinking ? { thinking: this.published.thinking } : {}),
      };
    }
    await this.write(
      kind === 'thinking'
        ? { type: 'chat.thinking', payload: { ...this.ref, delta } }
        : { type: 'chat.delta', payload: { ...this.ref, delta } },
      snapshot,
    );
  }

  /** Writes an event of this attempt; a refusal or a Redis error stops the model request. */
  private async write(event: ProgressEvent, snapshot: StoredAssistantPart | null = null): Promise<void> {
    if (this.stop || this.redisFailure) return;
    try {
      const written = await this.deps.store.emit(this.ref, this.attempt, event, snapshot);
      if (written.result === 'emitted') return;
      this.stop = written.result === 'cancel_requested' ? 'cancelled' : written.result;
    } catch (err) {
      this.redisFailure = err instanceof Error ? err : new Error(String(err));
    }
    this.controller.abort();
  }
}

export function toGenerationError(err: unknown): GenerationError {
  if (err instanceof GenerationError) return err;
  return new GenerationError('internal_error', 'The assistant hit an internal error; please try again.', true, { cause: err });
}

export function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}
