import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { appConnections, freshRedis } from '../../test/support/test-redis';
import { EventBus } from '../event-bus/event-bus.service';
import { RedisConnections } from '../event-bus/redis-connections';
import { SessionEventLog } from '../event-bus/session-event-log';
import { STREAMS } from '../event-bus/stream-names';
import { ChatHistoryStore } from '../history/chat-history.store';
import { SendLimits } from '../limits/send-limits.service';
import { Metrics } from '../observability/metrics.service';
import { ChatService } from './chat.service';

describe('ChatService.send (real Redis)', () => {
  let redis: Redis;
  let connections: RedisConnections;
  let history: ChatHistoryStore;
  let chat: ChatService;

  beforeAll(async () => {
    Logger.overrideLogger(['error']);
    redis = await freshRedis();
    const app = await appConnections();
    const config = app.config;
    connections = app.connections;
    history = new ChatHistoryStore(connections, config);
    // The limits are not under test here (they have their own e2e tests): let every send through.
    const noLimits = { check: () => Promise.resolve() } as unknown as SendLimits;
    chat = new ChatService(
      new EventBus(connections, config),
      history,
      config,
      noLimits,
      new SessionEventLog(connections),
      new Metrics(connections),
    );
  });

  afterAll(async () => {
    await connections.onApplicationShutdown();
    await redis.quit();
  });

  const userMessages = async (sessionId: string) =>
    (await redis.xrange(STREAMS.outgoing, '-', '+')).filter(
      ([, fields]) => fields.join(' ').includes(sessionId) && fields.join(' ').includes('chat.user_message'),
    );

  it('queues the command, stores the entry, announces chat.user_message and marks it announced', async () => {
    const sent = await chat.send({ sessionId: 's-ok', content: 'hello' });
    const commands = await redis.xrange(STREAMS.incoming, '-', '+');
    expect(commands.some(([, fields]) => fields.join(' ').includes(sent.messageId))).toBe(true);
    expect(await history.turn('s-ok', sent.messageId)).toMatchObject({ status: 'queued', userAnnounced: true });
    expect(await userMessages('s-ok')).toHaveLength(1);
  });

  it('refuses a send whose command could not be queued: the entry is taken back and nothing is announced', async () => {
    // The command's XADD fails (WRONGTYPE) while the history entry, sent with it, is written.
    await redis.del(STREAMS.incoming);
    await redis.set(STREAMS.incoming, 'not a stream');
    try {
      await expect(chat.send({ sessionId: 's-fail', content: 'hello' })).rejects.toThrow(/WRONGTYPE/);
      expect(await history.history('s-fail')).toEqual([]);
      expect(await userMessages('s-fail')).toHaveLength(0);
    } finally {
      await redis.del(STREAMS.incoming);
    }
  });

  it('refuses a send whose chat.user_message could not be published and takes the entry back', async () => {
    const before = await redis.xrange(STREAMS.outgoing, '-', '+');
    await redis.del(STREAMS.outgoing);
    await redis.set(STREAMS.outgoing, 'not a stream');
    try {
      await expect(chat.send({ sessionId: 's-fail2', content: 'hello' })).rejects.toThrow(/WRONGTYPE/);
      // the command is queued (a worker skips it: its entry is gone)
      expect((await redis.xrange(STREAMS.incoming, '-', '+')).some(([, f]) => f.join(' ').includes('s-fail2'))).toBe(true);
      expect(await history.history('s-fail2')).toEqual([]);
    } finally {
      await redis.del(STREAMS.outgoing);
      for (const [id, fields] of before) await redis.xadd(STREAMS.outgoing, id, ...fields);
    }
  });
});
