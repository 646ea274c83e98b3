import { expect } from '@jest/globals';
/**
 * Workers that die (kill -9), pause (SIGSTOP/SIGCONT) or stop (SIGTERM) mid-answer, as real child
 * processes: liveness by heartbeat in chat:workers, takeover by a live worker as a new attempt,
 * fencing of the stale attempt, cancel of a dead worker's message, dead consumers leaving the
 * groups. The invariants are in docs/design.md; the bounds are issue 17's.
 */
import { AppProcess, exitedGracefully } from './support/app-process';
import { ChatClient, ReceivedEvent, deltasOfLastAttempt } from './support/chat-client';
import { eventually } from './support/eventually';
import { FakeOllama } from './support/fake-ollama';
import { sleep } from './support/timing';
import { within } from './support/within';
import {
  freshTestRedis,
  groupConsumerCount,
  groupConsumers,
  keyLayout,
  pendingCount,
  pendingEntries,
  type TestRedis,
  testRedisEnv,
  workerHeartbeats,
} from './support/test-redis';

/** Tokens that say which attempt wrote them: ` a0 a1 ...` for one, ` b0 b1 ...` for another. */
const tokens = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => ` ${prefix}${i}`);

const isFinal = (e: ReceivedEvent) => /^chat\.(completed|failed|cancelled)$/.test(e.type);
const attemptsOf = (events: ReceivedEvent[]) => events.filter((e) => e.type === 'chat.started').map((e) => e.payload.attempt);
const started = (messageId: string, attempt: number) => (e: ReceivedEvent) =>
  e.type === 'chat.started' && e.payload.messageId === messageId && e.payload.attempt === attempt;

