import { BadRequestException, ConflictException, Injectable, Logger, NotFoundException, UnauthorizedException } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { ModelCatalog } from '../ai/model-catalog';
import { AppConfig } from '../config/app-config';
import { CancelSignals } from '../event-bus/cancel-signals';
import { DeadLetters } from '../event-bus/dead-letters';
import { ThinkLevel } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { SessionEventLog } from '../event-bus/session-event-log';
import { FIELD, KeyLayout } from '../event-bus/stream-names';
import { WorkerRegistry } from '../event-bus/worker-registry';
import { MessageRef, MessageStore } from '../history/message-store';
import { HistoryMessage, StoredUserPart } from '../history/stored-message';
import { countTokens, fixedPromptTokens, MESSAGE_FRAME_TOKENS } from '../history/token-count';
import { backlogFull, RetryLaterException, SendLimits } from '../limits/send-limits.service';
import { about } from '../observability/log-fields';
import { Metrics } from '../observability/metrics.service';

export interface SendInput {
  sessionId: string;
  content: string;
  clientMessageId?: string;
  think?: ThinkLevel;
  /** A model of GET /models; absent: the default model. */
  model?: string;
  /** The client's address, for the per-address rate limit. */
  address?: string | null;
}

type StoredUserPartWithTokens = NonNullable<Awaited<ReturnType<MessageStore['userPart']>>>;

/** Regenerate: the session's last message asked again (its text, unless edited). */
export type ReplaceInput = Omit<SendInput, 'content'> & { messageId: string };
export type EditInput = ReplaceInput & { content: string };

export interface SendResult {
  messageId: string;
  sessionId: string;
  status: 'queued';
  /** Regenerate and edit: the message this one replaced. */
  replaces?: string;
}

/** How soon a client whose session queue is full may try again: an answer takes seconds at least. */
const QUEUE_FULL_RETRY_SECONDS = 5;

/**
 * The command side of the chat. A send, a cancel and a delete are one script each (MessageStore,
 * docs/design.md): the script checks the state, changes it and writes the event in one step.
 */
@Injectable()
export class ChatService {
  private readonly logger = new Logger(ChatService.name);

  constructor(
    private readonly store: MessageStore,
    private readonly config: AppConfig,
    private readonly limits: SendLimits,
    private readonly eventLog: SessionEventLog,
    private readonly signals: CancelSignals,
    private readonly workers: WorkerRegistry,
    private readonly deadLetters: DeadLetters,
    private readonly redis: RedisConnections,
    private readonly keys: KeyLayout,
    private readonly metrics: Metrics,
    private readonly models: ModelCatalog,
  ) {
    this.fixedPromptTokens = fixedPromptTokens(config.ai.systemPrompt);
  }

  /** The frame and system prompt every prompt carries. */
  private readonly fixedPromptTokens: number;

  /**
   * One script stores the user part, queues the message (for the workers when the session is idle,
   * behind its earlier messages otherwise) and writes chat.user_message, or refuses it as a whole.
   *
   * A repeat of an accepted clientMessageId is answered with the first messageId before the limits
   * (one HGET, only when a clientMessageId is given): it queues nothing, so it is neither counted
   * nor refused. A repeat racing its first send past that lookup is caught by the send script.
   */
  async send(input: SendInput): Promise<SendResult> {
    return this.submit(input, null, null);
  }

  /**
   * Regenerate: the session's last message, ended, is asked again as a new message that replaces it
   * (question and answer) in the history; `think` and `model` default to the replaced one's.
   * The send script checks that it is still the last and has ended (docs/design.md).
   */
  async regenerate(input: ReplaceInput): Promise<SendResult> {
    const found = await this.replaced(input);
    if ('repeat' in found) return found.repeat;
    const { user, tokens } = found.old;
    const think = input.think ?? user.think;
    const model = input.model ?? user.model;
    const again: SendInput = { ...input, content: user.content, ...(think ? { think } : {}), ...(model ? { model } : {}) };
    return this.submit(again, input.messageId, tokens);
  }

  /** Edit: the session's last message, ended, replaced by new text (its answer goes with it). */
  async edit(input: EditInput): Promise<SendResult> {
    const found = await this.replaced(input);
    if ('repeat' in found) return found.repeat;
    return this.submit(input, input.messageId, null);
  }

