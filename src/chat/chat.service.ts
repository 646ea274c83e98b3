import {
  BadRequestException,
  Injectable,
  Logger,
  NotFoundException,
  ServiceUnavailableException,
  UnauthorizedException,
} from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { AppConfig } from '../config/app-config';
import { allWritten } from '../event-bus/all-written';
import { ThinkLevel } from '../event-bus/envelopes';
import { EventBus } from '../event-bus/event-bus.service';
import { SessionEventLog } from '../event-bus/session-event-log';
import { ChatHistoryStore } from '../history/chat-history.store';
import { HistoryMessage } from '../history/stored-message';
import { backlogFull, SendLimits } from '../limits/send-limits.service';
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

/**
 * The command side of the chat: a send is stored in the history, queued for the workers as a
 * chat.generate command, and announced to the session's other tabs as chat.user_message.
 */
@Injectable()
export class ChatService {
  private readonly logger = new Logger(ChatService.name);

  constructor(
    private readonly bus: EventBus,
    private readonly history: ChatHistoryStore,
    private readonly config: AppConfig,
    private readonly limits: SendLimits,
    private readonly eventLog: SessionEventLog,
    private readonly metrics: Metrics,
  ) {}

  async send(input: SendInput): Promise<SendResult> {
    const max = this.config.limits.maxMessageChars;
    if (input.content.length > max) {
      throw new BadRequestException(`content must be at most ${max} characters (got ${input.content.length})`);
    }
    const { sessionId } = input;
    const messageId = randomUUID();
    if (input.clientMessageId) {
      // A repeat of an accepted send is answered before the limits: it queues nothing.
      const existing = await this.claimClientMessageId(sessionId, input.clientMessageId, messageId);
      if (existing) return { messageId: existing, sessionId, status: 'queued' };
    }
    try {
      await this.limits.check(sessionId, input.address ?? null);
      await this.enqueue(sessionId, messageId, input);
    } catch (err) {
      // Not accepted: free the clientMessageId so the client's retry is queued anew, not answered
      // with a dead id.
      if (input.clientMessageId) await this.history.unbindClientMessageId(sessionId, input.clientMessageId).catch(() => undefined);
      throw err;
    }
    this.metrics.accepted.inc();
    this.logger.debug(about({ sessionId, messageId }, 'queued', { chars: input.content.length }));
    return { messageId, sessionId, status: 'queued' };
  }

  /**
   * Order matters. The command goes first, so a history entry always has a command behind it and a
   * later message never waits on an earlier one that was never queued. The history entry comes
   * before chat.user_message, so a history read never misses a message whose event it resumes
   * after. The worker waits for the last mark, so chat.user_message precedes chat.started. If a
   * step fails the send is refused (503), the entry is taken back and the worker skips the command.
   * The command's XADD also refuses (503, like the early check in SendLimits) when chat:incoming
   * holds MAX_BACKLOG commands: checked and added in one script, so concurrent sends cannot
   * overshoot; the entry written beside it is then taken back like after any failure.
   *
   * The writes go out in two round trips of two, not four: command and entry together, then event
   * and mark together. Each pair shares the one command connection, and Redis runs a connection's
   * commands in the order sent. The pairs stay apart so that nothing is announced before the
   * message is really queued (a refused send leaves no chat.user_message behind), and so that a
   * script Redis has to be sent again (NOSCRIPT, after a restart) cannot fall behind the next pair.
   * On a Redis Cluster the streams and the session's keys live on different nodes, where only
   * awaiting each write keeps this order: the place to change when Cluster support comes.
   */
  private async enqueue(sessionId: string, messageId: string, input: SendInput): Promise<void> {
    const createdAt = new Date().toISOString();
    const think = input.think ? { think: input.think } : {};
    const command = { type: 'chat.generate' as const, payload: { sessionId, messageId, content: input.content, createdAt, ...think } };
    await this.allOrTakeBack(sessionId, messageId, [
      this.bus.publishCommand(command).then((enqueued) => {
        if (!enqueued.queued) throw backlogFull(enqueued.backlog);
      }),
      this.history.appendUserMessage(sessionId, messageId, { content: input.content, createdAt, ...think }).then((appended) => {
        // A socket (or a request) authenticated just before the session was deleted.
        if (appended === 'revoked') throw new UnauthorizedException('invalid token: its session was deleted');
      }),
    ]);
    await this.allOrTakeBack(sessionId, messageId, [
      this.bus.publishEvent({ type: 'chat.user_message', payload: { sessionId, messageId, content: input.content, createdAt } }),
      this.history.markUserAnnounced(sessionId, messageId),
    ]);
  }

