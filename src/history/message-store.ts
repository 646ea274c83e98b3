import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { ChatEvent, encodeEnvelope, FailureReason } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { runScript, ScriptReply, stateKeys, StateScript } from '../event-bus/scripts';
import { KeyLayout, WORKER_GROUP } from '../event-bus/stream-names';
import { countTokens, MESSAGE_FRAME_TOKENS } from './token-count';
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

export interface MessageRef {
  sessionId: string;
  messageId: string;
}

export type SendOutcome =
  | { result: 'queued'; eventId: string; ahead: number }
  | { result: 'duplicate'; messageId: string }
  | { result: 'revoked' }
  | { result: 'backlog_full'; backlog: number }
  | { result: 'queue_full'; waiting: number }
  /** regenerate/edit: the message to replace is no longer the session's last, or has not ended. */
  | { result: 'not_last' }
  | { result: 'not_ended' };

/** What a send stores besides the user part. */
export interface SendOptions {
  /** The message's token count (docs/design.md, "Context window"). */
  tokens: number;
  /** Regenerate and edit: the session's last message, replaced by this one. */
  replaces: string | null;
}

/** What went into the model's context (chat.started says the same). */
export interface ContextInfo {
  /** Earlier messages sent with this one. */
  messages: number;
  /** Older completed turns were left out to fit the window. */
  omitted: boolean;
  /** Estimated tokens of the message and the turns sent, frames included (not the system prompt). */
  tokens: number;
}

export type StartOutcome =
  | {
      result: 'started';
      attempt: number;
      eventId: string;
      user: StoredUserPart | null;
      context: ContextMessage[];
      contextInfo: ContextInfo;
      /** The session's first message, and the session has no title yet. */
      untitled: boolean;
    }
  | { result: 'ended'; status: string }
  | { result: 'cancelled'; eventId: string }
  | { result: 'gone' }
  | { result: 'fenced' };

export type EmitOutcome = { result: 'emitted' | 'cancel_requested'; eventId: string } | { result: 'fenced' } | { result: 'gone' };

export type FinishOutcome =
  { result: FinalStatus; eventId: string } | { result: 'ended'; status: string } | { result: 'gone' } | { result: 'fenced' };

export type CancelOutcome =
  { result: 'cancelled'; eventId: string } | { result: 'signal'; owner: string } | { result: 'ended' } | { result: 'gone' };

/** Events a worker writes while it answers. */
export type ProgressEvent = Extract<ChatEvent, { type: 'chat.thinking' | 'chat.delta' | 'chat.status' }>;
/** The event that ends a message, as its worker writes it. */
export type FinalEvent = Extract<ChatEvent, { type: 'chat.completed' | 'chat.failed' | 'chat.cancelled' }>;

/** A context budget that never binds: the message cap alone chooses the turns. */
export const UNLIMITED_CONTEXT = 1_000_000_000;

function defaultSendOptions(user: StoredUserPart): SendOptions {
  return { tokens: countTokens(user.content), replaces: null };
}

/** How long a deleted conversation's mark stays: workers on its messages finish long before. */
const DELETED_MARK_SECONDS = 3600;

/**
 * A session's messages and their one state machine (docs/design.md): every transition is one Lua
 * script that also writes its event to the partition's stream and the session's log. This class
 * only shapes arguments and names the replies; the rules are in `src/event-bus/scripts/*.lua`.
 */
/**
 * Redis no longer has this attempt's start (a failover to a replica that had not received it, or a
 * restart from an older snapshot): the message looks as if it was never started. Not a fence (no
 * newer attempt exists) but a Redis failure: the worker runs the message again from its pending entry.
 */
export class RedisRewoundError extends Error {
  constructor(
    ref: MessageRef,
    /** The attempt Redis lost. */
    readonly attempt: number,
  ) {
    super(`Redis lost the start of ${ref.messageId} (failover or restart from an older snapshot)`);
    this.name = 'RedisRewoundError';
  }
}

