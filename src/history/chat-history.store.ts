import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { RedisConnections } from '../event-bus/redis-connections';
import { LuaScript } from '../event-bus/lua-script';
import { sessionKeys, userPartField } from '../event-bus/stream-names';
import {
  ContextMessage,
  FinalStatus,
  HistoryMessage,
  MessageStatus,
  parseAssistantPart,
  parseStatus,
  parseUserPart,
  StoredAssistantPart,
  StoredUserPart,
} from './stored-message';

export function isFinal(status: MessageStatus): status is FinalStatus {
  return status === 'completed' || status === 'failed' || status === 'cancelled';
}

const field = {
  user: userPartField,
  assistant: (messageId: string) => `${messageId}:assistant`,
  status: (messageId: string) => `${messageId}:status`,
  announced: (messageId: string) => `${messageId}:announced`,
  cancel: (messageId: string) => `${messageId}:cancel`,
  userAnnounced: (messageId: string) => `${messageId}:user-announced`,
};

/**
 * `cancelled`: it was still queued and is now cancelled (the caller announces it); `signal`: it is
 * being answered, the cancel is recorded and the worker running it must be told; `ended`: too late;
 * `gone`: no such message.
 */
export type CancelRequest = 'cancelled' | 'signal' | 'ended' | 'gone';

/**
 * `applied`; `applied-as-cancelled` (a completion stored as cancelled: a cancel was requested);
 * `already-ended` (a final status was there first); `gone` (cleared or trimmed).
 */
export type Transition = 'applied' | 'applied-as-cancelled' | 'already-ended' | 'gone';
/** markStreaming's answers: also `cancel-requested` (a cancel whose signal the worker never heard). */
export type StartTransition = Transition | 'cancel-requested';

/** What a worker needs to know before answering a message (see `turn`). */
export interface TurnState {
  /** Null when the message is not in the history (cleared, or its send not written yet). */
  status: MessageStatus | null;
  /** Whether the API has published its chat.user_message. */
  userAnnounced: boolean;
  /** Whether every earlier message of the session has ended and been announced; null when not in the history. */
  ready: boolean | null;
  /**
   * With `turn(..., { start: true })`: `started` when the message was marked streaming by this
   * read, `cancel-requested` when a recorded cancel refused that; null when it was not tried.
   */
  started: 'started' | 'cancel-requested' | null;
  context: ContextMessage[];
}

/** What `clear` deleted that its caller still has to act on. */
export interface ClearedConversation {
  /** Messages not ended, or whose final event did not go out yet: to be announced as cancelled. */
  unfinished: string[];
  /** The ids of the session's logged events, oldest first: chat:outgoing still holds them. */
  eventIds: string[];
}

export interface StoredOutcome {
  status: FinalStatus;
  part: StoredAssistantPart | null;
  announced: boolean;
}

/** The reply of a message being started: empty until the first progress snapshot. */
function emptyReply(): StoredAssistantPart {
  return { content: '', createdAt: new Date().toISOString() };
}

const FINAL_LUA = `local function final(s) return s == 'completed' or s == 'failed' or s == 'cancelled' end`;

/**
 * Appends a user message and drops the oldest ended turns beyond the cap, in one round trip.
 * KEYS: order list, messages hash, client-ids hash, revoked mark. ARGV: messageId, user part (JSON),
 * TTL seconds, turns to keep. Returns the turns kept, or -1 when the session was deleted and its
 * tokens revoked: a socket authenticated before the delete must not write into it again.
 * Field names as in `field`.
 */
const APPEND = new LuaScript(`${FINAL_LUA}
if redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
local id, ttl = ARGV[1], ARGV[3]
local length = redis.call('RPUSH', KEYS[1], id)
redis.call('HSET', KEYS[2], id .. ':user', ARGV[2], id .. ':status', 'queued')
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
while length > tonumber(ARGV[4]) do
  local oldest = redis.call('LINDEX', KEYS[1], 0)
  -- a message in progress, or an outcome still owed its final event, is kept (and all after it)
  if not final(redis.call('HGET', KEYS[2], oldest .. ':status')) then break end
  if redis.call('HEXISTS', KEYS[2], oldest .. ':announced') == 0 then break end
  redis.call('LPOP', KEYS[1])
  redis.call('HDEL', KEYS[2], oldest .. ':user', oldest .. ':assistant', oldest .. ':status', oldest .. ':announced', oldest .. ':cancel', oldest .. ':user-announced')
  length = length - 1
end
return length
`);

