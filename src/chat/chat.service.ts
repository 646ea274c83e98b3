import { BadRequestException, Injectable, Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { AppConfig } from '../config/app-config';
import { ThinkLevel } from '../event-bus/envelopes';
import { EventBus } from '../event-bus/event-bus.service';
import { ChatHistoryStore } from '../history/chat-history.store';
import { HistoryMessage } from '../history/stored-message';

export interface SendInput {
  sessionId: string;
  content: string;
  clientMessageId?: string;
  think?: ThinkLevel;
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
  ) {}

  async send(input: SendInput): Promise<SendResult> {
    const max = this.config.limits.maxMessageChars;
    if (input.content.length > max) {
      throw new BadRequestException(`content must be at most ${max} characters (got ${input.content.length})`);
    }
    const { sessionId } = input;
    const messageId = randomUUID();
    if (input.clientMessageId) {
      const existing = await this.history.bindClientMessageId(sessionId, input.clientMessageId, messageId);
      if (existing) return { messageId: existing, sessionId, status: 'queued' };
    }
    const createdAt = new Date().toISOString();
    try {
      // Order matters. The command goes first, so a history entry always has a command behind it
      // and a later message never waits on an earlier one that was never queued. The history entry
      // goes last: a worker waits for it before starting, so chat.user_message always precedes
      // chat.started. If any step fails the send is refused (503) and the worker skips the command.
      await this.bus.publishCommand({
        type: 'chat.generate',
        payload: { sessionId, messageId, content: input.content, createdAt, ...(input.think ? { think: input.think } : {}) },
      });
      await this.bus.publishEvent({ type: 'chat.user_message', payload: { sessionId, messageId, content: input.content, createdAt } });
      await this.history.appendUserMessage(sessionId, messageId, {
        content: input.content,
        createdAt,
        ...(input.think ? { think: input.think } : {}),
      });
    } catch (err) {
      // Free the clientMessageId so the client's retry is queued anew, not answered with a dead id.
      if (input.clientMessageId) await this.history.unbindClientMessageId(sessionId, input.clientMessageId).catch(() => undefined);
      throw err;
    }
    this.logger.debug(`queued session=${sessionId} message=${messageId} chars=${input.content.length}`);
    return { messageId, sessionId, status: 'queued' };
  }

  getHistory(sessionId: string): Promise<HistoryMessage[]> {
    return this.history.history(sessionId);
  }

  async clear(sessionId: string): Promise<void> {
    await this.history.clear(sessionId);
  }
}
