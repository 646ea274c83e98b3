import { partitionOf, partitionTags } from './partitions';

/**
 * The one definition of every Redis key, stream, group and channel the service uses. The layout
 * and the reasons for it are in docs/design.md ("Partitions and keys").
 */

/** The consumer group of the AI workers on every `chat:incoming:{T}`. */
export const WORKER_GROUP = 'ai-workers';

/** Prefixes people know the streams by; each partition's stream is `<prefix>:{<tag>}`. */
export const STREAM_PREFIXES = { incoming: 'chat:incoming', outgoing: 'chat:outgoing', dead: 'chat:dead' } as const;

/** Ids that may be embedded in a key: checked before they ever reach Redis. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** ID_PATTERN in words, for error messages: `<field> ${ID_RULE}`. */
export const ID_RULE = 'must be 1-64 characters of A-Z, a-z, 0-9, _ or -';

export function isValidId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value);
}

/** A partition's keys: all in the slot of its hash tag. */
export interface PartitionKeys {
  index: number;
  tag: string;
  /** STREAM of chat.generate commands, one per session at most (its head message); group WORKER_GROUP. */
  incoming: string;
  /** STREAM of every event of the partition's sessions; entry id = eventId. */
  outgoing: string;
  /** STREAM of dead letters. */
  dead: string;
  /** ZSET messageId -> accept time (Redis clock, ms): accepted and not ended. */
  backlog: string;
  /** Sharded pub/sub channel: cancel signals for the workers holding a message of this partition. */
  cancel: string;
}

/** A session's keys: all in its partition's slot. */
export interface SessionKeys {
  partition: PartitionKeys;
  /** HASH: per message `<mid>:user|assistant|status|attempt|owner|cancel|resume`, `c:<clientMessageId>`, `active`. */
  hash: string;
  /** LIST of messageIds in acceptance order. */
  order: string;
  /** LIST of messageIds waiting behind the head. */
  queue: string;
  /** STREAM: the session's event log for resume (same ids as the partition's outgoing stream). */
  events: string;
  /** STRING, set by DELETE for as long as a token lives: the session's tokens no longer work. */
  revoked: string;
  /** STRING, set by DELETE for an hour: a worker finding its message gone stays silent. */
  deleted: string;
}

/** Every key of a deployment with `partitions` partitions. Build once (the tags are computed). */
export class KeyLayout {
  readonly partitions: readonly PartitionKeys[];

  constructor(readonly partitionCount: number) {
    this.partitions = partitionTags(partitionCount).map((tag, index) => ({
      index,
      tag,
      incoming: `${STREAM_PREFIXES.incoming}:{${tag}}`,
      outgoing: `${STREAM_PREFIXES.outgoing}:{${tag}}`,
      dead: `${STREAM_PREFIXES.dead}:{${tag}}`,
      backlog: `chat:backlog:{${tag}}`,
      cancel: `chat:cancel:{${tag}}`,
    }));
  }

  partitionOf(sessionId: string): PartitionKeys {
    return this.partitions[partitionOf(sessionId, this.partitionCount)];
  }

  session(sessionId: string): SessionKeys {
    if (!isValidId(sessionId)) throw new Error(`invalid session id for a key: ${JSON.stringify(sessionId)}`);
    const partition = this.partitionOf(sessionId);
    const base = `chat:s:{${partition.tag}}:${sessionId}`;
    return {
      partition,
      hash: base,
      order: `${base}:order`,
      queue: `${base}:queue`,
      events: `${base}:events`,
      revoked: `${base}:revoked`,
      deleted: `${base}:deleted`,
    };
  }

  /** Sends of a session in the given minute (rate-limit window); in the session's slot. */
  sessionRate(sessionId: string, minute: number): string {
    return `${this.session(sessionId).hash}:rate:${minute}`;
  }
}

/** Fields of a session hash. */
export const FIELD = {
  user: (messageId: string) => `${messageId}:user`,
  assistant: (messageId: string) => `${messageId}:assistant`,
  status: (messageId: string) => `${messageId}:status`,
  attempt: (messageId: string) => `${messageId}:attempt`,
  clientId: (clientMessageId: string) => `c:${clientMessageId}`,
} as const;

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
  /** ZSET worker consumer name -> last heartbeat (Redis clock, ms). */
  workers: 'chat:workers',
} as const;