  /** Waits for every write; if one failed, takes the history entry back and throws its error. */
  private async allOrTakeBack(sessionId: string, messageId: string, writes: Promise<unknown>[]): Promise<void> {
    try {
      await allWritten(writes);
    } catch (err) {
      // The worker skips a command whose history entry is gone. Not awaited: the 503 must not wait
      // for this cleanup on a hung Redis (the contract's "within 2 s"); it goes out on the same
      // connection before anything issued after it, such as the clientMessageId's release.
      void this.history.remove(sessionId, messageId).catch(() => undefined);
      throw err;
    }
  }

  /**
   * Binds clientMessageId to a new messageId, or returns the messageId of the earlier send with it.
   * A repeat that races the first send answers only once that send is really queued (its history
   * entry exists); if the first send fails meanwhile, the repeat takes its place.
   */
  private async claimClientMessageId(sessionId: string, clientMessageId: string, messageId: string): Promise<string | null> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const existing = await this.history.bindClientMessageId(sessionId, clientMessageId, messageId);
      if (existing === null) return null;
      if ((await this.history.getStatus(sessionId, existing)) !== null) return existing;
      if (Date.now() > deadline) {
        throw new ServiceUnavailableException('an earlier send with this clientMessageId is still in progress; retry shortly');
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /**
   * Stops a message: a queued one never starts (cancelled here, announced at once); a running one
   * is stopped by its worker, which keeps the partial answer and announces chat.cancelled. A message
   * that already ended stays as it is. Unknown messages are a 404.
   */
  async cancel(sessionId: string, messageId: string): Promise<void> {
    const result = await this.history.requestCancel(sessionId, messageId);
    if (result === 'gone') throw new NotFoundException(`no message ${messageId} in this session`);
    if (result === 'cancelled') {
      const eventId = await this.bus.publishEvent({ type: 'chat.cancelled', payload: { sessionId, messageId } });
      await this.history.markAnnounced(sessionId, messageId, eventId);
      this.metrics.finished.inc({ outcome: 'cancelled', code: '' });
    } else if (result === 'signal') {
      await this.bus.signalCancel({ sessionId, messageId });
    }
    this.logger.log(about({ sessionId, messageId }, `cancel requested: ${result}`));
  }

  /**
   * The conversation plus the eventId to resume the live events from. That id is read before the
   * history (so nothing falls between the two), or is the point a streaming answer's partial content
   * reaches. Events after it may repeat messages listed here: clients update those by messageId.
   */
  async getHistory(sessionId: string): Promise<{ messages: HistoryMessage[]; lastEventId: string | null }> {
    const newest = await this.eventLog.newestId(sessionId);
    const messages = await this.history.history(sessionId);
    const streaming = messages.find((m) => m.role === 'assistant' && m.status === 'streaming' && m.resumeFrom);
    return { messages, lastEventId: streaming?.resumeFrom ?? newest };
  }

  /**
   * Deletes the conversation and its text wherever the app keeps it: the history and the session's
   * event log (one script), the same events in chat:outgoing, and the session's recent dead letters.
   * Messages still queued or running end as cancelled; their chat.cancelled (no text) is the only
   * thing of them a resuming client still gets. Text still on its way when the log went is kept
   * out of it by the relays (EventBus.appendToSessionLogs). What remains is in docs/reliability.md.
   * `revokeTokensForSeconds` (> 0) revokes the session's tokens in the same script as the delete.
   */
  async clear(sessionId: string, revokeTokensForSeconds = 0): Promise<void> {
    const { unfinished, eventIds } = await this.history.clear(sessionId, revokeTokensForSeconds);
    for (const messageId of unfinished) {
      // Stop the worker first, so no delta of it follows the chat.cancelled.
      await this.bus.signalCancel({ sessionId, messageId });
      await this.bus.publishEvent({ type: 'chat.cancelled', payload: { sessionId, messageId } });
      this.metrics.finished.inc({ outcome: 'cancelled', code: '' });
    }
    await this.bus.deleteEvents(eventIds);
    const deadLetters = await this.bus.deleteDeadLetters(sessionId);
    this.logger.log({
      msg: `cleared: ${eventIds.length} event(s), ${deadLetters} dead letter(s), ${unfinished.length} unfinished message(s) cancelled`,
      sessionId,
    });
  }
}