  /** The first answer to an accepted clientMessageId (one HGET, only when one is given), else null. */
  private async repeated(input: Pick<SendInput, 'sessionId' | 'clientMessageId'>, replaces: string | null): Promise<SendResult | null> {
    const { sessionId, clientMessageId } = input;
    if (!clientMessageId) return null;
    const existing = await this.redis.commands.hget(this.keys.session(sessionId).hash, FIELD.clientId(clientMessageId));
    return existing ? { messageId: existing, sessionId, status: 'queued', ...(replaces ? { replaces } : {}) } : null;
  }

  /**
   * The message to replace, or the answer to a repeat of an accepted regenerate/edit: a repeat finds
   * the message gone, so its clientMessageId is looked up first, and again when the message vanished
   * between the two reads (the first request replaced it meanwhile). 404 when it never existed.
   */
  private async replaced(input: ReplaceInput): Promise<{ old: StoredUserPartWithTokens } | { repeat: SendResult }> {
    const repeat = await this.repeated(input, input.messageId);
    if (repeat) return { repeat };
    const old = await this.store.userPart({ sessionId: input.sessionId, messageId: input.messageId });
    if (old) return { old };
    const late = await this.repeated(input, input.messageId);
    if (late) return { repeat: late };
    throw new NotFoundException(`no message ${input.messageId} in this session`);
  }

  /**
   * One script stores the user part, queues the message (for the workers when the session is idle,
   * behind its earlier messages otherwise) and writes chat.user_message, or refuses it as a whole.
   *
   * A repeat of an accepted clientMessageId is answered with the first messageId before the limits
   * (one HGET, only when a clientMessageId is given): it queues nothing, so it is neither counted
   * nor refused. A repeat racing its first send past that lookup is caught by the send script.
   */
  private async submit(input: SendInput, replaces: string | null, knownTokens: number | null): Promise<SendResult> {
    const max = this.config.limits.maxMessageChars;
    if (input.content.length > max) {
      throw new BadRequestException(`content must be at most ${max} characters (got ${input.content.length})`);
    }
    const { sessionId, clientMessageId } = input;
    const repeat = await this.repeated(input, replaces);
    if (repeat) return repeat;
    const tokens = knownTokens ?? this.fitsWindow(input.content);
    if (input.model) await this.models.check(input.model);
    await this.limits.check(sessionId, input.address ?? null);

    const ref: MessageRef = { sessionId, messageId: randomUUID() };
    const user: StoredUserPart = {
      content: input.content,
      createdAt: new Date().toISOString(),
      ...(input.think ? { think: input.think } : {}),
      ...(input.model && input.model !== this.config.ai.model ? { model: input.model } : {}),
    };
    const outcome = await this.store.send(ref, clientMessageId ?? null, user, { tokens, replaces });
    switch (outcome.result) {
      case 'queued':
        this.metrics.accepted.inc();
        this.logger.debug(
          about(ref, replaces ? `queued, replacing ${replaces}` : 'queued', { chars: input.content.length, ahead: outcome.ahead }),
        );
        return { messageId: ref.messageId, sessionId, status: 'queued', ...(replaces ? { replaces } : {}) };
      case 'duplicate':
        return { messageId: outcome.messageId, sessionId, status: 'queued', ...(replaces ? { replaces } : {}) };
      case 'revoked':
        // A socket (or a request) authenticated just before the session was deleted.
        throw new UnauthorizedException('invalid token: its session was deleted');
      case 'backlog_full':
        throw backlogFull(outcome.backlog);
      case 'queue_full':
        throw new RetryLaterException(
          429,
          `this chat already has ${outcome.waiting} messages waiting for an answer (MAX_QUEUED_PER_SESSION=${this.config.limits.maxQueuedPerSession}); ` +
            'wait for an answer or cancel a message',
          QUEUE_FULL_RETRY_SECONDS,
        );
      case 'not_last':
        throw new ConflictException(
          `message ${replaces} is no longer the last of this chat: only the last message can be regenerated or edited`,
        );
      case 'not_ended':
        throw new ConflictException(`message ${replaces} has not been answered yet: wait for its answer or cancel it first`);
    }
  }