@Injectable()
export class MessageStore {
  constructor(
    private readonly redis: RedisConnections,
    private readonly config: AppConfig,
    private readonly keys: KeyLayout,
  ) {}

  private get maxTurns(): number {
    return Math.max(1, Math.floor(this.config.history.maxMessages / 2));
  }

  /** Backlog bound of one partition: MAX_BACKLOG spread over the partitions. */
  get partitionBacklogBound(): number {
    return Math.max(1, Math.ceil(this.config.limits.maxBacklog / this.config.redis.partitions));
  }

  private run(name: StateScript, ref: MessageRef, args: (string | number)[]): Promise<ScriptReply> {
    const session = this.keys.session(ref.sessionId);
    const common = [
      ref.sessionId,
      ref.messageId,
      this.config.history.ttlSeconds,
      this.config.redis.streamMaxLen,
      this.config.redis.sessionEventsMaxLen,
      WORKER_GROUP,
    ];
    return runScript(this.redis.commands, name, stateKeys(session), [...common, ...args]);
  }

  async send(
    ref: MessageRef,
    clientMessageId: string | null,
    user: StoredUserPart,
    options: SendOptions = defaultSendOptions(user),
  ): Promise<SendOutcome> {
    const event = JSON.stringify({
      sessionId: ref.sessionId,
      messageId: ref.messageId,
      content: user.content,
      createdAt: user.createdAt,
      ...(user.model ? { model: user.model } : {}),
      ...(options.replaces ? { replaces: options.replaces } : {}),
    });
    const staleMs = this.config.history.ttlSeconds * 1000;
    const { result, values } = await this.run('send', ref, [
      clientMessageId ?? '',
      JSON.stringify(user),
      event,
      this.maxTurns,
      this.partitionBacklogBound,
      this.config.limits.maxQueuedPerSession,
      staleMs,
      options.tokens,
      options.replaces ?? '',
    ]);
    switch (result) {
      case 'queued':
        return { result, eventId: String(values[0]), ahead: Number(values[1]) };
      case 'duplicate':
        return { result, messageId: String(values[0]) };
      case 'revoked':
        return { result };
      case 'backlog_full':
        return { result, backlog: Number(values[0]) };
      case 'queue_full':
        return { result, waiting: Number(values[0]) };
      case 'not_last':
      case 'not_ended':
        return { result };
    }
    throw new Error(`unexpected send result ${result}`);
  }

  /**
   * `heldAttempt`: the attempt a retrying worker still holds (null for a first start or a takeover).
   * `attemptFloor`: an attempt Redis lost (RedisRewoundError): the new one is above it, so clients
   * that saw the lost attempt's `chat.started` discard what it streamed.
   * `contextBudget`: tokens this message and its earlier turns may take (frames included); the
   * script fits the newest turns into it (docs/design.md, "Context window").
   */
  async start(
    ref: MessageRef,
    entryId: string,
    consumer: string,
    heldAttempt: number | null,
    attemptFloor = 0,
    contextBudget = UNLIMITED_CONTEXT,
  ): Promise<StartOutcome> {
    const empty: StoredAssistantPart = { content: '', createdAt: new Date().toISOString() };
    const { result, values } = await this.run('start', ref, [
      entryId,
      consumer,
      JSON.stringify(empty),
      this.config.context.maxMessages,
      heldAttempt === null ? '' : heldAttempt,
      attemptFloor,
      Math.floor(contextBudget),
      MESSAGE_FRAME_TOKENS,
    ]);
    switch (result) {
      case 'started': {
        const [attempt, eventId, user, sent, omitted, untitled, used, ...turns] = values;
        return {
          result,
          attempt: Number(attempt),
          eventId: String(eventId),
          user: parseUserPart(asString(user)),
          context: toContext(turns),
          contextInfo: { messages: Number(sent), omitted: Number(omitted) === 1, tokens: Number(used) },
          untitled: Number(untitled) === 1,
        };
      }
      case 'ended':
        return { result, status: String(values[0]) };
      case 'cancelled':
        return { result, eventId: String(values[0]) };
      case 'gone':
      case 'fenced':
        return { result };
    }
    throw new Error(`unexpected start result ${result}`);
  }

