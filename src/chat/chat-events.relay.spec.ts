import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { eventually } from '../../test/support/eventually';
import { appConnections, freshRedis } from '../../test/support/test-redis';
import { DeliveredEvent } from '../event-bus/envelopes';
import { EventBus } from '../event-bus/event-bus.service';
import { RedisConnections } from '../event-bus/redis-connections';
import { SessionEventLog } from '../event-bus/session-event-log';
import { sessionKeys, STREAMS, userPartField } from '../event-bus/stream-names';
import { ChatEventsRelay } from './chat-events.relay';
import { ResumableEvents } from './resumable-events';
import { SessionEventHub } from './session-event-hub';

const deltaOf = (event: DeliveredEvent): string => (event.type === 'chat.delta' ? event.payload.delta : `(${event.type})`);

describe('ChatEventsRelay with resuming clients (real Redis)', () => {
  let redis: Redis;
  let connections: RedisConnections;
  let bus: EventBus;
  let hub: SessionEventHub;
  let relay: ChatEventsRelay;
  let resumable: ResumableEvents;

  beforeAll(async () => {
    redis = await freshRedis();
    const app = await appConnections();
    connections = app.connections;
    bus = new EventBus(connections, app.config);
    hub = new SessionEventHub();
    relay = new ChatEventsRelay(connections, hub, bus);
    resumable = new ResumableEvents(hub, new SessionEventLog(connections));
    relay.start(() => undefined);
    // The relay follows chat:outgoing from its newest entry: wait until its read is blocked in Redis.
    await eventually(
      async () => String(await redis.client('LIST')),
      (list) => /name=ai-assistant:tail:chat:outgoing .*flags=b/.test(list),
    );
  });

  afterAll(async () => {
    await relay.stop();
    await connections.onApplicationShutdown();
    await redis.quit();
  });

  it('a client resuming while events are delivered replays exactly what it missed, then goes live', async () => {
    const sessionId = `s-${randomUUID()}`;
    const messageId = randomUUID();
    // Deltas are logged only while their message is in the history.
    await redis.hset(sessionKeys(sessionId).messages, userPartField(messageId), '{}');
    const total = 300;
    const delivered: DeliveredEvent[] = [];
    const resumers: { from: string; fromIndex: number; got: string[] }[] = [];
    const opening: Promise<unknown>[] = [];
    // A live client; every 7th event it "reconnects" from an event a few back, at the very moment
    // the relay delivers: the events it missed must come from the log, the rest live, none twice.
    const stopLive = hub.subscribe(sessionId, (event) => {
      delivered.push(event);
      const index = delivered.length - 1;
      if (index % 7 !== 6) return;
      const fromIndex = index - 1 - (index % 3);
      const resumer = { from: delivered[fromIndex].eventId, fromIndex, got: [] as string[] };
      resumers.push(resumer);
      opening.push(
        resumable.open(sessionId, resumer.from, {
          deliver: (e) => resumer.got.push(deltaOf(e)),
          resync: () => resumer.got.push('(resync)'),
        }),
      );
    });
    try {
      for (let i = 0; i < total; i++) {
        void bus.publishEvent({ type: 'chat.delta', payload: { sessionId, messageId, delta: String(i) } });
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
      for (const d of detach) (d as () => void)();
    } finally {
      stopLive();
    }
  });

  it("keeps the text of a deleted conversation's message out of the log, off the wire and out of chat:outgoing; its final event becomes chat.cancelled", async () => {
    const sessionId = `s-${randomUUID()}`;
    const kept = randomUUID();
    const deleted = randomUUID();
    const keys = sessionKeys(sessionId);
    await redis.hset(keys.messages, userPartField(kept), '{}');
    await redis.set(keys.deleted, '1', 'EX', 60); // as DELETE /chat/:sessionId leaves it
    const delivered: DeliveredEvent[] = [];
    const stop = hub.subscribe(sessionId, (event) => delivered.push(event));
    try {
      const ids = {
        keptDelta: await bus.publishEvent({ type: 'chat.delta', payload: { sessionId, messageId: kept, delta: 'fine' } }),
        deletedDelta: await bus.publishEvent({ type: 'chat.delta', payload: { sessionId, messageId: deleted, delta: 'SECRET-1' } }),
        // published just before the delete, not relayed yet: the clients that saw the message start
        // still get exactly one final event for it, without its text
        deletedCompleted: await bus.publishEvent({
          type: 'chat.completed',
          payload: { sessionId, messageId: deleted, content: 'SECRET-2', usage: { promptTokens: 1, completionTokens: 1 } },
        }),
      };
      await eventually(
        () => delivered.length,
        (n) => n === 2,
        5_000,
      );
      expect(delivered).toEqual([
        expect.objectContaining({ type: 'chat.delta', eventId: ids.keptDelta }),
        { type: 'chat.cancelled', payload: { sessionId, messageId: deleted }, eventId: ids.deletedCompleted },
      ]);
      const logged = await redis.xrange(keys.events, '-', '+');
      expect(logged.map(([id]) => id)).toEqual([ids.keptDelta, ids.deletedCompleted]);
      expect(logged[1][1]).toContain('chat.cancelled');
      expect(JSON.stringify(logged)).not.toMatch(/SECRET/);
      expect(await redis.ttl(keys.events)).toBeGreaterThan(0);
      const outgoing = await redis.xrange(STREAMS.outgoing, '-', '+');
      expect(JSON.stringify(outgoing)).not.toMatch(/SECRET/);
      expect(outgoing.map(([id]) => id)).toContain(ids.keptDelta);
      // A second relay copying the same final event decides alike: the replacement, never the text.
      const again = await bus.appendToSessionLogs([
        {
          sessionId,
          eventId: ids.deletedCompleted,
          fields: ['v', '1', 'type', 'chat.completed', 'data', JSON.stringify({ sessionId, messageId: deleted, content: 'SECRET-2' })],
          refreshesTtl: true,
          textOf: deleted,
          finalReplacement: ['v', '1', 'type', 'chat.cancelled', 'data', JSON.stringify({ sessionId, messageId: deleted })],
        },
      ]);
      expect([...again]).toEqual([[ids.deletedCompleted, 'replaced']]);
    } finally {
      stop();
    }
  });

  it('logs and delivers the events of a message merely trimmed from a history that was never deleted', async () => {
    const sessionId = `s-${randomUUID()}`;
    const trimmed = randomUUID();
    const delivered: DeliveredEvent[] = [];
    const stop = hub.subscribe(sessionId, (event) => delivered.push(event));
    try {
      const id = await bus.publishEvent({
        type: 'chat.completed',
        payload: { sessionId, messageId: trimmed, content: 'kept', usage: { promptTokens: 1, completionTokens: 1 } },
      });
      await eventually(
        () => delivered.length,
        (n) => n === 1,
        5_000,
      );
      expect(delivered[0].eventId).toBe(id);
      expect((await redis.xrange(sessionKeys(sessionId).events, '-', '+')).map(([entryId]) => entryId)).toEqual([id]);
    } finally {
      stop();
    }
  });

  it('takes an entry another relay logged first as done, not as a failure', async () => {
    const sessionId = `s-${randomUUID()}`;
    const messageId = randomUUID();
    await redis.hset(sessionKeys(sessionId).messages, userPartField(messageId), '{}');
    const entry = {
      sessionId,
      eventId: '1-1',
      fields: ['v', '1', 'type', 'chat.delta', 'data', JSON.stringify({ sessionId, messageId, delta: 'x' })],
      refreshesTtl: false,
      textOf: messageId,
      finalReplacement: null,
    };
    expect([...(await bus.appendToSessionLogs([entry]))]).toEqual([]);
    expect([...(await bus.appendToSessionLogs([entry]))]).toEqual([]);
    expect(await redis.xlen(sessionKeys(sessionId).events)).toBe(1);
  });
});
