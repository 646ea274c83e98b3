/**
 * DELETE /chat/:sessionId deletes the conversation's text wherever the app keeps it: the history,
 * the session's event log (what Socket.IO and SSE resume from), the session's events in
 * chat:outgoing and its dead letters, including text still on its way while the delete runs. The
 * message it interrupts mid-stream still ends with exactly one chat.cancelled. AUTH_MODE=none, so
 * resuming after the delete reaches the data (token revocation is tested on its own).
 */
import { randomUUID } from 'node:crypto';
import { encodeEnvelope } from '../src/event-bus/envelopes';
import { KeyLayout } from '../src/event-bus/stream-names';
import { AppProcess } from './support/app-process';
import { ChatClient } from './support/chat-client';
import { eventually } from './support/eventually';
import { SseClient } from './support/sse-client';
import { freshTestRedis, pendingCount, type TestRedis, testRedisEnv } from './support/test-redis';

const TEXT_EVENTS = ['chat.user_message', 'chat.thinking', 'chat.delta', 'chat.completed', 'chat.failed'];
const FINAL = /^chat\.(completed|failed|cancelled)$/;
const settle = (ms = 400) => new Promise((r) => setTimeout(r, ms));

const LAYOUT = new KeyLayout(64);

describe('deleting a conversation', () => {
  let redis: TestRedis;
  let app: AppProcess;
  const closers: (() => unknown)[] = [];

  beforeAll(async () => {
    redis = await freshTestRedis();
    app = await AppProcess.start({
      env: { ...testRedisEnv(), AI_PROVIDER: 'mock', MOCK_TOKEN_DELAY_MS: '15', DELTA_COALESCE_MS: '0', AUTH_MODE: 'none' },
    });
  });

  afterAll(async () => {
    for (const close of closers.splice(0)) await close();
    await app?.stop();
    await redis?.quit();
  });

  const open = async (session?: ChatClient['session']) => {
    const client = await ChatClient.open(app.url, session);
    closers.push(() => client.close());
    return client;
  };
  const deadLetter = (sessionId: string, text: string) =>
    redis.xadd(
      LAYOUT.partitionOf(sessionId).dead,
      '*',
      ...encodeEnvelope('chat.dead_letter', {
        stream: LAYOUT.partitionOf(sessionId).incoming,
        entryId: '1-1',
        reason: 'test',
        sessionId,
        messageId: randomUUID(),
        fields: ['command', text],
      }),
    );
  const raw = async (key: string) => JSON.stringify(await redis.xrange(key, '-', '+'));
  /** Every partition's outgoing or dead-letter stream, as one text. */
  const rawAll = async (kind: 'outgoing' | 'dead') => (await Promise.all(LAYOUT.partitions.map((p) => raw(p[kind])))).join('\n');

  it('leaves no text of it to resume, in its log, in chat:outgoing or in chat:dead; the running message is cancelled once', async () => {
    const done = `SENTINEL-DONE-${randomUUID()}`;
    const running = `SENTINEL-RUNNING-${randomUUID()}`;
    const queued = `SENTINEL-QUEUED-${randomUUID()}`;
    const other = `SENTINEL-OTHER-${randomUUID()}`;
    const sentinels = new RegExp([done, running, queued].join('|'));

    // Another session, untouched by the delete.
    const bystander = await open();
    const otherId = String((await bystander.send(other)).body.messageId);
    await bystander.waitForEnd(otherId);

    const client = await open();
    const { sessionId } = client.session;
    const doneId = String((await client.send(done)).body.messageId);
    expect((await client.waitForEnd(doneId)).at(-1)!.type).toBe('chat.completed');
    const words = Array.from({ length: 150 }, (_, i) => `w${i}`).join(' ');
    const runningId = String((await client.send(`${running} ${words}`, { think: 'low' })).body.messageId);
    const queuedId = String((await client.send(queued)).body.messageId);
    await client.waitFor((e) => e.type === 'chat.delta' && e.payload.messageId === runningId && String(e.payload.delta).includes(running));
    await client.waitFor((e) => e.type === 'chat.delta' && e.payload.messageId === runningId && e.payload.delta === ' w20');
    await deadLetter(sessionId, done);
    await deadLetter(bystander.session.sessionId, other);
    // the text is there before the delete: what the checks below look for
    expect(await raw(LAYOUT.session(sessionId).events)).toMatch(sentinels);
    expect(await rawAll('outgoing')).toMatch(sentinels);

    expect((await client.http('DELETE', `/chat/${sessionId}`)).status).toBe(204);
    for (const id of [runningId, queuedId]) {
      const finals = (await client.waitForEnd(id)).filter((e) => FINAL.test(e.type)).map((e) => e.type);
      expect(finals).toEqual(['chat.cancelled']);
    }
    await eventually(
      () => pendingCount(redis),
      (n) => n === 0,
      10_000,
    );
    await settle(); // late events of the running message, if any, have gone through the relay
    // still exactly one outcome each, seen live
    for (const id of [runningId, queuedId])
      expect(
        client
          .eventsOf(id)
          .filter((e) => FINAL.test(e.type))
          .map((e) => e.type),
      ).toEqual(['chat.cancelled']);

    // Socket.IO resuming from the very start
    const resumed = new ChatClient(app.url, client.session);
    closers.push(() => resumed.close());
    await resumed.connect({ sessionId, lastEventId: '0-0' });
    await resumed.waitFor((e) => e.type === 'chat.cancelled' && e.payload.messageId === runningId);
    await settle(200);
    expectNoText(
      resumed.events.map((e) => ({ type: e.type, payload: e.payload })),
      sentinels,
    );
    expect(resumed.events.filter((e) => e.type === 'chat.cancelled' && e.payload.messageId === runningId)).toHaveLength(1);

    // SSE resuming from the very start
    const sse = new SseClient();
    closers.push(() => sse.close());
    await sse.open(`${app.url}/chat/${sessionId}/events`, { 'last-event-id': '0-0' });
    expect(sse.status).toBe(200);
    await sse.waitFor((f) => f.event === 'chat.cancelled' && f.data.messageId === runningId);
    await settle(200);
    expectNoText(
      sse.frames.map((f) => ({ type: f.event, payload: f.data })),
      sentinels,
    );

    // the raw keys, read past the app
    const log = await raw(LAYOUT.session(sessionId).events);
    expect(log).not.toMatch(sentinels);
    expect(log).not.toMatch(/chat\.(user_message|thinking|delta|completed|failed)/);
    expect(await redis.exists(LAYOUT.session(sessionId).order, LAYOUT.session(sessionId).hash)).toBe(0);
    expect(await rawAll('outgoing')).not.toMatch(sentinels);
    expect(await rawAll('dead')).not.toMatch(sentinels);
    expect((await client.history()).body.messages).toEqual([]);

    // the other session keeps everything
    expect(await raw(LAYOUT.session(bystander.session.sessionId).events)).toContain(other);
    expect(await rawAll('outgoing')).toContain(other);
    expect(await rawAll('dead')).toContain(other);
  });
});

/** No text-bearing event, and no sentinel anywhere, among what a resuming client received. */
function expectNoText(events: { type: string; payload: Record<string, unknown> }[], sentinels: RegExp): void {
  expect(events.filter((e) => TEXT_EVENTS.includes(e.type)).map((e) => `${e.type} ${String(e.payload.messageId)}`)).toEqual([]);
  expect(JSON.stringify(events)).not.toMatch(sentinels);
}
