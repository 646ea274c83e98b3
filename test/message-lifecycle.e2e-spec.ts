import { expect } from '@jest/globals';
/**
 * One message, one state machine, seen from a client: per-session chaining keeps a session's
 * messages in order without holding worker slots (no head-of-line blocking across sessions), a
 * message that waits says so (`chat.status`: queued behind its session, waiting for the model), and
 * every message's events arrive in state order: chat.user_message, chat.started, deltas, one final.
 */
import { AppProcess } from './support/app-process';
import { ChatClient, ReceivedEvent } from './support/chat-client';
import { FakeOllama } from './support/fake-ollama';
import { freshTestRedis, type TestRedis, testRedisEnv } from './support/test-redis';

/** One slow generation: TOKENS tokens TOKEN_MS apart (the first one too). */
const SLOW_TOKENS = 15;
const TOKEN_MS = 100;
const GENERATION_MS = SLOW_TOKENS * TOKEN_MS;
const SLOW_REPLY = Array.from({ length: SLOW_TOKENS }, (_, i) => ` w${i}`);

const FINAL = /^chat\.(completed|failed|cancelled)$/;
const isFinal = (e: ReceivedEvent) => FINAL.test(e.type);

/** An event with the time this test process received it. */
interface Stamped {
  type: string;
  payload: ReceivedEvent['payload'];
  at: number;
}

/** Records the arrival time of every event the client's socket receives from now on. */
function stamp(client: ChatClient): Stamped[] {
  const stamped: Stamped[] = [];
  client.socket!.onAny((type: string, payload: ReceivedEvent['payload']) => stamped.push({ type, payload, at: Date.now() }));
  return stamped;
}

function arrival(stamped: Stamped[], predicate: (e: Stamped) => boolean): number {
  const hit = stamped.find(predicate);
  if (!hit) throw new Error(`no such event among:\n${stamped.map((e) => `${e.type} ${JSON.stringify(e.payload)}`).join('\n')}`);
  return hit.at;
}

/** Stream ids ("<ms>-<seq>") in stream order. */
function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt);
  const [bm, bs] = b.split('-').map(BigInt);
  if (am !== bm) return am < bm ? -1 : 1;
  return as === bs ? 0 : as < bs ? -1 : 1;
}

const lastUserText = (messages: { role: string; content: string }[]) =>
  [...messages].reverse().find((m) => m.role === 'user')?.content ?? '';

