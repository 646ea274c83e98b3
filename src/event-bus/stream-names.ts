/** The one definition of every Redis stream, group and key the service uses (see CONTRACT.md). */
export const STREAMS = {
  /** Commands for the AI workers. */
  incoming: 'chat:incoming',
  /** Events for the gateways. */
  outgoing: 'chat:outgoing',
  /** Messages that failed for good, with the reason. */
  dead: 'chat:dead',
} as const;

export const WORKER_GROUP = 'ai-workers';

/**
 * Pub/sub channel telling workers to stop a running generation at once. Best effort by nature;
 * the cancel is also recorded in the history, where a worker checks it before each attempt.
 */
export const CANCEL_CHANNEL = 'chat:cancel';

/** Ids that may be embedded in a key: checked before they ever reach Redis. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** ID_PATTERN in words, for error messages: `<field> ${ID_RULE}`. */
export const ID_RULE = 'must be 1-64 characters of A-Z, a-z, 0-9, _ or -';

export function isValidId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value);
}

/**
 * A session's keys share the hash tag `{sessionId}` so they live in one Redis Cluster slot and may be
 * used together in one MULTI or script.
 */
export function sessionKeys(sessionId: string) {
  const tag = sessionTag(sessionId);
  return {
    /** LIST of messageIds in the order they were accepted. */
    order: `${tag}:order`,
    /** HASH `<messageId>:user|assistant` -> StoredMessage JSON. */
    messages: `${tag}:messages`,
    /** HASH clientMessageId -> messageId (idempotent sends). */
    clientIds: `${tag}:client-ids`,
    /** STREAM: the session's own event log (bounded, expiring); its entry ids are the eventIds. */
    events: `${tag}:events`,
    /** STRING, set by DELETE /chat/:sessionId for as long as a token lives: the session's tokens no longer work. */
    revoked: `${tag}:revoked`,
    /**
     * STRING, set by DELETE /chat/:sessionId for an hour: while it is there, text events of messages
     * no longer in the history are kept out of the event log (they belong to the deleted conversation).
     */
    deleted: `${tag}:deleted`,
  } as const;
}

/**
 * The field of a session's messages hash (`sessionKeys(sid).messages`) that holds a message's user
 * part: present exactly while the message is in the history (cleared, trimmed or taken back: gone).
 */
export function userPartField(messageId: string): string {
  return `${messageId}:user`;
}

/** Sends of a session in the given minute (rate-limit window); in the session's slot. */
export function sessionRateKey(sessionId: string, minute: number): string {
  return `${sessionTag(sessionId)}:rate:${minute}`;
}

function sessionTag(sessionId: string): string {
  if (!isValidId(sessionId)) throw new Error(`invalid session id for a key: ${JSON.stringify(sessionId)}`);
  return `chat:{${sessionId}}`;
}

/** Sends from one client address in the given minute; the address is hashed, never stored. */
export function addressRateKey(addressHash: string, minute: number): string {
  return `chat:rate:addr:{${addressHash}}:${minute}`;
}

/** Sessions created from one client address in the given minute; the address is hashed, never stored. */
export function newSessionRateKey(addressHash: string, minute: number): string {
  return `chat:rate:new-sessions:{${addressHash}}:${minute}`;
}

export const GLOBAL_KEYS = {
  /** Shared HMAC secret for session tokens when SESSION_SECRET is unset. */
  authSecret: 'chat:auth:secret',
} as const;
