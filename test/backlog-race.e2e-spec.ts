import { expect } from '@jest/globals';
/**
 * MAX_BACKLOG holds under concurrency: hundreds of sends at once, from as many sessions, against a
 * limit of 20 with no worker running. The bound is checked per partition (ceil(MAX_BACKLOG /
 * PARTITIONS)); with one partition it is exact: exactly 20 are accepted; every other send is refused
 * (503 or 429) with Retry-After and leaves nothing behind (no history entry, no chat.user_message,
 * its clientMessageId free).
 */
import { randomUUID } from 'node:crypto';
import { KeyLayout } from '../src/event-bus/stream-names';
import { AppProcess } from './support/app-process';
import { freshTestRedis, type TestRedis, testRedisEnv } from './support/test-redis';

const LIMIT = 20;
const SENDS = 400;
const layout = new KeyLayout(1);
const partition = layout.partitions[0];

describe('MAX_BACKLOG under concurrent sends', () => {
  let redis: TestRedis;
  let app: AppProcess;

  beforeAll(async () => {
    redis = await freshTestRedis();
    app = await AppProcess.start({
      env: {
        ...testRedisEnv(),
        AI_PROVIDER: 'mock',
        WORKER_ENABLED: 'false',
        MAX_BACKLOG: String(LIMIT),
        PARTITIONS: '1',
        RATE_LIMIT_SESSION_PER_MINUTE: '0',
        RATE_LIMIT_IP_PER_MINUTE: '0',
        AUTH_MODE: 'none',
      },
    });
  });

  afterAll(async () => {
    await app?.stop();
    await redis?.quit();
  });

  it(`queues exactly ${LIMIT} of ${SENDS} simultaneous sends and refuses the rest cleanly`, async () => {
    const sends = Array.from({ length: SENDS }, () => ({ sessionId: `s-${randomUUID()}`, clientMessageId: randomUUID() }));
    const answers = await Promise.all(
      sends.map(async (send) => {
        const res = await fetch(`${app.url}/chat/send`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ ...send, content: `hello from ${send.sessionId}` }),
        });
        return {
          ...send,
          status: res.status,
          retryAfter: res.headers.get('retry-after'),
          body: (await res.json()) as Record<string, unknown>,
        };
      }),
    );

    const accepted = answers.filter((a) => a.status === 202);
    const refused = answers.filter((a) => a.status !== 202);
    // every accepted send is one session's head: in the incoming stream and in the backlog
    expect({
      accepted: accepted.length,
      queued: await redis.xlen(partition.incoming),
      backlog: await redis.zcard(partition.backlog),
    }).toEqual({ accepted: LIMIT, queued: LIMIT, backlog: LIMIT });
    const unclean = refused.filter(
      (a) => ![503, 429].includes(a.status) || !a.retryAfter || typeof a.body.message !== 'string' || !a.body.message,
    );
    expect(unclean).toEqual([]);

    // nothing of a refused send is left: history entry, clientMessageId, queue, chat.user_message
    const leftovers: string[] = [];
    for (const a of refused) {
      const keys = layout.session(a.sessionId);
      if (await redis.exists(keys.hash, keys.order, keys.queue, keys.events)) leftovers.push(a.sessionId);
    }
    expect(leftovers).toEqual([]);
    // one event per accepted send (its chat.user_message), in the partition's stream and its session's log
    expect(await redis.xlen(partition.outgoing)).toBe(LIMIT);
    for (const a of accepted) {
      const log = await redis.xrange(layout.session(a.sessionId).events, '-', '+');
      expect({ sessionId: a.sessionId, log: log.map(([, fields]) => fields.some((f) => f.includes('chat.user_message'))) }).toEqual({
        sessionId: a.sessionId,
        log: [true],
      });
      // every accepted send is whole: its clientMessageId answers its messageId (field `c:<clientMessageId>`, docs/design.md)
      expect(await redis.hget(layout.session(a.sessionId).hash, `c:${a.clientMessageId}`)).toBe(a.body.messageId);
    }
  });
});
