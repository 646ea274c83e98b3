import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { eventually } from '../../test/support/eventually';
import { freePort } from '../../test/support/redis-server';
import { appConnections, freshRedis } from '../../test/support/test-redis';
import { DeliveredEvent, encodeEvent } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { SessionEventLog } from '../event-bus/session-event-log';
import { KeyLayout, WORKER_GROUP } from '../event-bus/stream-names';
import { parseReadReply } from '../event-bus/stream-reply';
import { MessageRef, MessageStore } from '../history/message-store';
import { ChatEventsRelay } from './chat-events.relay';
import { ResumableEvents } from './resumable-events';
import { SessionEventHub } from './session-event-hub';

const deltaOf = (event: DeliveredEvent): string => (event.type === 'chat.delta' ? event.payload.delta : `(${event.type})`);

describe('ChatEventsRelay and ResumableEvents (real Redis)', () => {
  let redis: Redis;
  let connections: RedisConnections;
  let layout: KeyLayout;
  let store: MessageStore;
  let hub: SessionEventHub;
  let relay: ChatEventsRelay;
  let resumable: ResumableEvents;
  const sunk: DeliveredEvent[] = [];

  beforeAll(async () => {
    Logger.overrideLogger(['error']);
    redis = await freshRedis();
    const app = await appConnections();
    connections = app.connections;
    layout = new KeyLayout(app.config.redis.partitions);
    store = new MessageStore(connections, app.config, layout);
    hub = new SessionEventHub();
    relay = new ChatEventsRelay(connections, layout, hub);
    relay.onEvent((event) => sunk.push(event));
    resumable = new ResumableEvents(relay, hub, new SessionEventLog(connections, layout));
  });

  afterAll(async () => {
    await relay.stop();
    await connections.onApplicationShutdown();
    await redis.quit();
  });

  const newSession = () => `s-${randomUUID()}`;

  /** A session whose one message is streaming: what a worker holds. */
  async function streamingMessage(sessionId = newSession()): Promise<{ ref: MessageRef; attempt: number }> {
    const ref = { sessionId, messageId: randomUUID() };
    expect((await store.send(ref, null, { content: 'hi', createdAt: new Date().toISOString() })).result).toBe('queued');
    const partition = layout.partitionOf(sessionId);
    await redis.xgroup('CREATE', partition.incoming, WORKER_GROUP, '0', 'MKSTREAM').catch(() => undefined);
    for (const entry of parseReadReply(
      await redis.xreadgroup('GROUP', WORKER_GROUP, 'w', 'COUNT', 100, 'STREAMS', partition.incoming, '>'),
    )) {
      if (!entry.fields.join(' ').includes(ref.messageId)) continue;
      const started = await store.start(ref, entry.id, 'w', null);
      if (started.result === 'started') return { ref, attempt: started.attempt };
    }
    throw new Error('not started');
  }

  const delta = (ref: MessageRef, text: string) => ({ type: 'chat.delta' as const, payload: { ...ref, delta: text } });

  /** A session in another partition than `sessionId`'s. */
  function sessionElsewhere(sessionId: string): string {
    for (;;) {
      const other = newSession();
      if (layout.partitionOf(other).index !== layout.partitionOf(sessionId).index) return other;
    }
  }

  it('delivers what is written once the watch resolved, to the sinks and the hub, and nothing of partitions not watched', async () => {
    const { ref, attempt } = await streamingMessage();
    const before = await store.emit(ref, attempt, delta(ref, 'before'));
    const unwatch = await relay.watch(ref.sessionId);
    const got: DeliveredEvent[] = [];
    const stop = hub.subscribe(ref.sessionId, (event) => got.push(event));
    const unwatched = await streamingMessage(sessionElsewhere(ref.sessionId));
    try {
      const after = await store.emit(ref, attempt, delta(ref, 'after'));
      await store.emit(unwatched.ref, unwatched.attempt, delta(unwatched.ref, 'elsewhere'));
      await eventually(
        () => got.length,
        (n) => n >= 1,
      );
      expect(got.map(deltaOf)).toEqual(['after']);
      expect(got[0].eventId).toBe(after.result === 'emitted' ? after.eventId : null);
      expect(before.result).toBe('emitted');
      expect(sunk.filter((e) => e.payload.sessionId === ref.sessionId).map(deltaOf)).toEqual(['after']);
      expect(sunk.some((e) => e.payload.sessionId === unwatched.ref.sessionId)).toBe(false);
      expect(relay.watchedStreams).toContain(layout.partitionOf(ref.sessionId).outgoing);
      expect(relay.watchedStreams).not.toContain(layout.partitionOf(unwatched.ref.sessionId).outgoing);
    } finally {
      stop();
      unwatch();
    }
  });

  it('a newly watched partition interrupts the read in flight (no wait for its BLOCK to time out)', async () => {
    const first = await streamingMessage();
    const unwatchFirst = await relay.watch(first.ref.sessionId);
    // the reader is blocked on the first partition by now
    await eventually(
      async () => String(await redis.client('LIST')),
      (list) => /name=ai-assistant:relay .*flags=b/.test(list),
    );
    const second = await streamingMessage(sessionElsewhere(first.ref.sessionId));
    const unwatchSecond = await relay.watch(second.ref.sessionId);
    const got: DeliveredEvent[] = [];
    const stop = hub.subscribe(second.ref.sessionId, (event) => got.push(event));
    try {
      const began = Date.now();
      await store.emit(second.ref, second.attempt, delta(second.ref, 'quick'));
      await eventually(
        () => got.length,
        (n) => n === 1,
        2000,
      );
      expect(Date.now() - began).toBeLessThan(1500);
    } finally {
      stop();
      unwatchFirst();
      unwatchSecond();
    }
  });

  it('skips a malformed entry and goes on', async () => {
    const { ref, attempt } = await streamingMessage();
    const unwatch = await relay.watch(ref.sessionId);
    const got: DeliveredEvent[] = [];
    const stop = hub.subscribe(ref.sessionId, (event) => got.push(event));
    try {
      const stream = layout.partitionOf(ref.sessionId).outgoing;
      await redis.xadd(stream, '*', 'v', '1', 'type', 'chat.delta', 'data', 'not json');
      await redis.xadd(stream, '*', 'v', '9', 'type', 'chat.delta', 'data', '{}');
      await store.emit(ref, attempt, delta(ref, 'fine'));
      await eventually(
        () => got.map(deltaOf),
        (deltas) => deltas.includes('fine'),
      );
      expect(got.map(deltaOf)).toEqual(['fine']);
    } finally {
      stop();
      unwatch();
    }
  });

  it('a client resuming while events are delivered replays exactly what it missed, then goes live', async () => {
    const { ref, attempt } = await streamingMessage();
    const unwatch = await relay.watch(ref.sessionId);
    const total = 300;
    const delivered: DeliveredEvent[] = [];
    const resumers: { from: string; fromIndex: number; got: string[] }[] = [];
    const opening: Promise<() => void>[] = [];
    // A live client; every 7th event it "reconnects" from an event a few back, at the very moment
    // the relay delivers: the events it missed must come from the log, the rest live, none twice.
    const stopLive = hub.subscribe(ref.sessionId, (event) => {
      delivered.push(event);
      const index = delivered.length - 1;
      if (index % 7 !== 6) return;
      const fromIndex = index - 1 - (index % 3);
      const resumer = { from: delivered[fromIndex].eventId, fromIndex, got: [] as string[] };
      resumers.push(resumer);
      opening.push(
        resumable.open(ref.sessionId, resumer.from, {
          deliver: (e) => resumer.got.push(deltaOf(e)),
          resync: () => resumer.got.push('(resync)'),
        }),
      );
    });
    try {
      for (let i = 0; i < total; i++) {
        void store.emit(ref, attempt, delta(ref, String(i)));
        if (i % 20 === 19) await new Promise((resolve) => setImmediate(resolve));
      }
      await eventually(
        () => delivered.length,
        (n) => n === total,
        10_000,
      );
      const detach = await Promise.all(opening);
      const all = delivered.map(deltaOf);
      expect(all).toEqual(Array.from({ length: total }, (_, i) => String(i)));
      expect(resumers.length).toBeGreaterThan(30);
      for (const r of resumers) {
        // Every event after the one it resumed from, once, in order.
        expect({ from: r.fromIndex, got: r.got }).toEqual({ from: r.fromIndex, got: all.slice(r.fromIndex + 1) });
      }
      for (const d of detach) d();
    } finally {
      stopLive();
      unwatch();
    }
  });

  describe('resume completeness', () => {
    async function resume(sessionId: string, from: string): Promise<{ got: string[]; close: () => void }> {
      const got: string[] = [];
      const close = await resumable.open(sessionId, from, {
        deliver: (e) => got.push(deltaOf(e)),
        resync: () => got.push('(resync)'),
      });
      return { got, close };
    }

    it('replays without chat.resync from an id the log holds, and from 0-0 while nothing was trimmed', async () => {
      const { ref, attempt } = await streamingMessage();
      const one = await store.emit(ref, attempt, delta(ref, 'one'));
      await store.emit(ref, attempt, delta(ref, 'two'));
      if (one.result !== 'emitted') throw new Error(one.result);
      const fromOne = await resume(ref.sessionId, one.eventId);
      expect(fromOne.got).toEqual(['two']);
      const fromStart = await resume(ref.sessionId, '0-0');
      expect(fromStart.got).toEqual(['(chat.user_message)', '(chat.started)', 'one', 'two']);
      const fresh = await resume(newSession(), '0-0');
      expect(fresh.got).toEqual([]);
      for (const r of [fromOne, fromStart, fresh]) r.close();
    });

    it('sends chat.resync first when the id is not in the log (unknown, trimmed, or Redis lost it), then what the log has', async () => {
      const { ref, attempt } = await streamingMessage();
      await store.emit(ref, attempt, delta(ref, 'kept'));
      // an id between two entries: never an event of this log
      const [first] = await redis.xrange(layout.session(ref.sessionId).events, '-', '+', 'COUNT', 1);
      const [ms, seq] = first[0].split('-');
      const unknown = `${ms}-${Number(seq) + 1000}`;
      const r = await resume(ref.sessionId, unknown);
      expect(r.got[0]).toBe('(resync)');
      expect(r.got).toContain('kept');
      r.close();
      // a log that is gone (expired, or a Redis without its data)
      await redis.del(layout.session(ref.sessionId).events);
      const gone = await resume(ref.sessionId, first[0]);
      expect(gone.got).toEqual(['(resync)']);
      gone.close();
    });

    it('takes the id of a chat.status event (live only, never logged) as a place in the log, and never replays status events', async () => {
      const { ref, attempt } = await streamingMessage();
      const unwatch = await relay.watch(ref.sessionId);
      const live: string[] = [];
      const stop = hub.subscribe(ref.sessionId, (e) => live.push(e.type));
      try {
        const status = await store.emit(ref, attempt, {
          type: 'chat.status',
          payload: { ...ref, state: 'waiting_for_model', detail: 'Waiting for the model…' },
        });
        await store.emit(ref, attempt, delta(ref, 'after'));
        if (status.result !== 'emitted') throw new Error(status.result);
        await eventually(
          () => live,
          (types) => types.includes('chat.delta'),
        );
        expect(live).toEqual(['chat.status', 'chat.delta']);
        const r = await resume(ref.sessionId, status.eventId);
        expect(r.got).toEqual(['after']);
        const all = await resume(ref.sessionId, '0-0');
        expect(all.got).not.toContain('(chat.status)');
        r.close();
        all.close();
      } finally {
        stop();
        unwatch();
      }
    });
  });

  it('reads a stream from its start again when its ids went back after a reconnect (Redis restarted without it)', async () => {
    const { ref, attempt } = await streamingMessage();
    const unwatch = await relay.watch(ref.sessionId);
    const got: DeliveredEvent[] = [];
    const stop = hub.subscribe(ref.sessionId, (event) => got.push(event));
    try {
      await store.emit(ref, attempt, delta(ref, 'before'));
      await eventually(
        () => got.length,
        (n) => n === 1,
      );
      // the stream is gone and the reader's connection drops, as in a restart without persistence
      const stream = layout.partitionOf(ref.sessionId).outgoing;
      await redis.del(stream);
      const db = (await redis.client('INFO')).match(/ db=(\d+)/)?.[1];
      const reader = String(await redis.client('LIST'))
        .split('\n')
        .find((line) => line.includes('name=ai-assistant:relay ') && line.includes(` db=${db} `));
      const readerId = reader?.match(/^id=(\d+)/)?.[1];
      expect(readerId).toBeDefined();
      await redis.client('KILL', 'ID', readerId as string);
      // a new stream with ids below what the relay had read (another clock)
      await eventually(
        async () => {
          try {
            return await redis.xadd(stream, '1-1', ...encodeEvent(delta(ref, 'after restart')));
          } catch {
            return null;
          }
        },
        (id) => id === '1-1',
      );
      await eventually(
        () => got.map(deltaOf),
        (deltas) => deltas.includes('after restart'),
        10_000,
      );
    } finally {
      stop();
      unwatch();
    }
  });

  it('refuses a watch while Redis is unreachable, and stop() still returns at once', async () => {
    // Nothing listens there: the reader's connection keeps waiting to reconnect.
    const { connections: nowhere } = await appConnections(`redis://127.0.0.1:${await freePort()}`, false);
    const stranded = new ChatEventsRelay(nowhere, layout, new SessionEventHub());
    try {
      // the watch cannot fix its start without Redis: refused, so its client is refused too
      await expect(stranded.watch(newSession())).rejects.toThrow();
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        stranded.stop().then(() => 'stopped'),
        new Promise((resolve) => (timer = setTimeout(resolve, 1000, 'still waiting after 1 s'))),
      ]);
      clearTimeout(timer);
      expect(outcome).toBe('stopped');
    } finally {
      await nowhere.onApplicationShutdown();
    }
  });

  it('keeps a released partition for a while, and refuses watches once stopped', async () => {
    const sessionId = newSession();
    const unwatch = await relay.watch(sessionId);
    unwatch();
    unwatch();
    expect(relay.watchedStreams).toContain(layout.partitionOf(sessionId).outgoing);
    const other = new ChatEventsRelay(connections, layout, new SessionEventHub());
    await other.stop();
    await expect(other.watch(sessionId)).rejects.toThrow(/stopped/);
  });
});