describe('message lifecycle', () => {
  let redis: TestRedis;
  let ollama: FakeOllama;
  let app: AppProcess;
  const clients: ChatClient[] = [];

  beforeAll(async () => {
    redis = await freshTestRedis();
    ollama = new FakeOllama();
    await ollama.start();
    // ONE worker (the API's in-process one) with two generation slots.
    app = await AppProcess.start({
      env: {
        ...testRedisEnv(),
        OLLAMA_HOST: ollama.url,
        WORKER_CONCURRENCY: '2',
        // a hanging model must be seen waiting long before it is given up on
        OLLAMA_FIRST_TOKEN_TIMEOUT_MS: '60000',
        RATE_LIMIT_SESSION_PER_MINUTE: '0',
        RATE_LIMIT_IP_PER_MINUTE: '0',
      },
    });
  });

  beforeEach(() => {
    // "slow …": a GENERATION_MS answer; "hang …": the model never answers; else a quick echo.
    ollama.setDefault((request) => {
      const text = lastUserText(request.messages);
      if (text.startsWith('slow')) return { content: SLOW_REPLY, tokenDelayMs: TOKEN_MS };
      if (text.startsWith('hang')) return { hang: true };
      return { tokenDelayMs: 20 };
    });
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    ollama.reset();
  });

  afterAll(async () => {
    await app?.stop();
    await ollama?.stop();
    await redis?.quit();
  });

  const open = async (session?: ChatClient['session']) => {
    const client = await ChatClient.open(app.url, session);
    clients.push(client);
    return client;
  };

  const sendOk = async (client: ChatClient, content: string): Promise<string> => {
    const res = await client.send(content);
    expect({ content, status: res.status }).toEqual({ content, status: 202 });
    return String(res.body.messageId);
  };

  const indexOf = (client: ChatClient, predicate: (e: ReceivedEvent) => boolean) => client.events.findIndex(predicate);

  it("another session's message does not wait behind a session that queued 16 slow messages", async () => {
    const a = await open();
    const b = await open();
    const aIds: string[] = [];
    for (let i = 0; i < 16; i++) aIds.push(await sendOk(a, `slow A${i}`));
    await a.waitFor((e) => e.type === 'chat.started' && e.payload.messageId === aIds[0], 10_000);

    const bStamps = stamp(b);
    const sentAt = Date.now();
    const bId = await sendOk(b, 'slow B');
    const bEvents = await b.waitForEnd(bId, 30_000);
    const tookMs = arrival(bStamps, (e) => e.payload.messageId === bId && FINAL.test(e.type)) - sentAt;
    expect(bEvents.filter(isFinal).map((e) => e.type)).toEqual(['chat.completed']);
    expect(bEvents.find((e) => e.type === 'chat.started')?.payload.attempt).toBe(1);
    // as if A were not there: one generation, plus slack
    expect(tookMs).toBeLessThan(2 * GENERATION_MS + 1000);
    // ... while A really was there: most of its messages were still to come
    const aEndedWhenBDid = a.events.filter((e) => isFinal(e) && aIds.includes(e.payload.messageId)).length;
    expect(aEndedWhenBDid).toBeLessThan(8);

    // A's messages all complete, in send order, one after the other
    for (const id of aIds) await a.waitForEnd(id, 16 * GENERATION_MS + 30_000);
    const aFinals = a.events.filter((e) => isFinal(e) && aIds.includes(e.payload.messageId));
    expect(aFinals.map((e) => [e.type, e.payload.messageId])).toEqual(aIds.map((id) => ['chat.completed', id]));
    for (let i = 1; i < aIds.length; i++) {
      const started = indexOf(a, (e) => e.type === 'chat.started' && e.payload.messageId === aIds[i]);
      const previousFinal = indexOf(a, (e) => isFinal(e) && e.payload.messageId === aIds[i - 1]);
      expect({ message: i, startedAfterPreviousEnded: started > previousFinal }).toEqual({ message: i, startedAfterPreviousEnded: true });
    }
    for (const final of aFinals) expect(final.payload.content).toBe(SLOW_REPLY.join(''));
  }, 120_000);

  it('tells a message waiting behind earlier ones of its session that it is queued, and how many are ahead', async () => {
    const client = await open();
    const ids = [await sendOk(client, 'slow head'), await sendOk(client, 'second'), await sendOk(client, 'third')];

    const queued = (id: string) =>
      client.waitFor((e) => e.type === 'chat.status' && e.payload.messageId === id && e.payload.state === 'queued', 5000);
    const second = await queued(ids[1]);
    const third = await queued(ids[2]);
    for (const status of [second, third]) {
      expect(status.payload).toEqual(
        expect.objectContaining({
          sessionId: client.session.sessionId,
          eventId: expect.stringMatching(/^\d+-\d+$/),
          state: 'queued',
          detail: expect.any(String),
          ahead: expect.any(Number),
        }),
      );
      // after the message's own chat.user_message, before it starts
      const position = client.events.indexOf(status);
      const userMessage = indexOf(client, (e) => e.type === 'chat.user_message' && e.payload.messageId === status.payload.messageId);
      expect(userMessage).toBeGreaterThanOrEqual(0);
      expect(position).toBeGreaterThan(userMessage);
      const started = indexOf(client, (e) => e.type === 'chat.started' && e.payload.messageId === status.payload.messageId);
      if (started >= 0) expect(position).toBeLessThan(started);
    }
    expect(second.payload.ahead).toBeGreaterThanOrEqual(1);
    expect(third.payload.ahead).toBe(Number(second.payload.ahead) + 1);

    for (const id of ids) await client.waitForEnd(id, 20_000);
    // the head of an idle session never waited
    expect(client.events.some((e) => e.type === 'chat.status' && e.payload.messageId === ids[0] && e.payload.state === 'queued')).toBe(
      false,
    );
    for (const id of ids)
      expect(
        client
          .eventsOf(id)
          .filter(isFinal)
          .map((e) => e.type),
      ).toEqual(['chat.completed']);

    // status events are not in the session log: a resume from the first event replays none
    const firstEventId = String(
      client.events.find((e) => e.type === 'chat.user_message' && e.payload.messageId === ids[0])!.payload.eventId,
    );
    const resumed = new ChatClient(app.url, client.session);
    clients.push(resumed);
    await resumed.connect({ ...client.session, lastEventId: firstEventId });
    await resumed.waitForEnd(ids[2], 5000);
    expect(resumed.events.filter((e) => e.type === 'chat.status')).toEqual([]);
  }, 60_000);

  it('says a generation is waiting for the model while the model hangs before its first token', async () => {
    const client = await open();
    const stamps = stamp(client);
    const id = await sendOk(client, 'hang on');
    const started = await client.waitFor((e) => e.type === 'chat.started' && e.payload.messageId === id, 10_000);
    const startedAt = arrival(stamps, (e) => e.type === 'chat.started' && e.payload.messageId === id);

    const waiting = (n: number) =>
      client.waitFor(
        () => client.eventsOf(id).filter((e) => e.type === 'chat.status' && e.payload.state === 'waiting_for_model').length >= n,
        15_000,
      );
    await waiting(1);
    const statuses = () =>
      stamps.filter((e) => e.type === 'chat.status' && e.payload.messageId === id && e.payload.state === 'waiting_for_model');
    const first = statuses()[0];
    expect(first.payload).toEqual(
      expect.objectContaining({
        sessionId: client.session.sessionId,
        eventId: expect.stringMatching(/^\d+-\d+$/),
        detail: expect.any(String),
      }),
    );
    expect(first.at - startedAt).toBeLessThan(7000);
    expect(compareIds(String(first.payload.eventId), String(started.payload.eventId))).toBeGreaterThan(0);

    // repeated while the wait lasts, at most every few seconds
    await waiting(2);
    const [s1, s2] = statuses();
    expect(s2.at - s1.at).toBeGreaterThanOrEqual(2000);
    expect(s2.at - s1.at).toBeLessThan(9000);
    expect(client.eventsOf(id).some((e) => e.type === 'chat.delta' || isFinal(e))).toBe(false);

    // not replayed on resume: a socket resuming from the user message gets chat.started, no old status
    const userMessage = client.events.find((e) => e.type === 'chat.user_message' && e.payload.messageId === id)!;
    const resumed = new ChatClient(app.url, client.session);
    clients.push(resumed);
    await resumed.connect({ ...client.session, lastEventId: String(userMessage.payload.eventId) });
    await resumed.waitFor((e) => e.type === 'chat.started' && e.payload.messageId === id, 5000);
    await new Promise((r) => setTimeout(r, 300));
    const lastSeen = String(s2.payload.eventId);
    expect(resumed.events.filter((e) => e.type === 'chat.status' && compareIds(String(e.payload.eventId), lastSeen) <= 0)).toEqual([]);

    // it still ends when stopped: one final, the model request closed
    const cancel = await client.http('POST', `/chat/${client.session.sessionId}/messages/${id}/cancel`);
    expect(cancel.status).toBe(202);
    const events = await client.waitForEnd(id, 10_000);
    expect(events.filter(isFinal).map((e) => e.type)).toEqual(['chat.cancelled']);
    await ollama.waitForAbort(0, 5000);
  }, 60_000);

  it('delivers every message of a burst in state order: user message, started, deltas, one final', async () => {
    const client = await open();
    const contents = ['one', 'two', 'three', 'four', 'five'];
    const ids = await Promise.all(contents.map((c) => sendOk(client, c)));
    for (const id of ids) await client.waitForEnd(id, 20_000);
    await new Promise((r) => setTimeout(r, 500)); // anything late would show up now

    // acceptance order = the order of the chat.user_message events
    const accepted = client.events.filter((e) => e.type === 'chat.user_message').map((e) => e.payload.messageId);
    expect([...accepted].sort()).toEqual([...ids].sort());

    for (const id of accepted) {
      const events = client.eventsOf(id);
      const content = String(events[0].payload.content);
      const types = events.filter((e) => e.type !== 'chat.status').map((e) => e.type);
      expect({ id, types: types.join(',') }).toEqual({
        id,
        types: expect.stringMatching(/^chat\.user_message,chat\.started(,chat\.(thinking|delta))+,chat\.completed$/),
      });
      // a status only while the message is not over
      const userAt = indexOf(client, (e) => e.type === 'chat.user_message' && e.payload.messageId === id);
      const finalAt = indexOf(client, (e) => isFinal(e) && e.payload.messageId === id);
      const statusAt = client.events.flatMap((e, i) => (e.type === 'chat.status' && e.payload.messageId === id ? [i] : []));
      expect(statusAt.every((i) => i > userAt && i < finalAt)).toBe(true);
      const deltas = events
        .filter((e) => e.type === 'chat.delta')
        .map((e) => String(e.payload.delta))
        .join('');
      expect(deltas).toBe(`You said: ${content}`);
      expect(events.at(-1)!.payload.content).toBe(deltas);
      // eventIds increase along the message's life
      const eventIds = events.filter((e) => e.type !== 'chat.status').map((e) => String(e.payload.eventId));
      expect([...eventIds].sort(compareIds)).toEqual(eventIds);
    }
    // one at a time, in acceptance order
    for (let i = 1; i < accepted.length; i++) {
      const started = indexOf(client, (e) => e.type === 'chat.started' && e.payload.messageId === accepted[i]);
      const previousFinal = indexOf(client, (e) => isFinal(e) && e.payload.messageId === accepted[i - 1]);
      expect(started).toBeGreaterThan(previousFinal);
    }
  }, 60_000);
});