  /** Writes a progress event of `attempt`; `snapshot` (the reply so far, this event included) is kept for history readers. */
  async emit(ref: MessageRef, attempt: number, event: ProgressEvent, snapshot: StoredAssistantPart | null = null): Promise<EmitOutcome> {
    const logged = event.type === 'chat.status' ? '0' : '1';
    const { result, values } = await this.run('emit', ref, [
      attempt,
      event.type,
      JSON.stringify(event.payload),
      logged,
      snapshot ? JSON.stringify(snapshot) : '',
    ]);
    if (result === 'emitted' || result === 'cancel_requested') return { result, eventId: String(values[0]) };
    if (result === 'fenced' || result === 'gone') return { result };
    if (result === 'rewound') throw new RedisRewoundError(ref, attempt);
    throw new Error(`unexpected emit result ${result}`);
  }

  async finish(
    ref: MessageRef,
    entryId: string,
    attempt: number,
    part: StoredAssistantPart,
    event: FinalEvent,
    deadLetter: Record<string, unknown> | null = null,
    /** The reply's token count (completed answers), for fitting later contexts. */
    tokens: number | null = null,
  ): Promise<FinishOutcome> {
    const status = event.type.slice('chat.'.length) as FinalStatus;
    const { result, values } = await this.run('finish', ref, [
      entryId,
      attempt,
      status,
      JSON.stringify(part),
      JSON.stringify(event.payload),
      deadLetter ? JSON.stringify(deadLetter) : '',
      tokens ?? '',
    ]);
    if (result === 'completed' || result === 'failed' || result === 'cancelled') return { result, eventId: String(values[0]) };
    if (result === 'ended') return { result, status: String(values[0]) };
    if (result === 'gone' || result === 'fenced') return { result };
    if (result === 'rewound') throw new RedisRewoundError(ref, attempt);
    throw new Error(`unexpected finish result ${result}`);
  }

  /** `force`: its worker is not alive, end it now (with the last progress snapshot). */
  async cancel(ref: MessageRef, force: boolean): Promise<CancelOutcome> {
    const empty: StoredAssistantPart = { content: '', createdAt: new Date().toISOString() };
    const { result, values } = await this.run('cancel', ref, [force ? '1' : '0', JSON.stringify(empty)]);
    if (result === 'cancelled') return { result, eventId: String(values[0]) };
    if (result === 'signal') return { result, owner: typeof values[0] === 'string' ? values[0] : '' };
    if (result === 'ended' || result === 'gone') return { result };
    throw new Error(`unexpected cancel result ${result}`);
  }

  /** Deletes the conversation (see clear.lua). Returns the messages that were streaming: their workers are to be told. */
  async clear(sessionId: string, revokeTokensForSeconds: number): Promise<{ eventsDeleted: number; streaming: string[] }> {
    const { values } = await this.run('clear', { sessionId, messageId: '-' }, [DELETED_MARK_SECONDS, revokeTokensForSeconds]);
    const [deleted, ...streaming] = values;
    return { eventsDeleted: Number(deleted), streaming: streaming.map(String) };
  }

  /** The message is gone: fail it visibly unless its conversation was deleted; its command entry is acknowledged. */
  async lost(ref: MessageRef, entryId: string, error: FailureReason): Promise<'announced' | 'deleted' | 'trimmed' | 'present'> {
    const { result } = await this.run('lost', ref, [JSON.stringify({ ...ref, error }), entryId]);
    if (result === 'announced' || result === 'deleted' || result === 'trimmed' || result === 'present') return result;
    throw new Error(`unexpected lost result ${result}`);
  }

