/**
 * MAX_BACKLOG holds under concurrency: hundreds of sends at once, from as many sessions, against a
 * limit of 20 with no worker draining chat:incoming. Exactly 20 are queued; every other send is a
 * 503 with Retry-After that leaves nothing behind (no history entry, no chat.user_message, its
 * clientMessageId free).
 */
import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { decodeOutgoing } from '../src/event-bus/envelopes';
import { sessionKeys } from '../src/event-bus/stream-names';
import { AppProcess } from './support/app-process';
import { freshRedis, testRedisUrl } from './support/test-redis';

const LIMIT = 20;
const SENDS = 400;

describe('MAX_BACKLOG under concurrent sends', () => {
  let redis: Redis;
  let app: AppProcess;

  beforeAll(async () => {
    redis = await freshRedis();
    app = await AppProcess.start({
      env: {
        REDIS_URL: testRedisUrl(),
        AI_PROVIDER: 'mock',
        WORKER_ENABLED: 'false',
        MAX_BACKLOG: String(LIMIT),
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
    expect({ accepted: accepted.length, queued: await redis.xlen('chat:incoming') }).toEqual({ accepted: LIMIT, queued: LIMIT });
    expect(refused.filter((a) => a.status !== 503 || !a.retryAfter || !/busy/.test(String(a.body.message)))).toEqual([]);

    // nothing of a refused send is left: history entry, clientMessageId, chat.user_message
    const leftovers: string[] = [];
    for (const a of refused) {
      const keys = sessionKeys(a.sessionId);
      if (await redis.exists(keys.order, keys.messages, keys.clientIds)) leftovers.push(a.sessionId);
    }
    expect(leftovers).toEqual([]);
    const announced = (await redis.xrange('chat:outgoing', '-', '+'))
      .map(([id, fields]) => decodeOutgoing(id, fields))
      .flatMap((d) => (d.ok && d.value.type === 'chat.user_message' ? [d.value.payload.sessionId] : []));
    expect(announced.sort()).toEqual(accepted.map((a) => a.sessionId).sort());
    // every accepted send is whole
    for (const a of accepted) expect(await redis.hget(sessionKeys(a.sessionId).clientIds, a.clientMessageId)).toBe(a.body.messageId);
  });
});