/** How long a deleted conversation's mark stays: far longer than any relay lags behind chat:outgoing. */
const DELETED_MARK_SECONDS = 3600;

/**
 * KEYS: order list, messages hash, client-ids hash, event log, deleted mark, revoked mark. ARGV: the
 * deleted mark's lifetime in seconds, the revoked mark's (0: tokens are not in use). Returns the ids
 * of messages not ended
 * or not announced, and the ids of every entry of the event log (they are chat:outgoing's ids too,
 * read in pages so a long log is never held whole: its entries carry the text).
 */
const CLEAR = new LuaScript(`${FINAL_LUA}
local open = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local status = redis.call('HGET', KEYS[2], id .. ':status')
  if status and (not final(status) or redis.call('HEXISTS', KEYS[2], id .. ':announced') == 0) then
    table.insert(open, id)
  end
end
local events = {}
local from = '-'
while true do
  local page = redis.call('XRANGE', KEYS[4], from, '+', 'COUNT', 1000)
  for _, entry in ipairs(page) do events[#events + 1] = entry[1] end
  if #page < 1000 then break end
  from = '(' .. page[#page][1]
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('SET', KEYS[5], '1', 'EX', ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[6], '1', 'EX', ARGV[2]) end
return { open, events }
`);

/** KEYS: messages hash, order list. ARGV: user field, status field, assistant field, cancel field, part, ttl. */
const CANCEL = new LuaScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 'gone' end
local current = redis.call('HGET', KEYS[1], ARGV[2])
if current == 'completed' or current == 'failed' or current == 'cancelled' then return 'ended' end
redis.call('HSET', KEYS[1], ARGV[4], '1')
if current == 'queued' then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[5], ARGV[2], 'cancelled')
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
  return 'cancelled'
end
return 'signal'
`);

/**
 * Sets a mark on a message that is still there: after a clear, a plain HSET would recreate the
 * hash without an expiry. KEYS: messages hash. ARGV: user field, mark field, value.
 */
const MARK = new LuaScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[2], ARGV[3]) end
return 0
`);

/**
 * Everything a worker needs before answering a message, in one step and without shipping the whole
 * conversation: the message's status and announce mark, whether every earlier message has ended and
 * been announced (1/0; -1 when the message is not in the order list), then, when it is ready, the
 * user and assistant parts of the newest completed turns before it, newest first, until `limit`
 * messages are covered.
 * With a start part (ARGV[3] not empty) a message that is ready, announced, not ended and has no
 * recorded cancel is also marked streaming with that empty reply part, as markStreaming does (the
 * 4th value: 1 started, 3 a recorded cancel refused it, 0 not tried) — one round trip less before
 * the model request.
 * With ARGV[5] = '1' (a worker waiting for the announce mark) a message neither announced nor ended
 * gets only its own two fields read (ready 0 then: not looked at), not the scan of every earlier
 * message: a worker may poll this for seconds when an API died between queueing and announcing.
 * KEYS: order list, messages hash. ARGV: messageId, limit, start part ('' = do not start), ttl, announced-only.
 */
