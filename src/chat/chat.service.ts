import { BadRequestException, Injectable, Logger, NotFoundException, UnauthorizedException } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
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
import { backlogFull, RetryLaterException, SendLimits } from '../limits/send-limits.service';
import { about } from '../observability/log-fields';
import { Metrics } from '../observability/metrics.service';

export interface SendInput {
  sessionId: string;
  content: string;
  clientMessageId?: string;
  think?: ThinkLevel;
  /** The client's address, for the per-address rate limit. */
  address?: string | null;
}

export interface SendResult {
  messageId: string;
  sessionId: string;
  status: 'queued';
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
  ) {}

  /**
   * One script stores the user part, queues the message (for the workers when the session is idle,
   * behind its earlier messages otherwise) and writes chat.user_message, or refuses it as a whole.
   *
   * A repeat of an accepted clientMessageId is answered with the first messageId before the limits
   * (one HGET, only when a clientMessageId is given): it queues nothing, so it is neither counted
   * nor refused. A repeat racing its first send past that lookup is caught by the send script.
   */
  async send(input: SendInput): Promise<SendResult> {
    const max = this.config.limits.maxMessageChars;
    if (input.content.length > max) {
      throw new BadRequestException(`content must be at most ${max} characters (got ${input.content.length})`);
    }
    const { sessionId, clientMessageId } = input;
    if (clientMessageId) {
      const existing = await this.redis.commands.hget(this.keys.session(sessionId).hash, FIELD.clientId(clientMessageId));
      if (existing) return { messageId: existing, sessionId, status: 'queued' };
    }
    await this.limits.check(sessionId, input.address ?? null);

    const ref: MessageRef = { sessionId, messageId: randomUUID() };
    const user: StoredUserPart = {
      content: input.content,
      createdAt: new Date().toISOString(),
      ...(input.think ? { think: input.think } : {}),
    };
    const outcome = await this.store.send(ref, clientMessageId ?? null, user);
    switch (outcome.result) {
      case 'queued':
        this.metrics.accepted.inc();
        this.logger.debug(about(ref, 'queued', { chars: input.content.length, ahead: outcome.ahead }));
        return { messageId: ref.messageId, sessionId, status: 'queued' };
      case 'duplicate':
        return { messageId: outcome.messageId, sessionId, status: 'queued' };
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
    }
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
  async getHistory(sessionId: string): Promise<{ messages: HistoryMessage[]; lastEventId: string | null }> {
    const newest = await this.eventLog.newestId(sessionId);
    const messages = await this.store.history(sessionId);
    const streaming = messages.find((m) => m.role === 'assistant' && m.status === 'streaming' && m.resumeFrom);
    return { messages, lastEventId: streaming?.resumeFrom ?? newest };
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