  /**
   * The message's tokens, or 400 when it cannot fit the model's window even alone (with the system
   * prompt and the room kept for the answer): it is refused here rather than cut by the model.
   */
  private fitsWindow(content: string): number {
    const tokens = countTokens(content);
    const { windowTokens, reserveTokens } = this.config.context;
    const needed = this.fixedPromptTokens + tokens + MESSAGE_FRAME_TOKENS + reserveTokens;
    if (needed > windowTokens) {
      const room = Math.max(0, windowTokens - reserveTokens - this.fixedPromptTokens - MESSAGE_FRAME_TOKENS);
      throw new BadRequestException(
        `content is about ${tokens} tokens, and the model's context window takes at most ${room} for a message ` +
          `(OLLAMA_NUM_CTX=${windowTokens}, less CONTEXT_RESERVE_TOKENS=${reserveTokens} for the answer and the system prompt); shorten it or split it`,
      );
    }
    return tokens;
  }

  /**
   * Stops a message: a waiting or queued one ends at once (cancelled by the script, which starts the
   * session's next message); a running one gets a cancel mark and its worker a signal, and ends when
   * the worker stops it (keeping the partial answer), or at once here if that worker is not alive.
   * A message that already ended stays as it is. Unknown messages are a 404.
   */
  async cancel(sessionId: string, messageId: string): Promise<void> {
    const ref: MessageRef = { sessionId, messageId };
    const outcome = await this.store.cancel(ref, false);
    let result: string = outcome.result;
    if (outcome.result === 'gone') throw new NotFoundException(`no message ${messageId} in this session`);
    if (outcome.result === 'cancelled') this.metrics.finished.inc({ outcome: 'cancelled', code: '' });
    if (outcome.result === 'signal') {
      const [, alive] = await Promise.all([this.signals.send(ref), this.workers.isAlive(outcome.owner)]);
      if (!alive) {
        // Its worker died (or stops): nobody would act on the signal. The message ends now, with its
        // last progress snapshot, and a late write of that worker is fenced out.
        const forced = await this.store.cancel(ref, true);
        result = `owner ${outcome.owner || '(none)'} not alive: ${forced.result}`;
        if (forced.result === 'cancelled') this.metrics.finished.inc({ outcome: 'cancelled', code: '' });
      }
    }
    this.logger.log(about(ref, `cancel requested: ${result}`));
  }

  /**
   * The conversation plus the eventId to resume the live events from. That id is read before the
   * history (so nothing falls between the two), or is the point a streaming answer's partial content
   * reaches. Events after it may repeat messages listed here: clients update those by messageId.
   */
  async getHistory(sessionId: string): Promise<{ messages: HistoryMessage[]; lastEventId: string | null; title?: string }> {
    const newest = await this.eventLog.newestId(sessionId);
    const { messages, title } = await this.store.conversation(sessionId);
    const streaming = messages.find((m) => m.role === 'assistant' && m.status === 'streaming' && m.resumeFrom);
    return { messages, lastEventId: streaming?.resumeFrom ?? newest, ...(title ? { title } : {}) };
  }

  /**
   * Deletes the conversation and its text wherever the app keeps it. One script ends every message
   * not ended yet with chat.cancelled (the only thing of them a resuming client still gets), deletes
   * the session's keys, its log and its events in the partition's stream, and, when
   * `revokeTokensForSeconds` > 0, revokes the session's tokens. The workers of messages that were
   * streaming are told to stop (their later writes find nothing and stay silent), and the
   * session's recent dead letters go too.
   */
  async clear(sessionId: string, revokeTokensForSeconds = 0): Promise<void> {
    const { eventsDeleted, streaming } = await this.store.clear(sessionId, revokeTokensForSeconds);
    await Promise.all(streaming.map((messageId) => this.signals.send({ sessionId, messageId })));
    const deadLetters = await this.deadLetters.deleteOf(sessionId);
    this.logger.log({
      msg: `cleared: ${eventsDeleted} event(s), ${deadLetters} dead letter(s), ${streaming.length} running message(s) stopped`,
      sessionId,
    });
  }
}
