import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { appConnections, freshRedis, readCommandOf, testRedisUrl } from '../../test/support/test-redis';
import { AppConfig } from '../config/app-config';
import { validateEnvironment } from '../config/environment';
import { ChatEvent, decodeEvent } from '../event-bus/envelopes';
import { RedisConnections } from '../event-bus/redis-connections';
import { KeyLayout } from '../event-bus/stream-names';
import { parseRangeReply } from '../event-bus/stream-reply';
import { FinalEvent, MessageRef, MessageStore, StartOutcome, UNLIMITED_CONTEXT } from './message-store';
import { FinalStatus } from './stored-message';
import { MESSAGE_FRAME_TOKENS } from './token-count';

/**
 * Fitting the context into the model's window (docs/design.md, "Context window"): start.lua picks
 * the newest earlier completed turns that fit the budget and the message cap. Turns are made as the
 * API and a worker make them (send, start, finish with token counts) on a real Redis.
 */
const FRAME = MESSAGE_FRAME_TOKENS;
/** What a turn of `user` + `answer` tokens takes of the budget: both parts, each with its frame. */
const cost = (user: number, answer: number) => user + answer + 2 * FRAME;
/** What the new message itself takes. */
const own = (tokens: number) => tokens + FRAME;

interface Turn {
  ref: MessageRef;
  question: string;
  answer: string;
}

type Started = Extract<StartOutcome, { result: 'started' }>;