describe('worker faults', () => {
  let redis: TestRedis;
  let ollama: FakeOllama;
  let api: AppProcess;
  const workers: AppProcess[] = [];
  const clients: ChatClient[] = [];

  const startWorker = async (env: Record<string, string> = {}) => {
    const worker = await AppProcess.start({ entry: 'worker', env: { ...testRedisEnv(), OLLAMA_HOST: ollama.url, ...env } });
    workers.push(worker);
    return worker;
  };

  /** Starts a worker and finds its consumer name: the member its heartbeat adds to chat:workers. */
  const startNamedWorker = async (env: Record<string, string> = {}) => {
    const known = new Set((await workerHeartbeats(redis)).keys());
    const worker = await startWorker(env);
    const beats = await eventually(
      () => workerHeartbeats(redis),
      (b) => [...b.keys()].some((name) => !known.has(name)),
    );
    const names = [...beats.keys()].filter((name) => !known.has(name));
    expect(names).toHaveLength(1);
    return { worker, name: names[0] };
  };

  const open = async () => {
    const client = await ChatClient.open(api.url);
    clients.push(client);
    return client;
  };

  /** Sends, and resolves with the messageId once the answer streams (a worker is mid-answer). */
  const sendAndWaitForDelta = async (client: ChatClient, content: string) => {
    const sent = await client.send(content);
    expect(sent.status).toBe(202);
    const messageId = String(sent.body.messageId);
    await client.waitFor((e) => e.type === 'chat.delta' && e.payload.messageId === messageId, 10_000);
    return messageId;
  };

  const assistantReply = async (client: ChatClient, messageId: string) => {
    const replies = (await client.history()).body.messages.filter((m) => m.role === 'assistant' && m.messageId === messageId);
    expect(replies).toHaveLength(1);
    return replies[0];
  };

  beforeAll(async () => {
    redis = await freshTestRedis();
    ollama = new FakeOllama({ defaultTokenDelayMs: 2 });
    await ollama.start();
    // WORKER_LIVENESS_MS unset on the API: the default (2000), which its cancel uses to judge an owner dead.
    api = await AppProcess.start({ env: { ...testRedisEnv(), OLLAMA_HOST: ollama.url, WORKER_ENABLED: 'false' } });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await Promise.all(workers.splice(0).map((w) => w.kill())); // SIGKILL ends a SIGSTOPped process too
    // A failed test may leave an entry pending with a dead worker: the next test's workers would run it.
    for (const { stream, id } of await pendingEntries(redis)) {
      await redis.xack(stream, 'ai-workers', id);
      await redis.xdel(stream, id);
    }
    ollama.reset();
  });

  afterAll(async () => {
    await api?.stop();
    await ollama?.stop();
    await redis?.quit();
  });

  it('continues on a live worker, as attempt 2 within 5 s, a message whose worker was killed (kill -9) mid-answer', async () => {
    const stale = tokens('a', 200); // 10 s: still streaming when the kill comes
    const fresh = tokens('b', 20);
    ollama.enqueue({ content: stale, tokenDelayMs: 50 }, { content: fresh, tokenDelayMs: 20 });
    const doomed = await startWorker(); // WORKER_LIVENESS_MS unset: the default, 2000
    const client = await open();
    const messageId = await sendAndWaitForDelta(client, 'survive kill -9');
    await startWorker(); // the live worker, idle
    expect(client.eventsOf(messageId).filter(isFinal)).toEqual([]);

    const killedAt = Date.now();
    await doomed.kill();
    await client.waitFor(started(messageId, 2), 15_000);
    const takeoverMs = Date.now() - killedAt;
    await client.waitForEnd(messageId, 15_000);
    await sleep(500); // room for a second final event, were there one

    const events = client.eventsOf(messageId);
    expect(attemptsOf(events)).toEqual([1, 2]);
    expect(events.filter(isFinal).map((e) => e.type)).toEqual(['chat.completed']);
    expect(events.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: fresh.join('') } });
    expect(deltasOfLastAttempt(events)).toBe(fresh.join(''));
    expect(takeoverMs).toBeLessThan(5000);
    // the answer started from zero, with the same conversation
    expect(ollama.requests).toHaveLength(2);
    expect(ollama.requests[1].body.messages).toEqual(ollama.requests[0].body.messages);
    expect(await assistantReply(client, messageId)).toMatchObject({ status: 'completed', content: fresh.join('') });
    await eventually(
      () => pendingCount(redis),
      (n) => n === 0,
    );
  }, 45_000);

  it('fences out a worker paused (SIGSTOP) until another took its message over: after SIGCONT it writes nothing', async () => {
    const stale = tokens('a', 400); // 20 s: the paused worker still has tokens to write when it resumes
    const fresh = tokens('b', 20);
    ollama.enqueue({ content: stale, tokenDelayMs: 50 }, { content: fresh, tokenDelayMs: 20 });
    const paused = await startWorker();
    const client = await open();
    const messageId = await sendAndWaitForDelta(client, 'survive a pause');
    await startWorker();

    const pid = paused.pid!;
    process.kill(pid, 'SIGSTOP');
    try {
      await client.waitFor(started(messageId, 2), 15_000);
      await client.waitForEnd(messageId, 15_000);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await sleep(2000); // anything the stale worker still wrote would have arrived by now

    const events = client.eventsOf(messageId);
    expect(attemptsOf(events)).toEqual([1, 2]);
    expect(events.filter(isFinal).map((e) => e.type)).toEqual(['chat.completed']);
    const restart = events.findIndex(started(messageId, 2));
    const end = events.findIndex(isFinal);
    expect(events.slice(end + 1).map((e) => e.type)).toEqual([]);
    const afterRestart = events.slice(restart + 1, end);
    expect(afterRestart.filter((e) => e.type === 'chat.thinking')).toEqual([]);
    expect(
      afterRestart
        .filter((e) => e.type === 'chat.delta')
        .map((e) => String(e.payload.delta))
        .join(''),
    ).toBe(fresh.join(''));
    expect(events[end].payload.content).toBe(fresh.join(''));
    expect(await assistantReply(client, messageId)).toMatchObject({ status: 'completed', content: fresh.join('') });
    // running again, the stale worker found itself fenced and stopped its generation: not crashed,
    // and no third attempt of its own
    await ollama.waitForAbort(0, 3000);
    expect(ollama.requests[0].finished).toBe(false);
    expect(await within(paused.waitForExit(), 0)).toBe('still waiting');
    expect(ollama.requests).toHaveLength(2);
    await eventually(
      () => pendingCount(redis),
      (n) => n === 0,
    );
  }, 45_000);

  it('never takes over a healthy generation, however long: 8 s of tokens with an idle second worker', async () => {
    const long = tokens('s', 80);
    ollama.setDefault({ content: long, tokenDelayMs: 100 }); // 8 s, four times WORKER_LIVENESS_MS
    await startWorker();
    await startWorker();
    const client = await open();
    const sent = await client.send('take your time');
    const messageId = String(sent.body.messageId);
    await client.waitForEnd(messageId, 30_000);
    await sleep(300);

    const events = client.eventsOf(messageId);
    expect(attemptsOf(events)).toEqual([1]);
    expect(events.filter(isFinal).map((e) => e.type)).toEqual(['chat.completed']);
    expect(events.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: long.join('') } });
    expect(ollama.requests).toHaveLength(1);
  }, 45_000);

  it('cancels at once a message whose worker was killed, and no worker runs it again', async () => {
    const answer = tokens('c', 200);
    ollama.setDefault({ content: answer, tokenDelayMs: 50 });
    const doomed = await startWorker();
    const client = await open();
    const messageId = await sendAndWaitForDelta(client, 'cancel me after my worker died');
    await doomed.kill();
    // no worker runs, so nobody takes the message over; the API judges the owner dead once its
    // heartbeat is older than WORKER_LIVENESS_MS (2000)
    await sleep(3000);
    expect(client.eventsOf(messageId).filter(isFinal)).toEqual([]);

    const askedAt = Date.now();
    const res = await client.http('POST', `/chat/${client.session.sessionId}/messages/${messageId}/cancel`);
    expect(res.status).toBe(202);
    await client.waitFor((e) => e.payload.messageId === messageId && isFinal(e), 10_000);
    const cancelMs = Date.now() - askedAt;
    expect(
      client
        .eventsOf(messageId)
        .filter(isFinal)
        .map((e) => e.type),
    ).toEqual(['chat.cancelled']);
    expect(cancelMs).toBeLessThan(2000);
    const reply = await assistantReply(client, messageId);
    expect(reply).toMatchObject({ status: 'cancelled' });
    expect(answer.join('').startsWith(String(reply.content))).toBe(true);

    // A worker started now takes the dead worker's entry over, finds the message ended and
    // acknowledges it without answering it again.
    await startWorker();
    await eventually(
      () => pendingCount(redis),
      (n) => n === 0,
      10_000,
    );
    await sleep(500);
    const events = client.eventsOf(messageId);
    expect(attemptsOf(events)).toEqual([1]);
    expect(events.filter(isFinal).map((e) => e.type)).toEqual(['chat.cancelled']);
    expect(ollama.requests).toHaveLength(1);
  }, 45_000);

  it('hands over at once on SIGTERM: the answer outliving SHUTDOWN_GRACE_MS continues on another worker within 3 s', async () => {
    const stale = tokens('a', 400); // 20 s: far beyond the grace period
    const fresh = tokens('b', 20);
    ollama.enqueue({ content: stale, tokenDelayMs: 50 }, { content: fresh, tokenDelayMs: 20 });
    // A liveness of 4 s: waiting for the stopping worker's last heartbeat to age (≥ 3.5 s after
    // the SIGTERM: it heartbeats through the grace period) would miss the 3 s bound; marking itself
    // dead meets it (grace 0.5 s, the aborted generation settling, then at most one heartbeat
    // period of the live worker, 1 s).
    const env = { WORKER_LIVENESS_MS: '4000' };
    const stopping = await startWorker({ ...env, SHUTDOWN_GRACE_MS: '500' });
    const client = await open();
    const messageId = await sendAndWaitForDelta(client, 'survive a SIGTERM');
    await startWorker(env);
    expect(client.eventsOf(messageId).filter(isFinal)).toEqual([]);

    const stoppedAt = Date.now();
    const exit = stopping.stop();
    await client.waitFor(started(messageId, 2), 15_000);
    const handoverMs = Date.now() - stoppedAt;
    await client.waitForEnd(messageId, 15_000);
    expect(exitedGracefully(await exit)).toBe(true);
    await sleep(500);

    const events = client.eventsOf(messageId);
    expect(attemptsOf(events)).toEqual([1, 2]);
    expect(events.filter(isFinal).map((e) => e.type)).toEqual(['chat.completed']);
    expect(events.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: fresh.join('') } });
    expect(deltasOfLastAttempt(events)).toBe(fresh.join(''));
    expect(handoverMs).toBeLessThan(3000);
    expect(ollama.requests).toHaveLength(2);
    expect(await assistantReply(client, messageId)).toMatchObject({ status: 'completed', content: fresh.join('') });
    await eventually(
      () => pendingCount(redis),
      (n) => n === 0,
    );
  }, 45_000);

  it('removes a killed worker from every partition group and from chat:workers once its message is taken over', async () => {
    ollama.enqueue({ content: tokens('a', 200), tokenDelayMs: 50 }, { content: tokens('b', 10), tokenDelayMs: 20 });
    const { worker: doomed, name: doomedName } = await startNamedWorker();
    const client = await open();
    const messageId = await sendAndWaitForDelta(client, 'leave no trace');
    const { name: liveName } = await startNamedWorker();
    expect(liveName).not.toBe(doomedName);
    // before: the doomed worker is a consumer of its message's partition, with the message pending
    const incoming = keyLayout().partitionOf(client.session.sessionId).incoming;
    expect((await groupConsumers(redis)).filter((c) => c.name === doomedName)).toContainEqual({
      stream: incoming,
      name: doomedName,
      pending: 1,
    });

    await doomed.kill();
    await client.waitFor(started(messageId, 2), 15_000);
    const doomedGroups = await eventually(
      async () => (await groupConsumers(redis)).filter((c) => c.name === doomedName).map((c) => c.stream),
      (streams) => streams.length === 0,
      6000,
    );
    expect(doomedGroups).toEqual([]);
    await eventually(
      () => workerHeartbeats(redis),
      (beats) => !beats.has(doomedName),
      6000,
    );
    // the dead workers of earlier tests are gone too: only the live worker is left in any group
    await eventually(
      async () => [...new Set((await groupConsumers(redis)).map((c) => c.name))],
      (names) => names.includes(liveName) && names.every((name) => name === liveName),
      6000,
    );
    // XINFO GROUPS agrees: one consumer per group the live worker is known in, nothing else
    expect(await groupConsumerCount(redis)).toBe((await groupConsumers(redis)).length);
    expect((await workerHeartbeats(redis)).has(liveName)).toBe(true);
    const events = await client.waitForEnd(messageId, 15_000);
    expect(events.filter(isFinal).map((e) => e.type)).toEqual(['chat.completed']);
  }, 45_000);
});