  /** Stores the conversation's title and writes chat.title, unless the conversation is gone. */
  async setTitle(ref: MessageRef, title: string): Promise<'titled' | 'gone'> {
    const { result } = await this.run('title', ref, [title, JSON.stringify({ ...ref, title })]);
    if (result === 'titled' || result === 'gone') return result;
    throw new Error(`unexpected title result ${result}`);
  }

  /** What a message's sender sent, with its token count (regenerate sends it again); null when unknown. */
  async userPart(ref: MessageRef): Promise<{ user: StoredUserPart; tokens: number | null } | null> {
    const { hash } = this.keys.session(ref.sessionId);
    const [raw, tokens] = await this.redis.commands.hmget(hash, `${ref.messageId}:user`, `${ref.messageId}:ut`);
    const user = parseUserPart(raw);
    return user ? { user, tokens: tokens && /^\d+$/.test(tokens) ? Number(tokens) : null } : null;
  }

  /** The whole retained conversation, oldest first. */
  async history(sessionId: string): Promise<HistoryMessage[]> {
    return (await this.conversation(sessionId)).messages;
  }

  /** The whole retained conversation, oldest first, and the title the model gave it. */
  async conversation(sessionId: string): Promise<{ messages: HistoryMessage[]; title: string | null }> {
    const keys = this.keys.session(sessionId);
    const [order, all] = await Promise.all([this.redis.commands.lrange(keys.order, 0, -1), this.redis.commands.hgetall(keys.hash)]);
    const messages: HistoryMessage[] = [];
    // send.lua trims in batches: show the newest turns up to the cap (never hiding one not ended).
    let skip = 0;
    while (order.length - skip > this.maxTurns && isFinalStatus(all[`${order[skip]}:status`])) skip++;
    for (const messageId of order.slice(skip)) {
      const user = parseUserPart(all[`${messageId}:user`]);
      if (!user) continue;
      const status = parseStatus(all[`${messageId}:status`]);
      messages.push({
        messageId,
        role: 'user',
        content: user.content,
        status,
        createdAt: user.createdAt,
        ...(user.model ? { model: user.model } : {}),
      });
      const reply = parseAssistantPart(all[`${messageId}:assistant`]);
      if (!reply) continue;
      const resumeFrom = all[`${messageId}:resume`];
      messages.push({
        messageId,
        role: 'assistant',
        content: reply.content,
        status,
        createdAt: reply.createdAt,
        ...(reply.thinking ? { thinking: reply.thinking } : {}),
        ...(reply.error ? { error: reply.error } : {}),
        ...(reply.model ? { model: reply.model } : {}),
        ...(reply.usage && status === 'completed' ? { usage: reply.usage } : {}),
        ...(all[`${messageId}:ctx`] === '1' ? { contextOmitted: true } : {}),
        ...(status === 'streaming' && resumeFrom ? { resumeFrom } : {}),
      });
    }
    return { messages, title: all.title || null };
  }
}

/** A `chat.generate` command's stream fields. */
export function commandFields(ref: MessageRef): string[] {
  return encodeEnvelope('chat.generate', { sessionId: ref.sessionId, messageId: ref.messageId });
}

function isFinalStatus(raw: string | undefined): boolean {
  return raw === 'completed' || raw === 'failed' || raw === 'cancelled';
}

function asString(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

/** start.lua's fitted earlier turns (user, assistant pairs, oldest first) as model context. */
function toContext(turns: unknown[]): ContextMessage[] {
  const context: ContextMessage[] = [];
  for (let i = 0; i + 1 < turns.length; i += 2) {
    const user = parseUserPart(asString(turns[i]));
    const reply = parseAssistantPart(asString(turns[i + 1]));
    if (!user || !reply) continue;
    context.push({ role: 'user', content: user.content }, { role: 'assistant', content: reply.content });
  }
  return context;
}