describe('MessageStore: the context fitted into the window (real Redis)', () => {
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

  /** A store on the same Redis with other settings. */
  const storeWith = (env: Record<string, string>) =>
    new MessageStore(connections, new AppConfig(validateEnvironment({ REDIS_URL: testRedisUrl(), ...env })), layout);
  const part = (content: string) => ({ content, createdAt: new Date().toISOString() });
  const newSession = () => `s-${randomUUID()}`;

  /** Reads the message's command through the `ai-workers` group, as a worker does. */
  const claim = (ref: MessageRef): Promise<string> => readCommandOf(redis, layout, ref);

  function finalEvent(ref: MessageRef, status: FinalStatus, content: string): FinalEvent {
    if (status === 'completed')
      return { type: 'chat.completed', payload: { ...ref, content, usage: { promptTokens: 1, completionTokens: 1 } } };
    if (status === 'failed') return { type: 'chat.failed', payload: { ...ref, error: { code: 'model_error', message: 'no answer' } } };
    return { type: 'chat.cancelled', payload: ref };
  }

  /** One turn, ended as `end`: its question counted `user` tokens at send, its answer `answer` at finish. */
  async function turn(sessionId: string, user: number, answer: number, end: FinalStatus = 'completed'): Promise<Turn> {
    const ref = { sessionId, messageId: `m-${randomUUID()}` };
    const t = { ref, question: `question ${ref.messageId}`, answer: `answer ${ref.messageId}` };
    expect((await store.send(ref, null, part(t.question), { tokens: user, replaces: null })).result).toBe('queued');
    const entryId = await claim(ref);
    const started = await store.start(ref, entryId, 'w1', null);
    if (started.result !== 'started') throw new Error(`turn not started: ${started.result}`);
    const finished = await store.finish(ref, entryId, started.attempt, part(t.answer), finalEvent(ref, end, t.answer), null, answer);
    expect(finished.result).toBe(end);
    return t;
  }

  async function turns(sessionId: string, ...specs: [number, number, FinalStatus?][]): Promise<Turn[]> {
    const made: Turn[] = [];
    for (const [user, answer, end] of specs) made.push(await turn(sessionId, user, answer, end));
    return made;
  }

  const contextOf = (sent: Turn[]) =>
    sent.flatMap((t) => [
      { role: 'user', content: t.question },
      { role: 'assistant', content: t.answer },
    ]);

  async function loggedEvent(sessionId: string, eventId: string): Promise<ChatEvent> {
    const [entry] = parseRangeReply(await redis.xrange(layout.session(sessionId).events, eventId, eventId));
    if (!entry) throw new Error(`event ${eventId} is not in the session log`);
    const decoded = decodeEvent(entry.fields);
    if (!decoded.ok) throw new Error(decoded.reason);
    return decoded.value;
  }

  /**
   * The session's new message of `tokens` tokens, sent and claimed. `fit(budget)` starts it (again:
   * as a retry, under the attempt it holds) and checks that the logged chat.started says what went in.
   */
  async function newMessage(sessionId: string, tokens: number) {
    const ref = { sessionId, messageId: `m-${randomUUID()}` };
    expect((await store.send(ref, null, part('the new question'), { tokens, replaces: null })).result).toBe('queued');
    const entryId = await claim(ref);
    let attempt: number | null = null;
    const fit = async (budget: number, by = store): Promise<Started> => {
      const started = await by.start(ref, entryId, 'w1', attempt, 0, budget);
      if (started.result !== 'started') throw new Error(`not started: ${started.result}`);
      attempt = started.attempt;
      expect(started.user?.content).toBe('the new question');
      expect(await loggedEvent(sessionId, started.eventId)).toEqual({
        type: 'chat.started',
        payload: { ...ref, attempt, contextMessages: started.contextInfo.messages, contextOmitted: started.contextInfo.omitted },
      });
      return started;
    };
    return { ref, fit };
  }

  describe('three completed turns of 10 + 20 tokens, then a message of 5', () => {
    let sent: Turn[];
    let next: Awaited<ReturnType<typeof newMessage>>;

    beforeAll(async () => {
      const sid = newSession();
      sent = await turns(sid, [10, 20], [10, 20], [10, 20]);
      next = await newMessage(sid, 5);
    });

    it('sends them all, oldest first, when the budget fits exactly all of them', async () => {
      const started = await next.fit(own(5) + 3 * cost(10, 20));
      expect(started.context).toEqual(contextOf(sent));
      expect(started.contextInfo).toEqual({ messages: 6, omitted: false, tokens: own(5) + 3 * cost(10, 20) });
    });

    it('leaves the oldest turn out, and says so, one token short of it', async () => {
      const started = await next.fit(own(5) + 3 * cost(10, 20) - 1);
      expect(started.context).toEqual(contextOf(sent.slice(1)));
      expect(started.contextInfo).toEqual({ messages: 4, omitted: true, tokens: own(5) + 2 * cost(10, 20) });
    });

    it('sends the message alone when the budget fits nothing more', async () => {
      const started = await next.fit(own(5) + cost(10, 20) - 1);
      expect(started.context).toEqual([]);
      expect(started.contextInfo).toEqual({ messages: 0, omitted: true, tokens: own(5) });
    });
  });

  describe('a big turn in the middle: 10+10, 500+500, 10+10, 10+10, then a message of 5', () => {
    let sent: Turn[];
    let next: Awaited<ReturnType<typeof newMessage>>;

    beforeAll(async () => {
      const sid = newSession();
      sent = await turns(sid, [10, 10], [500, 500], [10, 10], [10, 10]);
      next = await newMessage(sid, 5);
    });

    it('stops the walk at the big turn: the older small one that would fit is not sent (no hole)', async () => {
      // after the two newest, exactly the oldest turn's cost is left
      const started = await next.fit(own(5) + 3 * cost(10, 10));
      expect(started.context).toEqual(contextOf(sent.slice(2)));
      expect(started.contextInfo).toEqual({ messages: 4, omitted: true, tokens: own(5) + 2 * cost(10, 10) });
    });

    it('sends the big turn when it fits, and the oldest one when that fits too', async () => {
      const three = own(5) + 2 * cost(10, 10) + cost(500, 500);
      const started = await next.fit(three);
      expect(started.context).toEqual(contextOf(sent.slice(1)));
      expect(started.contextInfo).toEqual({ messages: 6, omitted: true, tokens: three });
      const all = await next.fit(three + cost(10, 10));
      expect(all.context).toEqual(contextOf(sent));
      expect(all.contextInfo).toEqual({ messages: 8, omitted: false, tokens: three + cost(10, 10) });
    });
  });

  describe('the message cap (CONTEXT_MAX_MESSAGES=4)', () => {
    it('sends the newest two turns of three, and says the oldest was left out', async () => {
      const sid = newSession();
      const sent = await turns(sid, [1, 1], [1, 1], [1, 1]);
      const started = await (await newMessage(sid, 1)).fit(UNLIMITED_CONTEXT, storeWith({ CONTEXT_MAX_MESSAGES: '4' }));
      expect(started.context).toEqual(contextOf(sent.slice(1)));
      expect(started.contextInfo).toMatchObject({ messages: 4, omitted: true });
    });

    it('omits nothing when the turns fill the cap exactly', async () => {
      const sid = newSession();
      const sent = await turns(sid, [1, 1], [1, 1]);
      const started = await (await newMessage(sid, 1)).fit(UNLIMITED_CONTEXT, storeWith({ CONTEXT_MAX_MESSAGES: '4' }));
      expect(started.context).toEqual(contextOf(sent));
      expect(started.contextInfo).toMatchObject({ messages: 4, omitted: false });
    });
  });

  describe('failed and cancelled turns', () => {
    it('are skipped and count neither against the budget nor against the cap', async () => {
      const sid = newSession();
      const [first, , third] = await turns(sid, [10, 10], [1000, 1000, 'failed'], [10, 10], [1000, 1000, 'cancelled']);
      const next = await newMessage(sid, 5);
      const budget = own(5) + 2 * cost(10, 10);
      const started = await next.fit(budget);
      expect(started.context).toEqual(contextOf([first, third]));
      expect(started.contextInfo).toEqual({ messages: 4, omitted: false, tokens: budget });
      const capped = await next.fit(UNLIMITED_CONTEXT, storeWith({ CONTEXT_MAX_MESSAGES: '4' }));
      expect(capped.context).toEqual(contextOf([first, third]));
      expect(capped.contextInfo).toMatchObject({ messages: 4, omitted: false });
    });

    it('do not hide an older completed turn the cap still has room for', async () => {
      const sid = newSession();
      const [first, , , fourth] = await turns(sid, [1, 1], [1, 1, 'failed'], [1, 1, 'failed'], [1, 1], [1, 1, 'cancelled']);
      const started = await (await newMessage(sid, 1)).fit(UNLIMITED_CONTEXT, storeWith({ CONTEXT_MAX_MESSAGES: '4' }));
      expect(started.context).toEqual(contextOf([first, fourth]));
      expect(started.contextInfo).toMatchObject({ messages: 4, omitted: false });
    });

    it('leave contextOmitted false when they are all that was left out', async () => {
      const sid = newSession();
      const sent = await turns(sid, [1, 1, 'failed'], [1, 1, 'failed'], [1, 1, 'failed'], [1, 1, 'failed'], [1, 1]);
      const started = await (await newMessage(sid, 1)).fit(UNLIMITED_CONTEXT, storeWith({ CONTEXT_MAX_MESSAGES: '4' }));
      expect(started.context).toEqual(contextOf(sent.slice(4)));
      expect(started.contextInfo).toMatchObject({ messages: 2, omitted: false });
    });
  });

  describe('a turn stored without token counts (older data)', () => {
    it('is counted by the stored size of its parts in bytes', async () => {
      const sid = newSession();
      const sent = await turns(sid, [10, 10], [10, 10]);
      const { hash } = layout.session(sid);
      const old = sent[0].ref.messageId;
      expect(await redis.hdel(hash, `${old}:ut`, `${old}:at`)).toBe(2);
      const bytes = (await redis.hstrlen(hash, `${old}:user`)) + (await redis.hstrlen(hash, `${old}:assistant`));
      expect(bytes).toBeGreaterThan(20 + 100); // the JSON parts are far longer than the counts they replace
      const next = await newMessage(sid, 5);

      const all = own(5) + cost(10, 10) + bytes + 2 * FRAME;
      const started = await next.fit(all);
      expect(started.context).toEqual(contextOf(sent));
      expect(started.contextInfo).toEqual({ messages: 4, omitted: false, tokens: all });
      const short = await next.fit(all - 1);
      expect(short.context).toEqual(contextOf(sent.slice(1)));
      expect(short.contextInfo).toEqual({ messages: 2, omitted: true, tokens: own(5) + cost(10, 10) });
    });
  });

  it("chat.started of a session's first message says no context was sent and none omitted", async () => {
    const sid = newSession();
    const next = await newMessage(sid, 3);
    const started = await next.fit(UNLIMITED_CONTEXT);
    expect(started.contextInfo).toEqual({ messages: 0, omitted: false, tokens: own(3) });
    expect(await loggedEvent(sid, started.eventId)).toMatchObject({
      type: 'chat.started',
      payload: { contextMessages: 0, contextOmitted: false },
    });
  });

  describe('titles', () => {
    it("marks a fresh session's first message untitled, and not its second", async () => {
      const sid = newSession();
      expect((await (await newMessage(sid, 1)).fit(UNLIMITED_CONTEXT)).untitled).toBe(true);
      const other = newSession();
      await turn(other, 1, 1);
      expect((await (await newMessage(other, 1)).fit(UNLIMITED_CONTEXT)).untitled).toBe(false);
    });

    it('stores a title and writes chat.title to the log; the first message is then no longer untitled', async () => {
      const sid = newSession();
      const first = await newMessage(sid, 1);
      expect((await first.fit(UNLIMITED_CONTEXT)).untitled).toBe(true);
      expect(await store.setTitle(first.ref, 'Redis streams')).toBe('titled');
      expect(await redis.hget(layout.session(sid).hash, 'title')).toBe('Redis streams');
      expect((await store.conversation(sid)).title).toBe('Redis streams');
      const log = parseRangeReply(await redis.xrange(layout.session(sid).events, '-', '+'));
      const last = decodeEvent(log[log.length - 1].fields);
      expect(last.ok && last.value).toEqual({ type: 'chat.title', payload: { ...first.ref, title: 'Redis streams' } });
      // a retry of the same first message: it has a title now
      expect((await first.fit(UNLIMITED_CONTEXT)).untitled).toBe(false);
    });

    it('answers gone, and writes nothing, once the conversation is deleted or was never there', async () => {
      const sid = newSession();
      const { ref } = await turn(sid, 1, 1);
      await store.clear(sid, 0);
      expect(await store.setTitle(ref, 'Too late')).toBe('gone');
      expect(await redis.exists(layout.session(sid).hash)).toBe(0);
      const outgoing = await redis.xrange(layout.partitionOf(sid).outgoing, '-', '+');
      expect(JSON.stringify(outgoing)).not.toContain('Too late');
      expect(await store.setTitle({ sessionId: newSession(), messageId: 'm-1' }, 'Nobody')).toBe('gone');
    });
  });
});
