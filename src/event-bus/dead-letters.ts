import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { encodeEnvelope } from './envelopes';
import { RedisConnections } from './redis-connections';
import { KeyLayout } from './stream-names';
import { parseRangeReply } from './stream-reply';

/**
 * A cleared conversation's dead letters are looked for among the newest DEAD_LETTER_SCAN entries
 * of its partition's dead-letter stream, DEAD_LETTER_PAGE at a time: each may hold a long message.
 */
const DEAD_LETTER_SCAN = 1000;
const DEAD_LETTER_PAGE = 100;

/** What a dead letter records (written by finish.lua for failures, here for malformed commands). */
export interface DeadLetter {
  stream: string;
  entryId: string;
  reason: string;
  sessionId: string | null;
  messageId: string | null;
  /** The original fields or the user's message, kept so it can be inspected or replayed. */
  fields: string[];
  at: string;
}

/** The partitions' dead-letter streams (`chat:dead:{T}`). */
@Injectable()
export class DeadLetters {
  constructor(
    private readonly redis: RedisConnections,
    private readonly config: AppConfig,
    private readonly keys: KeyLayout,
  ) {}

  /** Dead-letters an entry that never became a message (it did not decode). */
  async add(deadStream: string, letter: DeadLetter): Promise<void> {
    await this.redis.commands.xadd(
      deadStream,
      'MAXLEN',
      '~',
      this.config.redis.streamMaxLen,
      '*',
      ...encodeEnvelope('chat.dead_letter', letter),
    );
  }

  /**
   * Deletes a session's dead letters (they keep the user's text) among the newest DEAD_LETTER_SCAN
   * of its partition: dead letters are rare, so a conversation's are almost always there. Returns how many went.
   */
  async deleteOf(sessionId: string): Promise<number> {
    const stream = this.keys.partitionOf(sessionId).dead;
    const ids: string[] = [];
    let before = '+';
    for (let read = 0; read < DEAD_LETTER_SCAN; read += DEAD_LETTER_PAGE) {
      const page = parseRangeReply(await this.redis.commands.xrevrange(stream, before, '-', 'COUNT', DEAD_LETTER_PAGE));
      for (const entry of page) if (deadLetterSession(entry.fields) === sessionId) ids.push(entry.id);
      if (page.length < DEAD_LETTER_PAGE) break;
      before = `(${page[page.length - 1].id}`;
    }
    if (ids.length) await this.redis.commands.xdel(stream, ...ids);
    return ids.length;
  }
}

/** The sessionId a dead letter's envelope names, or null. */
function deadLetterSession(fields: readonly string[]): string | null {
  const at = fields.indexOf('data');
  if (at < 0 || at % 2 !== 0 || at + 1 >= fields.length) return null;
  try {
    const data: unknown = JSON.parse(fields[at + 1]);
    if (typeof data !== 'object' || data === null) return null;
    const { sessionId } = data as { sessionId?: unknown };
    return typeof sessionId === 'string' ? sessionId : null;
  } catch {
    return null;
  }
}
