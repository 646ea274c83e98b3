import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { eventually } from '../../test/support/eventually';
import { appConnections, freshRedis } from '../../test/support/test-redis';
import { DeliveredEvent } from '../event-bus/envelopes';
import { EventBus } from '../event-bus/event-bus.service';
import { RedisConnections } from '../event-bus/redis-connections';
import { SessionEventLog } from '../event-bus/session-event-log';
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
      opening.push(resumable.open(sessionId, resumer.from, { deliver: (e) => resumer.got.push(deltaOf(e)), resync: () => resumer.got.push('(resync)') }));
    });
    try {
      for (let i = 0; i < total; i++) {
        void bus.publishEvent({ type: 'chat.delta', payload: { sessionId, messageId, delta: String(i) } });
        if (i % 20 === 19) await new Promise((resolve) => setImmediate(resolve));
      }
      await eventually(() => delivered.length, (n) => n === total, 10_000);
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
});