const TURN = new LuaScript(`${FINAL_LUA}
-- HMGET in chunks: unpack() has a limit, and HISTORY_MAX_MESSAGES allows 10,000
local function hmget(key, fields)
  local out = {}
  for i = 1, #fields, 1000 do
    for _, value in ipairs(redis.call('HMGET', key, unpack(fields, i, math.min(i + 999, #fields)))) do
      out[#out + 1] = value
    end
  end
  return out
end
local own = redis.call('HMGET', KEYS[2], ARGV[1] .. ':status', ARGV[1] .. ':user-announced')
local reply = { own[1], own[2] and 1 or 0, -1, 0 }
if ARGV[5] == '1' and not own[2] and not (own[1] and final(own[1])) then
  if own[1] then reply[3] = 0 end
  return reply
end
local order = redis.call('LRANGE', KEYS[1], 0, -1)
local index = nil
for i, id in ipairs(order) do
  if id == ARGV[1] then index = i break end
end
if not index then return reply end
local fields = {}
for i = 1, index - 1 do
  fields[#fields + 1] = order[i] .. ':status'
  fields[#fields + 1] = order[i] .. ':announced'
end
local values = hmget(KEYS[2], fields)
reply[3] = 1
for i = 1, index - 1 do
  local status = values[2 * i - 1]
  if status and (not final(status) or not values[2 * i]) then
    reply[3] = 0
    return reply
  end
end
if ARGV[3] ~= '' and own[1] and own[2] and not final(own[1]) then
  if redis.call('HEXISTS', KEYS[2], ARGV[1] .. ':cancel') == 1 then
    reply[4] = 3
  else
    redis.call('HSET', KEYS[2], ARGV[1] .. ':assistant', ARGV[3], ARGV[1] .. ':status', 'streaming')
    redis.call('EXPIRE', KEYS[2], ARGV[4])
    redis.call('EXPIRE', KEYS[1], ARGV[4])
    reply[4] = 1
  end
end
local wanted = {}
for i = index - 1, 1, -1 do
  if #wanted >= tonumber(ARGV[2]) then break end
  if values[2 * i - 1] == 'completed' then
    wanted[#wanted + 1] = order[i] .. ':user'
    wanted[#wanted + 1] = order[i] .. ':assistant'
  end
end
for _, part in ipairs(hmget(KEYS[2], wanted)) do
  reply[#reply + 1] = part or ''
end
return reply
`);

/**
 * Sets a message's status and reply part unless the message is gone (a cleared conversation must
 * not be resurrected by a late reply) or has already ended (its first outcome stands). An answer
 * completing after a cancel was requested (its signal missed) is stored as cancelled.
 * With ARGV[8] = 'start' (a worker beginning the answer) a recorded cancel refuses it instead (3).
 * KEYS: messages hash, order list. ARGV: user field, status field, assistant field, status, part, ttl, cancel field, mode.
 */
