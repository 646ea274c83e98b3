import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { appConnections, freshRedis, testRedisUrl } from '../../test/support/test-redis';
import { AppConfig } from '../config/app-config';
import { validateEnvironment } from '../config/environment';
import { decodeCommand, decodeEvent, DeliveredEvent, FINAL_EVENT_TYPES } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { KeyLayout, PartitionKeys, WORKER_GROUP } from '../event-bus/stream-names';
import { parseRangeReply, parseReadReply } from '../event-bus/stream-reply';
import { MessageRef, MessageStore, RedisRewoundError } from './message-store';

/**
 * The message state machine against a real Redis (docs/design.md): each transition is one script,
 * so these tests drive the scripts as the API and a worker would and read what they left behind.
 */
describe('MessageStore (real Redis)', () => {
  let redis: Redis;
  let connections: RedisConnections;
  let config: AppConfig;
  let layout: KeyLayout;
  let store: MessageStore;

  beforeAll(async () => {
    redis = await freshRedis();
    const app = await appConnections();
    connections = app.connections;
    config = app.config;
    layout = new KeyLayout(config.redis.partitions);
    store = new MessageStore(connections, config, layout);
  });

  afterAll(async () => {
    await connections.onApplicationShutdown();
    await redis.quit();
  });

  const user = (content: string) => ({ content, createdAt: new Date().toISOString() });
  const reply = (content: string) => ({ content, createdAt: new Date().toISOString() });
  const newSession = () => `s-${randomUUID()}`;
  const usage = { promptTokens: 1, completionTokens: 1 };

  /** `count` session ids that fall in one partition (of `keys`). */
  function sessionsInOnePartition(count: number, keys = layout): string[] {
    const first = newSession();
    const partition = keys.partitionOf(first).index;
    const ids = [first];
    while (ids.length < count) {
      const id = newSession();
      if (keys.partitionOf(id).index === partition) ids.push(id);
    }
    return ids;
  }

  async function ensureGroup(partition: PartitionKeys): Promise<void> {
    try {
      await redis.xgroup('CREATE', partition.incoming, WORKER_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!/BUSYGROUP/.test((err as Error).message)) throw err;
    }
  }

  /** What a worker reads from the session's partition: the head commands waiting there. */
  async function claim(sessionId: string, keys = layout): Promise<{ entryId: string; ref: MessageRef }[]> {
    const partition = keys.partitionOf(sessionId);
    await ensureGroup(partition);
    const raw: unknown = await redis.xreadgroup('GROUP', WORKER_GROUP, 'w1', 'COUNT', 100, 'STREAMS', partition.incoming, '>');
    return parseReadReply(raw)
      .map((entry) => {
        const decoded = decodeCommand(entry.fields);
        if (!decoded.ok) throw new Error(decoded.reason);
        return { entryId: entry.id, ref: decoded.value.payload };
      })
      .filter((command) => command.ref.sessionId === sessionId);
  }

  /** The session's events in its partition's stream, in order. */
  async function eventsOf(sessionId: string, keys = layout): Promise<DeliveredEvent[]> {
    const entries = parseRangeReply(await redis.xrange(keys.partitionOf(sessionId).outgoing, '-', '+'));
    const events: DeliveredEvent[] = [];
    for (const entry of entries) {
      const decoded = decodeEvent(entry.fields);
      if (decoded.ok && decoded.value.payload.sessionId === sessionId) events.push({ ...decoded.value, eventId: entry.id });
    }
    return events;
  }

  const typesOf = (events: DeliveredEvent[], messageId?: string) =>
    events.filter((e) => messageId === undefined || e.payload.messageId === messageId).map((e) => e.type);

  async function logIdsOf(sessionId: string): Promise<string[]> {
    return (await redis.xrange(layout.session(sessionId).events, '-', '+')).map(([id]) => id);
  }

  /** Sends, and returns the ref. */
  async function send(sessionId: string, content = 'hi', clientMessageId: string | null = null): Promise<MessageRef> {
    const ref = { sessionId, messageId: randomUUID() };
    const outcome = await store.send(ref, clientMessageId, user(content));
    expect(outcome.result).toBe('queued');
    return ref;
  }

  /**
   * Claims the session's commands and starts them as a worker would: a command whose message ended
   * meanwhile (cancelled before it started) is acknowledged by `start` and skipped. Returns what the
   * worker then holds.
   */
  async function startHead(sessionId: string, consumer = 'w1'): Promise<{ entryId: string; ref: MessageRef; attempt: number }> {
    const skipped: string[] = [];
    for (const command of await claim(sessionId)) {
      const started = await store.start(command.ref, command.entryId, consumer, null);
      if (started.result === 'started') return { ...command, attempt: started.attempt };
      skipped.push(started.result);
    }
    throw new Error(`nothing started (${skipped.join(', ') || 'no command'})`);
  }

  it("send queues the session's head for the workers and keeps the rest waiting in the session", async () => {
    const sid = newSession();
    const keys = layout.session(sid);
    const first = { sessionId: sid, messageId: randomUUID() };
    const second = { sessionId: sid, messageId: randomUUID() };
    expect(await store.send(first, null, user('one'))).toMatchObject({ result: 'queued', ahead: 0 });
    expect(await store.send(second, null, user('two'))).toMatchObject({ result: 'queued', ahead: 1 });
    // only the head is claimable: one command, for the first message
    expect((await claim(sid)).map((c) => c.ref)).toEqual([first]);
    expect(await redis.lrange(keys.queue, 0, -1)).toEqual([second.messageId]);
    expect(await redis.hget(keys.hash, 'active')).toBe(first.messageId);
    expect(await redis.lrange(keys.order, 0, -1)).toEqual([first.messageId, second.messageId]);
    expect(await redis.zscore(keys.partition.backlog, second.messageId)).not.toBeNull();
    // each got its chat.user_message; the waiting one a chat.status (live only, not in the log)
    const events = await eventsOf(sid);
    expect(typesOf(events)).toEqual(['chat.user_message', 'chat.user_message', 'chat.status']);
    expect(events[2].payload).toMatchObject({ messageId: second.messageId, state: 'queued', ahead: 1 });
    expect(await logIdsOf(sid)).toEqual([events[0].eventId, events[1].eventId]);
    expect(await store.history(sid)).toEqual([
      expect.objectContaining({ messageId: first.messageId, role: 'user', content: 'one', status: 'queued' }),
      expect.objectContaining({ messageId: second.messageId, role: 'user', content: 'two', status: 'queued' }),
    ]);
  });

  it('finish ends the head and queues the next message in the same step; events come in state order', async () => {
    const sid = newSession();
    const first = await send(sid, 'one');
    const second = await send(sid, 'two');
    const held = await startHead(sid);
    expect(held.ref).toEqual(first);
    expect(await store.emit(first, held.attempt, { type: 'chat.delta', payload: { ...first, delta: 'Hel' } }, reply('Hel'))).toMatchObject({
      result: 'emitted',
    });
    const done = await store.finish(first, held.entryId, held.attempt, reply('Hello'), {
      type: 'chat.completed',
      payload: { ...first, content: 'Hello', usage },
    });
    expect(done.result).toBe('completed');
    // acknowledged and deleted; the next message is the head now, and claimable
    expect(await redis.xlen(layout.partitionOf(sid).incoming)).toBe(1);
    expect((await claim(sid)).map((c) => c.ref)).toEqual([second]);
    expect(await redis.hget(layout.session(sid).hash, 'active')).toBe(second.messageId);
    expect(await redis.zscore(layout.partitionOf(sid).backlog, first.messageId)).toBeNull();
    expect(typesOf(await eventsOf(sid), first.messageId)).toEqual(['chat.user_message', 'chat.started', 'chat.delta', 'chat.completed']);
    const history = await store.history(sid);
    expect(history.find((m) => m.messageId === first.messageId && m.role === 'assistant')).toMatchObject({
      content: 'Hello',
      status: 'completed',
    });
  });

  it("fences a stale attempt: after a takeover the old worker's emit and finish write nothing", async () => {
    const sid = newSession();
    const ref = await send(sid);
    const stale = await startHead(sid, 'w-old');
    // another worker takes the message over (the old one looked dead): attempt + 1
    const taken = await store.start(ref, stale.entryId, 'w-new', null);
    expect(taken).toMatchObject({ result: 'started', attempt: stale.attempt + 1 });
    const before = (await eventsOf(sid)).length;
    expect(await store.emit(ref, stale.attempt, { type: 'chat.delta', payload: { ...ref, delta: 'late' } }, reply('late'))).toEqual({
      result: 'fenced',
    });
    expect(
      await store.finish(ref, stale.entryId, stale.attempt, reply('late'), {
        type: 'chat.completed',
        payload: { ...ref, content: 'late', usage },
      }),
    ).toEqual({ result: 'fenced' });
    // a retry by the old worker, still holding its attempt, is fenced too
    expect(await store.start(ref, stale.entryId, 'w-old', stale.attempt)).toEqual({ result: 'fenced' });
    expect(await eventsOf(sid)).toHaveLength(before);
    // the new attempt writes
    const attempt = stale.attempt + 1;
    expect(await store.emit(ref, attempt, { type: 'chat.delta', payload: { ...ref, delta: 'new' } }, reply('new'))).toMatchObject({
      result: 'emitted',
    });
    expect(
      await store.finish(ref, stale.entryId, attempt, reply('new'), { type: 'chat.completed', payload: { ...ref, content: 'new', usage } }),
    ).toMatchObject({ result: 'completed' });
    expect(typesOf(await eventsOf(sid))).toEqual(['chat.user_message', 'chat.started', 'chat.started', 'chat.delta', 'chat.completed']);
    expect((await store.history(sid)).find((m) => m.role === 'assistant')).toMatchObject({ content: 'new', status: 'completed' });
  });

  it('an attempt Redis lost (failover to a replica that missed the start) is a Redis failure, not a fence: nothing is written', async () => {
    const sid = newSession();
    const ref = await send(sid);
    const held = await startHead(sid, 'w-1');
    // what a replica promoted before it received `start` holds: the message still queued, no attempt
    await redis.hset(layout.session(sid).hash, `${ref.messageId}:status`, 'queued');
    await redis.hdel(layout.session(sid).hash, `${ref.messageId}:attempt`);
    const before = (await eventsOf(sid)).length;
    await expect(store.emit(ref, held.attempt, { type: 'chat.delta', payload: { ...ref, delta: 'x' } }, reply('x'))).rejects.toThrow(
      RedisRewoundError,
    );
    await expect(
      store.finish(ref, held.entryId, held.attempt, reply('x'), { type: 'chat.completed', payload: { ...ref, content: 'x', usage } }),
    ).rejects.toThrow(RedisRewoundError);
    expect(await eventsOf(sid)).toHaveLength(before);
    // run again (the worker's redo, above the lost attempt: clients that saw it discard its deltas)
    expect(await store.start(ref, held.entryId, 'w-1', null, held.attempt)).toMatchObject({ result: 'started', attempt: held.attempt + 1 });
    // ended, so nothing of it stays in the partition's streams and backlog that other tests count
    expect(
      await store.finish(ref, held.entryId, held.attempt + 1, reply('y'), {
        type: 'chat.completed',
        payload: { ...ref, content: 'y', usage },
      }),
    ).toMatchObject({ result: 'completed' });
  });

  it('a completion while a cancel is recorded ends as cancelled', async () => {
    const sid = newSession();
    const ref = await send(sid);
    const held = await startHead(sid, 'w-owner');
    expect(await store.cancel(ref, false)).toEqual({ result: 'signal', owner: 'w-owner' });
    // the worker's next write sees the mark
    expect(await store.emit(ref, held.attempt, { type: 'chat.delta', payload: { ...ref, delta: 'x' } }, reply('x'))).toMatchObject({
      result: 'cancel_requested',
    });
    const done = await store.finish(ref, held.entryId, held.attempt, reply('x'), {
      type: 'chat.completed',
      payload: { ...ref, content: 'x', usage },
    });
    expect(done.result).toBe('cancelled');
    const events = await eventsOf(sid);
    expect(events.at(-1)).toMatchObject({ type: 'chat.cancelled', payload: ref });
    expect(typesOf(events).filter((t) => FINAL_EVENT_TYPES.has(t))).toEqual(['chat.cancelled']);
    expect((await store.history(sid)).find((m) => m.role === 'assistant')).toMatchObject({ content: 'x', status: 'cancelled' });
  });

  it('a forced cancel (the owner is dead) ends a streaming message at once and fences its worker', async () => {
    const sid = newSession();
    const ref = await send(sid);
    const held = await startHead(sid);
    await store.emit(ref, held.attempt, { type: 'chat.delta', payload: { ...ref, delta: 'part' } }, reply('part'));
    expect(await store.cancel(ref, true)).toMatchObject({ result: 'cancelled' });
    expect(
      await store.finish(ref, held.entryId, held.attempt, reply('all'), {
        type: 'chat.completed',
        payload: { ...ref, content: 'all', usage },
      }),
    ).toEqual({ result: 'ended', status: 'cancelled' });
    expect((await store.history(sid)).find((m) => m.role === 'assistant')).toMatchObject({ content: 'part', status: 'cancelled' });
    expect(await store.cancel(ref, false)).toEqual({ result: 'ended' });
    expect(await store.cancel({ sessionId: sid, messageId: 'unknown' }, false)).toEqual({ result: 'gone' });
  });

  it('a cancel of a waiting message takes it out of the queue; the chain goes on without it', async () => {
    const sid = newSession();
    const keys = layout.session(sid);
    const first = await send(sid, 'one');
    const second = await send(sid, 'two');
    const third = await send(sid, 'three');
    expect(await store.cancel(second, false)).toMatchObject({ result: 'cancelled' });
    expect(await redis.lrange(keys.queue, 0, -1)).toEqual([third.messageId]);
    expect(await redis.zscore(keys.partition.backlog, second.messageId)).toBeNull();
    const held = await startHead(sid);
    expect(held.ref).toEqual(first);
    await store.finish(first, held.entryId, held.attempt, reply('a'), {
      type: 'chat.completed',
      payload: { ...first, content: 'a', usage },
    });
    expect((await claim(sid)).map((c) => c.ref)).toEqual([third]);
    // cancelling the head before it started advances the chain too
    expect(await store.cancel(third, false)).toMatchObject({ result: 'cancelled' });
    expect(await redis.hget(keys.hash, 'active')).toBeNull();
    expect(typesOf(await eventsOf(sid), second.messageId)).toEqual(['chat.user_message', 'chat.status', 'chat.cancelled']);
  });

  it("clear ends unfinished messages with chat.cancelled and deletes the session's events from the partition's stream", async () => {
    const [sid, neighbour] = sessionsInOnePartition(2);
    const keys = layout.session(sid);
    const other = await send(neighbour, 'not deleted');
    const done = await send(sid, 'SECRET-1');
    const heldDone = await startHead(sid);
    await store.finish(done, heldDone.entryId, heldDone.attempt, reply('SECRET-2'), {
      type: 'chat.completed',
      payload: { ...done, content: 'SECRET-2', usage },
    });
    const streaming = await send(sid, 'SECRET-3');
    const waiting = await send(sid, 'SECRET-4');
    const held = await startHead(sid);
    expect(held.ref).toEqual(streaming);
    await store.emit(streaming, held.attempt, { type: 'chat.delta', payload: { ...streaming, delta: 'SECRET-5' } }, reply('SECRET-5'));

    const cleared = await store.clear(sid, 60);
    expect(cleared.streaming).toEqual([streaming.messageId]);
    expect(cleared.eventsDeleted).toBeGreaterThan(5);
    // what is left of the session: one chat.cancelled per unfinished message, in the stream and the
    // log, and the chat.status events, which carry no text and were never logged (clear finds the
    // events to delete through the log)
    const events = (await eventsOf(sid)).filter((e) => e.type !== 'chat.status');
    expect(events.map((e) => [e.type, e.payload.messageId])).toEqual([
      ['chat.cancelled', streaming.messageId],
      ['chat.cancelled', waiting.messageId],
    ]);
    expect(await logIdsOf(sid)).toEqual(events.map((e) => e.eventId));
    expect(JSON.stringify(await redis.xrange(keys.partition.outgoing, '-', '+'))).not.toMatch(/SECRET/);
    // the neighbour in the same partition keeps its events
    expect(typesOf(await eventsOf(neighbour), other.messageId)).toEqual(['chat.user_message']);
    expect(await redis.exists(keys.hash, keys.order, keys.queue)).toBe(0);
    expect(await redis.exists(keys.revoked, keys.deleted)).toBe(2);
    expect(await redis.zscore(keys.partition.backlog, waiting.messageId)).toBeNull();
    expect(await store.history(sid)).toEqual([]);
    // the streaming message's worker finds it gone; the deleted mark says to stay silent
    expect(await store.emit(streaming, held.attempt, { type: 'chat.delta', payload: { ...streaming, delta: 'x' } })).toEqual({
      result: 'gone',
    });
    expect(await store.lost(streaming, '', { code: 'message_lost', message: 'lost' })).toBe('deleted');
    // and the session is refused from now on
    expect(await store.send({ sessionId: sid, messageId: randomUUID() }, null, user('again'))).toEqual({ result: 'revoked' });
  });

  it('lost: a message missing from a session that is still there was trimmed (silent); one missing with its session was lost (chat.failed)', async () => {
    const sid = newSession();
    const ref = { sessionId: sid, messageId: randomUUID() };
    expect((await store.send(ref, null, user('one'))).result).toBe('queued');
    const held = await startHead(sid);
    const error = { code: 'message_lost', message: 'lost' };
    // its fields gone (trimmed after it ended elsewhere), the session still there: nothing to announce
    await redis.hdel(layout.session(sid).hash, `${ref.messageId}:status`);
    expect(await store.lost(ref, held.entryId, error)).toBe('trimmed');
    expect((await eventsOf(sid)).filter((e) => e.type === 'chat.failed')).toHaveLength(0);
    // the whole session gone without a delete (Redis lost its data): the message fails visibly, once
    await redis.del(layout.session(sid).hash);
    expect(await store.lost(ref, held.entryId, error)).toBe('announced');
    expect((await eventsOf(sid)).filter((e) => e.type === 'chat.failed')).toHaveLength(1);
    expect(await redis.zscore(layout.partitionOf(sid).backlog, ref.messageId)).toBeNull();
  });

  it('answers a repeated clientMessageId with the first messageId, queueing nothing', async () => {
    const sid = newSession();
    const first = await send(sid, 'once', 'client-1');
    const again = await store.send({ sessionId: sid, messageId: randomUUID() }, 'client-1', user('once'));
    expect(again).toEqual({ result: 'duplicate', messageId: first.messageId });
    expect(typesOf(await eventsOf(sid))).toEqual(['chat.user_message']);
    expect(await redis.llen(layout.session(sid).order)).toBe(1);
    // another clientMessageId is another message
    await send(sid, 'twice', 'client-2');
    expect(await redis.llen(layout.session(sid).order)).toBe(2);
  });

  it('bounds the backlog per partition and the waiting messages per session', async () => {
    // 4 partitions, MAX_BACKLOG 8: at most 2 unfinished messages per partition
    const small = new AppConfig(
      validateEnvironment({ REDIS_URL: testRedisUrl(), PARTITIONS: '4', MAX_BACKLOG: '8', MAX_QUEUED_PER_SESSION: '1' }),
    );
    const smallLayout = new KeyLayout(4);
    const bounded = new MessageStore(connections, small, smallLayout);
    expect(bounded.partitionBacklogBound).toBe(2);
    const [a, b, c] = sessionsInOnePartition(3, smallLayout);
    const ref = (sessionId: string) => ({ sessionId, messageId: randomUUID() });

    expect((await bounded.send(ref(a), null, user('1'))).result).toBe('queued');
    expect((await bounded.send(ref(a), null, user('2'))).result).toBe('queued');
    // the partition's backlog is full: refused, whichever session sends (and checked before the session's queue)
    expect(await bounded.send(ref(a), null, user('3'))).toEqual({ result: 'backlog_full', backlog: 2 });
    expect(await bounded.send(ref(b), null, user('1'))).toEqual({ result: 'backlog_full', backlog: 2 });
    expect(typesOf(await eventsOf(b, smallLayout))).toEqual([]);

    // a roomier partition backlog: the session's own queue bound answers
    const roomy = new MessageStore(
      connections,
      new AppConfig(validateEnvironment({ REDIS_URL: testRedisUrl(), PARTITIONS: '4', MAX_BACKLOG: '400', MAX_QUEUED_PER_SESSION: '1' })),
      smallLayout,
    );
    expect((await roomy.send(ref(c), null, user('1'))).result).toBe('queued');
    expect((await roomy.send(ref(c), null, user('2'))).result).toBe('queued');
    expect(await roomy.send(ref(c), null, user('3'))).toEqual({ result: 'queue_full', waiting: 1 });
  });

  it('writes exactly one final event per message, whatever else is tried on it', async () => {
    // in a partition no earlier test left anything in: the counts below are the partition's
    const used = async (id: string) => {
      const p = layout.partitionOf(id);
      return (await redis.zcard(p.backlog)) + (await redis.xlen(p.incoming)) + (await redis.xlen(p.dead)) > 0;
    };
    let sid = newSession();
    while (await used(sid)) sid = newSession();
    const completed = await send(sid, 'a');
    const cancelledWaiting = await send(sid, 'b');
    const failed = await send(sid, 'c');
    const cancelledRunning = await send(sid, 'd');

    let held = await startHead(sid);
    await store.finish(completed, held.entryId, held.attempt, reply('a'), {
      type: 'chat.completed',
      payload: { ...completed, content: 'a', usage },
    });
    // late and repeated attempts to end it again
    await store.cancel(completed, false);
    await store.cancel(completed, true);
    await store.finish(completed, held.entryId, held.attempt, reply('a'), {
      type: 'chat.completed',
      payload: { ...completed, content: 'a', usage },
    });
    await store.finish(completed, held.entryId, held.attempt, reply(''), {
      type: 'chat.failed',
      payload: { ...completed, error: { code: 'x', message: 'x' } },
    });

    await store.cancel(cancelledWaiting, false);
    await store.cancel(cancelledWaiting, false);

    held = await startHead(sid);
    expect(held.ref).toEqual(failed);
    const error = { code: 'model_error', message: 'boom' };
    await store.finish(
      failed,
      held.entryId,
      held.attempt,
      reply(''),
      { type: 'chat.failed', payload: { ...failed, error } },
      { reason: 'boom' },
    );
    await store.lost(failed, held.entryId, error);
    await store.finish(failed, held.entryId, held.attempt, reply(''), { type: 'chat.failed', payload: { ...failed, error } });

    held = await startHead(sid);
    expect(held.ref).toEqual(cancelledRunning);
    await store.cancel(cancelledRunning, false);
    await store.cancel(cancelledRunning, true);
    await store.cancel(cancelledRunning, true);
    await store.finish(cancelledRunning, held.entryId, held.attempt, reply('d'), {
      type: 'chat.completed',
      payload: { ...cancelledRunning, content: 'd', usage },
    });

    const events = await eventsOf(sid);
    const finals = events.filter((e) => FINAL_EVENT_TYPES.has(e.type)).map((e) => [e.payload.messageId, e.type]);
    expect(finals).toEqual([
      [completed.messageId, 'chat.completed'],
      [cancelledWaiting.messageId, 'chat.cancelled'],
      [failed.messageId, 'chat.failed'],
      [cancelledRunning.messageId, 'chat.cancelled'],
    ]);
    // the failure was dead-lettered once
    expect(await redis.xlen(layout.partitionOf(sid).dead)).toBe(1);
    expect(await redis.zcard(layout.partitionOf(sid).backlog)).toBe(0);
    expect(await redis.xlen(layout.partitionOf(sid).incoming)).toBe(0);
  });
});
