import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { appConnections, freshRedis, readCommandOf } from '../../test/support/test-redis';
import { decodeCommand, decodeEvent, DeliveredEvent } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { KeyLayout } from '../event-bus/stream-names';
import { parseRangeReply } from '../event-bus/stream-reply';
import { MessageRef, MessageStore } from './message-store';

/**
 * Regenerate and edit at the store (docs/design.md, "Regenerate and edit"): a send that names the
 * session's last message replaces it, only once that message has ended. Real scripts, real Redis.
 */

/** Every field a message keeps in the session hash besides `c:<clientMessageId>` (lib.lua MESSAGE_FIELDS). */
const MESSAGE_FIELDS = [':user', ':assistant', ':status', ':attempt', ':owner', ':cancel', ':resume', ':cid', ':ut', ':at', ':ctx'];

describe('MessageStore: a send that replaces the last message (real Redis)', () => {
  let redis: Redis;
  let connections: RedisConnections;
  let layout: KeyLayout;
  let store: MessageStore;

  beforeAll(async () => {
    Logger.overrideLogger(['error']);
    redis = await freshRedis();
    const app = await appConnections();
    connections = app.connections;
    layout = new KeyLayout(app.config.redis.partitions);
    store = new MessageStore(connections, app.config, layout);
  });

  afterAll(async () => {
    await connections.onApplicationShutdown();
    await redis.quit();
  });

  const part = (content: string) => ({ content, createdAt: new Date().toISOString() });
  const newSession = () => `s-${randomUUID()}`;
  const newRef = (sessionId: string): MessageRef => ({ sessionId, messageId: `m-${randomUUID()}` });

  async function send(ref: MessageRef, content: string, clientMessageId: string | null = null, replaces: string | null = null) {
    return store.send(ref, clientMessageId, part(content), { tokens: 3, replaces });
  }

  /** Reads the message's command through the `ai-workers` group and starts it, as a worker does. */
  async function start(ref: MessageRef): Promise<{ entryId: string; attempt: number }> {
    const entryId = await readCommandOf(redis, layout, ref);
    const started = await store.start(ref, entryId, 'w1', null);
    if (started.result !== 'started') throw new Error(`not started: ${started.result}`);
    return { entryId, attempt: started.attempt };
  }

  async function complete(ref: MessageRef, answer: string): Promise<void> {
    const { entryId, attempt } = await start(ref);
    const payload = { ...ref, content: answer, usage: { promptTokens: 1, completionTokens: 1 } };
    expect((await store.finish(ref, entryId, attempt, part(answer), { type: 'chat.completed', payload }, null, 2)).result).toBe(
      'completed',
    );
  }

  /** The session's logged events, in order. */
  async function logOf(sessionId: string): Promise<DeliveredEvent[]> {
    return parseRangeReply(await redis.xrange(layout.session(sessionId).events, '-', '+')).flatMap((entry) => {
      const decoded = decodeEvent(entry.fields);
      return decoded.ok ? [{ ...decoded.value, eventId: entry.id }] : [];
    });
  }

  /** The messages of the session with a command in its partition's incoming stream. */
  async function commandsOf(sessionId: string): Promise<string[]> {
    return parseRangeReply(await redis.xrange(layout.partitionOf(sessionId).incoming, '-', '+')).flatMap((entry) => {
      const decoded = decodeCommand(entry.fields);
      return decoded.ok && decoded.value.payload.sessionId === sessionId ? [decoded.value.payload.messageId] : [];
    });
  }

  /** The session hash's fields that belong to `messageId` (or name its clientMessageId). */
  async function fieldsOf(sessionId: string, messageId: string, clientMessageId: string): Promise<string[]> {
    const fields = await redis.hkeys(layout.session(sessionId).hash);
    return fields.filter((f) => f.startsWith(`${messageId}:`) || f === `c:${clientMessageId}`).sort();
  }

  it('refuses not_last when the named message is not the last, and changes nothing', async () => {
    const sid = newSession();
    const [first, second, other] = [newRef(sid), newRef(sid), newRef(sid)];
    await send(first, 'one');
    await complete(first, 'answer one');
    await send(second, 'two');
    await complete(second, 'answer two');
    const before = { log: await logOf(sid), hash: await redis.hgetall(layout.session(sid).hash) };

    expect(await send(other, 'one again', 'c-again', first.messageId)).toEqual({ result: 'not_last' });

    expect(await redis.lrange(layout.session(sid).order, 0, -1)).toEqual([first.messageId, second.messageId]);
    expect(await redis.hgetall(layout.session(sid).hash)).toEqual(before.hash);
    expect(await logOf(sid)).toEqual(before.log);
    expect(await commandsOf(sid)).not.toContain(other.messageId);
  });

  it('refuses not_ended when the last message is still queued or streaming', async () => {
    const sid = newSession();
    const [first, second] = [newRef(sid), newRef(sid)];
    await send(first, 'one');
    await complete(first, 'answer one');
    await send(second, 'two');

    expect(await send(newRef(sid), 'two again', null, second.messageId)).toEqual({ result: 'not_ended' });
    await start(second);
    expect(await send(newRef(sid), 'two again', null, second.messageId)).toEqual({ result: 'not_ended' });

    expect(await redis.lrange(layout.session(sid).order, 0, -1)).toEqual([first.messageId, second.messageId]);
    expect((await logOf(sid)).filter((e) => e.type === 'chat.user_message')).toHaveLength(2);
    expect(await redis.hget(layout.session(sid).hash, `${second.messageId}:status`)).toBe('streaming');
  });

  describe('the last message, ended, replaced', () => {
    const sid = newSession();
    const first = newRef(sid);
    const old = newRef(sid);
    const replacement = newRef(sid);
    let queued: Awaited<ReturnType<MessageStore['send']>>;

    beforeAll(async () => {
      await send(first, 'one');
      await complete(first, 'answer one');
      // the message to replace leaves every field a message can have: a cancel mark and both counts
      await send(old, 'two', 'c-old');
      const { entryId, attempt } = await start(old);
      expect(await store.cancel(old, false)).toEqual({ result: 'signal', owner: 'w1' });
      const payload = { ...old, content: 'partial', usage: { promptTokens: 1, completionTokens: 1 } };
      expect((await store.finish(old, entryId, attempt, part('partial'), { type: 'chat.completed', payload }, null, 2)).result).toBe(
        'cancelled',
      );
      expect(await fieldsOf(sid, old.messageId, 'c-old')).toEqual(['c:c-old', ...MESSAGE_FIELDS.map((s) => old.messageId + s)].sort());

      queued = await send(replacement, 'two, edited', 'c-new', old.messageId);
    });

    it('is accepted and queued for the workers like a send to an idle session', async () => {
      expect(queued).toMatchObject({ result: 'queued', ahead: 0 });
      expect(await commandsOf(sid)).toContain(replacement.messageId);
      expect(await redis.hget(layout.session(sid).hash, 'active')).toBe(replacement.messageId);
      expect(await redis.zscore(layout.partitionOf(sid).backlog, replacement.messageId)).not.toBeNull();
    });

    it('removes the old message from the history, the order and the hash (its clientMessageId too)', async () => {
      expect(await fieldsOf(sid, old.messageId, 'c-old')).toEqual([]);
      expect(await redis.lrange(layout.session(sid).order, 0, -1)).toEqual([first.messageId, replacement.messageId]);
      expect((await store.history(sid)).map((m) => [m.messageId, m.role, m.content])).toEqual([
        [first.messageId, 'user', 'one'],
        [first.messageId, 'assistant', 'answer one'],
        [replacement.messageId, 'user', 'two, edited'],
      ]);
    });

    it('announces the new message with `replaces` naming the old one', async () => {
      const announced = (await logOf(sid)).filter((e) => e.type === 'chat.user_message').at(-1);
      expect(announced).toMatchObject({
        type: 'chat.user_message',
        payload: { ...replacement, content: 'two, edited', replaces: old.messageId },
      });
      if (queued.result !== 'queued') throw new Error(queued.result);
      expect(announced?.eventId).toBe(queued.eventId);
    });

    it('answers a repeat of the same clientMessageId with the new messageId, replacing nothing more', async () => {
      const logged = (await logOf(sid)).length;
      expect(await send(newRef(sid), 'two, edited', 'c-new', old.messageId)).toEqual({
        result: 'duplicate',
        messageId: replacement.messageId,
      });
      expect(await redis.lrange(layout.session(sid).order, 0, -1)).toEqual([first.messageId, replacement.messageId]);
      expect(await logOf(sid)).toHaveLength(logged);
    });

    it("leaves the replaced turn out of the new message's context", async () => {
      const { incoming } = layout.partitionOf(sid);
      const entryId = (await redis.xrange(incoming, '-', '+')).find(([, fields]) => fields.join(' ').includes(replacement.messageId))?.[0];
      if (!entryId) throw new Error('the replacement has no command');
      const started = await store.start(replacement, entryId, 'w2', null);
      expect(started).toMatchObject({ result: 'started', contextInfo: { messages: 2, omitted: false } });
      expect(started.result === 'started' && started.context).toEqual([
        { role: 'user', content: 'one' },
        { role: 'assistant', content: 'answer one' },
      ]);
    });
  });

  it('drops the title when the first message is replaced (the new first answer gets a new one), and keeps it for a later one', async () => {
    const sid = newSession();
    const [first, again] = [newRef(sid), newRef(sid)];
    await send(first, 'one');
    await complete(first, 'answer one');
    expect(await store.setTitle(first, 'About one')).toBe('titled');
    expect((await send(again, 'one, again', null, first.messageId)).result).toBe('queued');
    expect((await store.conversation(sid)).title).toBeNull();
    const started = await start(again);
    expect(started.attempt).toBe(1);

    const sid2 = newSession();
    const [a, b, c] = [newRef(sid2), newRef(sid2), newRef(sid2)];
    await send(a, 'a');
    await complete(a, 'answer a');
    await store.setTitle(a, 'About a');
    await send(b, 'b');
    await complete(b, 'answer b');
    expect((await send(c, 'b, again', null, b.messageId)).result).toBe('queued');
    expect((await store.conversation(sid2)).title).toBe('About a');
  });

  it('queues a replacement behind the message still running when the replaced one ended before it', async () => {
    const sid = newSession();
    const [running, cancelled, replacement] = [newRef(sid), newRef(sid), newRef(sid)];
    await send(running, 'one');
    await start(running);
    expect(await send(cancelled, 'two')).toMatchObject({ result: 'queued', ahead: 1 });
    expect(await store.cancel(cancelled, false)).toMatchObject({ result: 'cancelled' });

    expect(await send(replacement, 'two again', null, cancelled.messageId)).toMatchObject({ result: 'queued', ahead: 1 });

    const keys = layout.session(sid);
    expect(await redis.lrange(keys.order, 0, -1)).toEqual([running.messageId, replacement.messageId]);
    expect(await redis.lrange(keys.queue, 0, -1)).toEqual([replacement.messageId]);
    expect(await redis.hget(keys.hash, 'active')).toBe(running.messageId);
    expect(await commandsOf(sid)).not.toContain(replacement.messageId);
  });
});