const TRANSITION = new LuaScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
local current = redis.call('HGET', KEYS[1], ARGV[2])
if current == 'completed' or current == 'failed' or current == 'cancelled' then return 0 end
local status = ARGV[4]
if ARGV[8] == 'start' and redis.call('HEXISTS', KEYS[1], ARGV[7]) == 1 then return 3 end
if status == 'completed' and redis.call('HEXISTS', KEYS[1], ARGV[7]) == 1 then status = 'cancelled' end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[5], ARGV[2], status)
-- every write refreshes the expiry: a generation may outlive a short HISTORY_TTL_SECONDS
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
if status ~= ARGV[4] then return 2 end
return 1
`);

/**
 * A session's conversation in Redis: `chat:{sid}:order` (LIST of messageIds, acceptance order) and
 * `chat:{sid}:messages` (HASH of user part, assistant part and status per message). Both share the
 * session's hash tag, so each write (a MULTI or a script) stays on one cluster slot. Bounded by
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

  async appendUserMessage(sessionId: string, messageId: string, part: StoredUserPart): Promise<'appended' | 'revoked'> {
    const keys = sessionKeys(sessionId);
    const kept = await APPEND.run(
      this.redis.commands,
      [keys.order, keys.messages, keys.clientIds, keys.revoked],
      [messageId, JSON.stringify(part), this.config.history.ttlSeconds, this.maxTurns],
    );
    return kept === -1 ? 'revoked' : 'appended';
  }

  /**
   * Marks a message as being answered, with an empty reply (so history shows it in progress).
   * Refused when the message already ended (e.g. cancelled while queued), is gone, or has a cancel
   * recorded whose signal the worker may have missed (sent while it was down or reconnecting).
   */
  async markStreaming(sessionId: string, messageId: string): Promise<StartTransition> {
    return this.transition(sessionId, messageId, 'streaming', emptyReply(), 'start');
  }

  /** Saves the partial answer of a message being streamed (ignored once it has ended). */
  async saveProgress(sessionId: string, messageId: string, part: StoredAssistantPart): Promise<Transition> {
    return this.transition(sessionId, messageId, 'streaming', part);
  }

  /**
   * Stores the outcome of a message: its single final status. Only the first outcome wins, so a
   * cancel racing a completion yields exactly one of them.
   */
  async finish(sessionId: string, messageId: string, status: FinalStatus, part: StoredAssistantPart): Promise<Transition> {
    return this.transition(sessionId, messageId, status, part);
  }

  /** A person asked to stop this message (see CancelRequest). */
  async requestCancel(sessionId: string, messageId: string): Promise<CancelRequest> {
    const keys = sessionKeys(sessionId);
    const part: StoredAssistantPart = { content: '', createdAt: new Date().toISOString() };
    const result = await CANCEL.run(
      this.redis.commands,
      [keys.messages, keys.order],
      [
        field.user(messageId),
        field.status(messageId),
        field.assistant(messageId),
        field.cancel(messageId),
        JSON.stringify(part),
        this.config.history.ttlSeconds,
      ],
    );
    return result === 'cancelled' || result === 'signal' || result === 'ended' ? result : 'gone';
  }

  /** Records that the final event of a message was published (with its event id). */
  async markAnnounced(sessionId: string, messageId: string, eventId: string): Promise<void> {
    await MARK.run(this.redis.commands, [sessionKeys(sessionId).messages], [field.user(messageId), field.announced(messageId), eventId]);
  }

  /** The stored outcome of an ended message, and whether its final event went out. */
  async outcome(sessionId: string, messageId: string): Promise<StoredOutcome | null> {
    const [status, assistant, announced] = await this.redis.commands.hmget(
      sessionKeys(sessionId).messages,
      field.status(messageId),
      field.assistant(messageId),
      field.announced(messageId),
    );
    const parsed = status === null ? null : parseStatus(status);
    if (parsed === null || !isFinal(parsed)) return null;
    return { status: parsed, part: parseAssistantPart(assistant), announced: announced !== null };
  }

  /**
   * Whether `messageId` may be answered now, and the earlier turns the model should see if so, in
   * one round trip. It may when every message accepted before it in its session has ended
   * (completed, failed or cancelled) *and* its final event went out: an outcome is stored before it
   * is announced, so "stored" alone would let this message's chat.started overtake the earlier
   * chat.completed. `ready` is null when `messageId` is not in the history (cleared, or not written
   * yet). The context holds completed exchanges only (a failed turn has no answer to learn from),
   * at most CONTEXT_MAX_MESSAGES of them, newest kept; only those are parsed.
   * `announcedOnly`: for a message neither announced nor ended, only its status and mark are read
   * (`ready` false, not looked at): the cheap poll of a worker waiting for the mark.
   */
  async turn(sessionId: string, messageId: string, options: { start?: boolean; announcedOnly?: boolean } = {}): Promise<TurnState> {
    const keys = sessionKeys(sessionId);
    const limit = this.config.history.contextMessages;
    const startPart = options.start ? JSON.stringify(emptyReply()) : '';
    const args = [messageId, limit, startPart, this.config.history.ttlSeconds, options.announcedOnly ? '1' : ''];
    const reply: unknown = await TURN.run(this.redis.commands, [keys.order, keys.messages], args);
    if (!Array.isArray(reply)) throw new Error('unexpected reply to the turn script');
    const [rawStatus, announced, ready, startedCode, ...parts] = reply as unknown[];
    const status = typeof rawStatus === 'string' ? parseStatus(rawStatus) : null;
    const userAnnounced = announced === 1;
    const started = startedCode === 1 ? 'started' : startedCode === 3 ? 'cancel-requested' : null;
    if (ready === -1) return { status, userAnnounced, ready: null, started: null, context: [] };
    const context: ContextMessage[] = [];
    for (let i = 0; i + 1 < parts.length; i += 2) {
      const user = parseUserPart(typeof parts[i] === 'string' ? (parts[i] as string) : null);
      const reply = parseAssistantPart(typeof parts[i + 1] === 'string' ? (parts[i + 1] as string) : null);
      if (!user) continue;
      if (reply) context.push({ role: 'assistant', content: reply.content });
      context.push({ role: 'user', content: user.content });
    }
    return { status, userAnnounced, ready: ready === 1, started, context: context.slice(0, limit).reverse() };
  }

  /** Takes back a message whose send failed half-way (best effort: the caller answers 503). */
  async remove(sessionId: string, messageId: string): Promise<void> {
    const keys = sessionKeys(sessionId);
    const fields = Object.values(field).map((f) => f(messageId));
    await this.redis.commands
      .multi()
      .lrem(keys.order, 0, messageId)
      .hdel(keys.messages, ...fields)
      .exec();
  }

  /** Records that chat.user_message of this message went out. */
  async markUserAnnounced(sessionId: string, messageId: string): Promise<void> {
    await MARK.run(this.redis.commands, [sessionKeys(sessionId).messages], [field.user(messageId), field.userAnnounced(messageId), '1']);
  }

  async getStatus(sessionId: string, messageId: string) {
    const raw = await this.redis.commands.hget(sessionKeys(sessionId).messages, field.status(messageId));
    return raw === null ? null : parseStatus(raw);
  }

  private transition(
    sessionId: string,
    messageId: string,
    status: 'streaming',
    part: StoredAssistantPart,
    mode: 'start',
  ): Promise<StartTransition>;
  private transition(sessionId: string, messageId: string, status: MessageStatus, part: StoredAssistantPart): Promise<Transition>;
  private async transition(
    sessionId: string,
    messageId: string,
    status: MessageStatus,
    part: StoredAssistantPart,
    mode: 'start' | '' = '',
  ): Promise<StartTransition> {
    const keys = sessionKeys(sessionId);
    const result = await TRANSITION.run(
      this.redis.commands,
      [keys.messages, keys.order],
      [
        field.user(messageId),
        field.status(messageId),
        field.assistant(messageId),
        status,
        JSON.stringify(part),
        this.config.history.ttlSeconds,
        field.cancel(messageId),
        mode,
      ],
    );
    if (result === 3) return 'cancel-requested';
    return result === 1 ? 'applied' : result === 2 ? 'applied-as-cancelled' : result === 0 ? 'already-ended' : 'gone';
  }

  /** The whole retained conversation, oldest first. */
  async history(sessionId: string): Promise<HistoryMessage[]> {
    const keys = sessionKeys(sessionId);
    const [order, all] = await Promise.all([this.redis.commands.lrange(keys.order, 0, -1), this.redis.commands.hgetall(keys.messages)]);
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
          ...(status === 'streaming' && reply.resumeFrom ? { resumeFrom: reply.resumeFrom } : {}),
        });
      }
    }
    return messages;
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

  /**
   * Deletes the conversation and its event log in one step and returns the messages that had not
   * ended (or whose end was not announced yet): the caller announces them as cancelled. Workers
   * still on them find them gone and stay silent, so each gets exactly one final event. Also returns
   * the ids the log held: the same events are in chat:outgoing, for the caller to delete there.
   * With `revokeTokensForSeconds` the session is revoked in the same step (its tokens stop working),
   * so a delete never half happens: either the text and the tokens go together, or neither does and
   * the caller may retry.
   */
  async clear(sessionId: string, revokeTokensForSeconds = 0): Promise<ClearedConversation> {
    const keys = sessionKeys(sessionId);
    const reply: unknown = await CLEAR.run(
      this.redis.commands,
      [keys.order, keys.messages, keys.clientIds, keys.events, keys.deleted, keys.revoked],
      [DELETED_MARK_SECONDS, revokeTokensForSeconds],
    );
    const [unfinished, eventIds] = Array.isArray(reply) ? (reply as unknown[]) : [];
    return { unfinished: strings(unfinished), eventIds: strings(eventIds) };
  }
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}
