import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { RedisConnections } from '../event-bus/redis-connections';
import { sessionKeys } from '../event-bus/stream-names';
import {
  ContextMessage,
  FinalStatus,
  HistoryMessage,
  parseAssistantPart,
  parseStatus,
  parseUserPart,
  StoredAssistantPart,
  StoredUserPart,
} from './stored-message';

const field = {
  user: (messageId: string) => `${messageId}:user`,
  assistant: (messageId: string) => `${messageId}:assistant`,
  status: (messageId: string) => `${messageId}:status`,
};

/**
 * A session's conversation in Redis: `chat:{sid}:order` (LIST of messageIds, acceptance order) and
 * `chat:{sid}:messages` (HASH of user part, assistant part and status per message). Both share the
 * session's hash tag, so each write is one MULTI on one cluster slot. Bounded by
 * HISTORY_MAX_MESSAGES and expiring HISTORY_TTL_SECONDS after the last write.
 */
@Injectable()
export class ChatHistoryStore {
  constructor(
    private readonly redis: RedisConnections,
    private readonly config: AppConfig,
  ) {}

  private get maxTurns(): number {
    return Math.max(1, Math.floor(this.config.history.maxMessages / 2));
  }

  async appendUserMessage(sessionId: string, messageId: string, part: StoredUserPart): Promise<void> {
    const keys = sessionKeys(sessionId);
    const ttl = this.config.history.ttlSeconds;
    const results = await this.redis.commands
      .multi()
      .rpush(keys.order, messageId)
      .hset(keys.messages, field.user(messageId), JSON.stringify(part), field.status(messageId), 'queued')
      .expire(keys.order, ttl)
      .expire(keys.messages, ttl)
      .expire(keys.clientIds, ttl)
      .exec();
    const length = Number(results?.[0]?.[1] ?? 0);
    if (length > this.maxTurns) await this.trim(sessionId, length - this.maxTurns);
  }

  /** Drops the oldest turns beyond the cap. */
  private async trim(sessionId: string, excess: number): Promise<void> {
    const keys = sessionKeys(sessionId);
    const dropped = await this.redis.commands.lpop(keys.order, excess);
    if (!dropped || dropped.length === 0) return;
    const fields = dropped.flatMap((id) => [field.user(id), field.assistant(id), field.status(id)]);
    await this.redis.commands.hdel(keys.messages, ...fields);
  }

  /** Marks a message as being answered, with an empty reply (so history shows it in progress). */
  async markStreaming(sessionId: string, messageId: string): Promise<boolean> {
    const part: StoredAssistantPart = { content: '', createdAt: new Date().toISOString() };
    return this.writeIfPresent(sessionId, messageId, 'streaming', part);
  }

  /** Stores the outcome of a message. Returns false if the message is no longer in the history. */
  async finish(sessionId: string, messageId: string, status: FinalStatus, part: StoredAssistantPart): Promise<boolean> {
    return this.writeIfPresent(sessionId, messageId, status, part);
  }

  async getStatus(sessionId: string, messageId: string) {
    const raw = await this.redis.commands.hget(sessionKeys(sessionId).messages, field.status(messageId));
    return raw === null ? null : parseStatus(raw);
  }

  private async writeIfPresent(
    sessionId: string,
    messageId: string,
    status: string,
    part: StoredAssistantPart,
  ): Promise<boolean> {
    const keys = sessionKeys(sessionId);
    // A cleared or trimmed conversation must not be resurrected by a late reply.
    const exists = await this.redis.commands.hexists(keys.messages, field.user(messageId));
    if (!exists) return false;
    await this.redis.commands
      .multi()
      .hset(keys.messages, field.assistant(messageId), JSON.stringify(part), field.status(messageId), status)
      .expire(keys.messages, this.config.history.ttlSeconds)
      .expire(keys.order, this.config.history.ttlSeconds)
      .exec();
    return true;
  }

  /** The whole retained conversation, oldest first. */
  async history(sessionId: string): Promise<HistoryMessage[]> {
    const keys = sessionKeys(sessionId);
    const [order, all] = await Promise.all([
      this.redis.commands.lrange(keys.order, 0, -1),
      this.redis.commands.hgetall(keys.messages),
    ]);
    const messages: HistoryMessage[] = [];
    for (const messageId of order) {
      const user = parseUserPart(all[field.user(messageId)]);
      if (!user) continue;
      const status = parseStatus(all[field.status(messageId)]);
      messages.push({ messageId, role: 'user', content: user.content, status, createdAt: user.createdAt });
      const reply = parseAssistantPart(all[field.assistant(messageId)]);
      if (reply) {
        messages.push({
          messageId,
          role: 'assistant',
          content: reply.content,
          status,
          createdAt: reply.createdAt,
          ...(reply.thinking ? { thinking: reply.thinking } : {}),
          ...(reply.error ? { error: reply.error } : {}),
        });
      }
    }
    return messages;
  }

  /**
   * The earlier turns the model should see before `messageId`: completed exchanges only (a failed
   * turn has no answer to learn from), at most CONTEXT_MAX_MESSAGES of them, newest kept.
   */
  async contextBefore(sessionId: string, messageId: string): Promise<ContextMessage[]> {
    const history = await this.history(sessionId);
    const context: ContextMessage[] = [];
    for (const m of history) {
      if (m.messageId === messageId) break;
      if (m.status !== 'completed') continue;
      context.push({ role: m.role, content: m.content });
    }
    const limit = this.config.history.contextMessages;
    return limit === 0 ? [] : context.slice(-limit);
  }

  /**
   * Reserves `clientMessageId` for `messageId`. Returns the messageId already bound to it when the
   * send is a repeat (HSETNX makes two racing requests agree on one).
   */
  async bindClientMessageId(sessionId: string, clientMessageId: string, messageId: string): Promise<string | null> {
    const keys = sessionKeys(sessionId);
    const created = await this.redis.commands.hsetnx(keys.clientIds, clientMessageId, messageId);
    if (created === 1) {
      await this.redis.commands.expire(keys.clientIds, this.config.history.ttlSeconds);
      return null;
    }
    return this.redis.commands.hget(keys.clientIds, clientMessageId);
  }

  async unbindClientMessageId(sessionId: string, clientMessageId: string): Promise<void> {
    await this.redis.commands.hdel(sessionKeys(sessionId).clientIds, clientMessageId);
  }

  async clear(sessionId: string): Promise<void> {
    const keys = sessionKeys(sessionId);
    await this.redis.commands.del(keys.order, keys.messages, keys.clientIds);
  }
}
