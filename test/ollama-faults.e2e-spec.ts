import { expect } from '@jest/globals';
/**
 * Ollama faults, end to end with real processes: the built API (with its in-process AI worker) as a
 * child process, the real `ollama` client talking to the fake Ollama server (scripted per request),
 * real socket.io-client sockets and a real redis-server.
 *
 * Every case checks the whole outcome of one message: its final event (type, error code, a message a
 * person can read), the chat.started attempts, how many /api/chat requests Ollama saw and with which
 * conversation, the assistant entry of the history, the dead letter of a failure, and that the
 * command was acknowledged (nothing pending in the `ai-workers` group).
 *
 * The timeouts differ per group, so each describe block starts its own app (about 1 s each).
 * Retries back off 0.5 s then 2 s, so a case that fails after three attempts takes about 2.5 s.
 * Nothing here asserts speed; timeouts are only used to make the faults happen.
 */
import http, { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { AppProcess } from './support/app-process';
import { ChatClient, deltasOfLastAttempt, ReceivedEvent } from './support/chat-client';
import { eventually } from './support/eventually';
import { FakeOllama } from './support/fake-ollama';
import { freshTestRedis, keyLayout, pendingCount, type TestRedis, testRedisEnv } from './support/test-redis';

const SYSTEM_PROMPT = 'You are a fault-injection test assistant.';
const MODEL = 'gpt-oss:20b';
/** What a crashed llama runner answers with an HTTP 500. */
const RUNNER_CRASHED = 'llama runner process has terminated: exit status 2';

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

interface Harness {
  redis: TestRedis;
  ollama: FakeOllama;
  app: AppProcess;
  open(): Promise<ChatClient>;
}

/**
 * One app (API + in-process worker) against a fresh Redis database and a fresh fake Ollama, for the
 * describe block that calls it. Each test starts from an empty script queue and the model present.
 */
function useApp(env: Record<string, string>): Harness {
  const clients: ChatClient[] = [];
  const h = {
    open: async () => {
      const client = await ChatClient.open(h.app.url);
      clients.push(client);
      return client;
    },
  } as Harness;

  beforeAll(async () => {
    h.redis = await freshTestRedis();
    h.ollama = new FakeOllama({ defaultTokenDelayMs: 2 });
    await h.ollama.start();
    h.app = await AppProcess.start({
      env: {
        ...testRedisEnv(),
        OLLAMA_HOST: h.ollama.url,
        OLLAMA_MODEL: MODEL,
        SYSTEM_PROMPT,
        DELTA_COALESCE_MS: '20',
        SHUTDOWN_GRACE_MS: '1000',
        ...env,
      },
    });
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    h.ollama.reset();
    h.ollama.models.add(MODEL);
  });

  afterAll(async () => {
    await h.app?.stop();
    await h.ollama?.stop();
    await h.redis?.quit();
  });

  return h;
}

/** Sends `content` over HTTP and waits for the message's final event. */
async function sendAndWaitForEnd(client: ChatClient, content: string, timeoutMs = 15_000) {
  const sent = await client.send(content);
  expect(sent.status).toBe(202);
  const messageId = String(sent.body.messageId);
  const events = await client.waitForEnd(messageId, timeoutMs);
  return { messageId, events };
}

function attempts(events: ReceivedEvent[]): unknown[] {
  return events.filter((e) => e.type === 'chat.started').map((e) => e.payload.attempt);
}

function countOf(events: ReceivedEvent[], type: string): number {
  return events.filter((e) => e.type === type).length;
}

/** The conversation the worker must send for a first message of a session. */
function firstTurn(content: string) {
  return [
    { role: 'system', content: SYSTEM_PROMPT },
    { role: 'user', content },
  ];
}

/** Every /api/chat request the fake saw carried this conversation, for the configured model, streamed. */
function expectEveryRequestToCarry(ollama: FakeOllama, messages: { role: string; content: string }[]): void {
  for (const request of ollama.requests) {
    expect(request.body).toMatchObject({ model: MODEL, stream: true });
    expect(request.body.messages).toEqual(messages);
  }
}

async function assistantEntry(client: ChatClient, messageId: string): Promise<Record<string, unknown> | undefined> {
  const history = await client.history();
  expect(history.status).toBe(200);
  return history.body.messages.find((m) => m.role === 'assistant' && m.messageId === messageId);
}

interface DeadLetter {
  type: string | undefined;
  data: Record<string, unknown>;
}

/** The dead letters naming `messageId`, in every partition's `chat:dead:{T}`. */
async function deadLettersOf(redis: TestRedis, messageId: string): Promise<DeadLetter[]> {
  // one XRANGE each: the streams span a cluster's nodes
  const entries = (await Promise.all(keyLayout().partitions.map((partition) => redis.xrange(partition.dead, '-', '+')))).flat();
  return entries
    .map(([, fields]) => {
      const map = new Map<string, string>();
      for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i], fields[i + 1]);
      return { type: map.get('type'), data: JSON.parse(map.get('data') ?? '{}') as Record<string, unknown> };
    })
    .filter((letter) => letter.data.messageId === messageId);
}

/** The command was acknowledged: nothing left pending for another worker. */
async function expectNothingPending(redis: TestRedis): Promise<void> {
  await eventually(
    () => pendingCount(redis),
    (count) => count === 0,
  );
}

/**
 * The failure went to a dead-letter stream once, naming the message, its session, the failure and
 * the command's entry in its session's partition's chat:incoming.
 */
async function expectDeadLetter(redis: TestRedis, client: ChatClient, messageId: string, error: { code: string; message: string }) {
  const letters = await deadLettersOf(redis, messageId);
  expect(letters).toEqual([
    {
      type: 'chat.dead_letter',
      data: expect.objectContaining({
        stream: keyLayout().partitionOf(client.session.sessionId).incoming,
        entryId: expect.stringMatching(/^\d+-\d+$/),
        reason: `${error.code}: ${error.message}`,
        sessionId: client.session.sessionId,
        messageId,
      }),
    },
  ]);
}

function failureOf(events: ReceivedEvent[]): { code: string; message: string } {
  const last = events.at(-1)!;
  expect(last.type).toBe('chat.failed');
  return last.payload.error as { code: string; message: string };
}

// ---------------------------------------------------------------------------------------------
// HTTP errors, mid-stream errors, cut streams, a missing model, a slow but timely first token
// ---------------------------------------------------------------------------------------------

describe('Ollama faults: HTTP errors, error lines, cut streams, missing model', () => {
  const h = useApp({ OLLAMA_FIRST_TOKEN_TIMEOUT_MS: '2000', OLLAMA_TIMEOUT_MS: '60000' });

  it('retries an HTTP 500 once and completes on attempt 2', async () => {
    h.ollama.enqueue({ status: 500, errorMessage: RUNNER_CRASHED });
    h.ollama.setDefault({ content: ['Back', ' on', ' track', '.'], tokenDelayMs: 5 });
    const client = await h.open();
    const { messageId, events } = await sendAndWaitForEnd(client, 'first try fails');

    const last = events.at(-1)!;
    expect(last.type).toBe('chat.completed');
    expect(last.payload.content).toBe('Back on track.');
    expect(countOf(events, 'chat.failed')).toBe(0);
    expect(attempts(events)).toEqual([1, 2]);
    // the failed attempt streamed nothing; the answer is exactly the deltas after chat.started #2
    expect(deltasOfLastAttempt(events)).toBe('Back on track.');
    expect(countOf(events, 'chat.delta')).toBeGreaterThan(0);

    expect(h.ollama.requests).toHaveLength(2);
    expectEveryRequestToCarry(h.ollama, firstTurn('first try fails'));
    await h.app.waitForOutput(
      new RegExp(
        `^(?=.*attempt 1 failed \\(ollama_error\\), retrying: Ollama failed \\(HTTP 500\\))(?=.*"messageId":"${messageId}").*$`,
        'm',
      ),
    );

    expect(await assistantEntry(client, messageId)).toMatchObject({ status: 'completed', content: 'Back on track.' });
    expect((await assistantEntry(client, messageId))!.error).toBeUndefined();
    expect(await deadLettersOf(h.redis, messageId)).toEqual([]);
    await expectNothingPending(h.redis);
  });

  it('fails with ollama_error after three attempts when every try answers HTTP 500, and dead-letters it', async () => {
    h.ollama.setDefault({ status: 500, errorMessage: RUNNER_CRASHED });
    const client = await h.open();
    const { messageId, events } = await sendAndWaitForEnd(client, 'always 500');

    const error = failureOf(events);
    expect(error).toEqual({ code: 'ollama_error', message: expect.stringContaining('HTTP 500') });
    expect(error.message).toContain(RUNNER_CRASHED);
    expect(attempts(events)).toEqual([1, 2, 3]);
    expect(countOf(events, 'chat.delta')).toBe(0);
    expect(countOf(events, 'chat.completed')).toBe(0);

    expect(h.ollama.requests).toHaveLength(3);
    expectEveryRequestToCarry(h.ollama, firstTurn('always 500'));

    expect(await assistantEntry(client, messageId)).toMatchObject({ status: 'failed', content: '', error });
    await expectDeadLetter(h.redis, client, messageId, error);
    await expectNothingPending(h.redis);
  });

  it('retries an {"error"} line in the middle of the stream and completes on attempt 2', async () => {
    const errorMessage = 'an error was encountered while running the model: CUDA error: out of memory';
    h.ollama.enqueue({ content: ['Partial', ' answer', ' that', ' errors'], errorAfterChunks: 2, errorMessage, tokenDelayMs: 5 });
    h.ollama.setDefault({ content: ['A', ' clean', ' answer', '.'], tokenDelayMs: 5 });
    const client = await h.open();
    const { messageId, events } = await sendAndWaitForEnd(client, 'error mid-stream');

    const last = events.at(-1)!;
    expect(last.type).toBe('chat.completed');
    expect(last.payload.content).toBe('A clean answer.');
    expect(attempts(events)).toEqual([1, 2]);
    expect(deltasOfLastAttempt(events)).toBe('A clean answer.');
    // whatever attempt 1 streamed before the error was a prefix of its partial answer
    const firstAttempt = events.slice(
      events.findIndex((e) => e.type === 'chat.started') + 1,
      events.map((e) => e.type).lastIndexOf('chat.started'),
    );
    const firstDeltas = firstAttempt
      .filter((e) => e.type === 'chat.delta')
      .map((e) => String(e.payload.delta))
      .join('');
    expect('Partial answer'.startsWith(firstDeltas)).toBe(true);

    expect(h.ollama.requests).toHaveLength(2);
    expectEveryRequestToCarry(h.ollama, firstTurn('error mid-stream'));
    // Ollama's own error text reaches the log of the retry
    await h.app.waitForOutput(
      new RegExp(
        `^(?=.*attempt 1 failed \\((stream_interrupted|ollama_error)\\), retrying: .*CUDA error: out of memory)(?=.*"messageId":"${messageId}").*$`,
        'm',
      ),
    );

    // the partial answer of attempt 1 leaves no trace in the history
    expect(await assistantEntry(client, messageId)).toMatchObject({ status: 'completed', content: 'A clean answer.' });
    expect(await deadLettersOf(h.redis, messageId)).toEqual([]);
    await expectNothingPending(h.redis);
  });

  it("fails with stream_interrupted after three cut streams and keeps the last attempt's partial answer", async () => {
    h.ollama.enqueue(
      { content: ['First', ' try', ' is', ' cut'], cutAfterChunks: 2, tokenDelayMs: 5 },
      { content: ['Second', ' try', ' is', ' cut', ' too'], cutAfterChunks: 3, tokenDelayMs: 5 },
      { content: ['Third', ' try', ' partial', ' never', ' ends'], cutAfterChunks: 3, tokenDelayMs: 5 },
    );
    const client = await h.open();
    const { messageId, events } = await sendAndWaitForEnd(client, 'cut me off');

    const error = failureOf(events);
    expect(error).toEqual({ code: 'stream_interrupted', message: expect.stringMatching(/^The answer from Ollama was interrupted: \S/) });
    expect(attempts(events)).toEqual([1, 2, 3]);
    // the client saw at most the partial answer of the last attempt (a buffered tail may be dropped)
    expect('Third try partial'.startsWith(deltasOfLastAttempt(events))).toBe(true);

    expect(h.ollama.requests).toHaveLength(3);
    expectEveryRequestToCarry(h.ollama, firstTurn('cut me off'));
    // the server cut these, the client did not abort them
    expect(h.ollama.requests.map((r) => r.aborted)).toEqual([false, false, false]);

    expect(await assistantEntry(client, messageId)).toMatchObject({ status: 'failed', content: 'Third try partial', error });
    await expectDeadLetter(h.redis, client, messageId, error);
    await expectNothingPending(h.redis);

    // the failed turn (and its partial answer) is not sent as context of the next message
    h.ollama.setDefault({ content: ['Fine', ' now', '.'], tokenDelayMs: 5 });
    const next = await sendAndWaitForEnd(client, 'and now?');
    expect(next.events.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: 'Fine now.' } });
    expect(attempts(next.events)).toEqual([1]);
    expect(h.ollama.requests).toHaveLength(4);
    expect(h.ollama.requests[3].body.messages).toEqual(firstTurn('and now?'));
    await expectNothingPending(h.redis);
  });

  it('fails with model_not_found at once, with a pull instruction, when the model is missing', async () => {
    h.ollama.models.delete(MODEL);
    const client = await h.open();
    const { messageId, events } = await sendAndWaitForEnd(client, 'is the model there?');

    const error = failureOf(events);
    expect(error.code).toBe('model_not_found');
    expect(error.message).toContain('ollama pull gpt-oss:20b');
    expect(error.message).not.toContain(h.ollama.url); // every client of the session sees it
    expect(attempts(events)).toEqual([1]);
    expect(countOf(events, 'chat.delta')).toBe(0);

    expect(h.ollama.requests).toHaveLength(1);
    expectEveryRequestToCarry(h.ollama, firstTurn('is the model there?'));

    expect(await assistantEntry(client, messageId)).toMatchObject({ status: 'failed', content: '', error });
    await expectDeadLetter(h.redis, client, messageId, error);
    await expectNothingPending(h.redis);
  });

  it('fails with bad_request at once when Ollama answers HTTP 400', async () => {
    const errorMessage = 'invalid think value: "extreme" (must be "high", "medium", "low", true, or false)';
    h.ollama.setDefault({ status: 400, errorMessage });
    const client = await h.open();
    const { messageId, events } = await sendAndWaitForEnd(client, 'a rejected request');

    const error = failureOf(events);
    expect(error.code).toBe('bad_request');
    expect(error.message).toContain('HTTP 400');
    expect(error.message).toContain(errorMessage);
    expect(attempts(events)).toEqual([1]);
    expect(countOf(events, 'chat.delta')).toBe(0);

    expect(h.ollama.requests).toHaveLength(1);
    expectEveryRequestToCarry(h.ollama, firstTurn('a rejected request'));

    expect(await assistantEntry(client, messageId)).toMatchObject({ status: 'failed', content: '', error });
    await expectDeadLetter(h.redis, client, messageId, error);
    await expectNothingPending(h.redis);
  });

  it('waits for a slow first token that still comes within OLLAMA_FIRST_TOKEN_TIMEOUT_MS', async () => {
    h.ollama.setDefault({ content: ['Slow', ' but', ' in', ' time', '.'], firstTokenDelayMs: 300, tokenDelayMs: 5 });
    const client = await h.open();
    const { messageId, events } = await sendAndWaitForEnd(client, 'take your time');

    expect(events.at(-1)).toMatchObject({ type: 'chat.completed', payload: { content: 'Slow but in time.' } });
    expect(attempts(events)).toEqual([1]);
    expect(deltasOfLastAttempt(events)).toBe('Slow but in time.');

    expect(h.ollama.requests).toHaveLength(1);
    expect(h.ollama.requests[0]).toMatchObject({ aborted: false, finished: true });
    expectEveryRequestToCarry(h.ollama, firstTurn('take your time'));

    expect(await assistantEntry(client, messageId)).toMatchObject({ status: 'completed', content: 'Slow but in time.' });
    expect(await deadLettersOf(h.redis, messageId)).toEqual([]);
    await expectNothingPending(h.redis);
  });
});

// ---------------------------------------------------------------------------------------------
// First-token timeout
// ---------------------------------------------------------------------------------------------

describe('Ollama faults: no first token within OLLAMA_FIRST_TOKEN_TIMEOUT_MS', () => {
  const h = useApp({ OLLAMA_FIRST_TOKEN_TIMEOUT_MS: '500', OLLAMA_TIMEOUT_MS: '60000' });

  it('aborts each attempt and fails with first_token_timeout after three attempts', async () => {
    h.ollama.setDefault({ content: ['Far', ' too', ' late'], firstTokenDelayMs: 3000 });
    const client = await h.open();
    const { messageId, events } = await sendAndWaitForEnd(client, 'are you loading?');

    const error = failureOf(events);
    expect(error).toEqual({ code: 'first_token_timeout', message: expect.stringMatching(/^The model sent nothing for \d+(\.\d)? s/) });
    expect(attempts(events)).toEqual([1, 2, 3]);
    expect(countOf(events, 'chat.delta')).toBe(0);

    expect(h.ollama.requests).toHaveLength(3);
    expectEveryRequestToCarry(h.ollama, firstTurn('are you loading?'));
    // the worker hung up on each request instead of waiting for the late answer
    for (let i = 0; i < 3; i++) await h.ollama.waitForAbort(i);
    expect(h.ollama.requests.map((r) => ({ aborted: r.aborted, finished: r.finished }))).toEqual([
      { aborted: true, finished: false },
      { aborted: true, finished: false },
      { aborted: true, finished: false },
    ]);

    expect(await assistantEntry(client, messageId)).toMatchObject({ status: 'failed', content: '', error });
    await expectDeadLetter(h.redis, client, messageId, error);
    await expectNothingPending(h.redis);
  });
});

// ---------------------------------------------------------------------------------------------
// Whole-generation timeout
// ---------------------------------------------------------------------------------------------

describe('Ollama faults: a generation longer than OLLAMA_TIMEOUT_MS', () => {
  const h = useApp({ OLLAMA_FIRST_TOKEN_TIMEOUT_MS: '5000', OLLAMA_TIMEOUT_MS: '1500' });

  it('aborts a hung request and fails with generation_timeout, not retried', async () => {
    h.ollama.setDefault({ hang: true });
    const client = await h.open();
    const { messageId, events } = await sendAndWaitForEnd(client, 'hang forever');

    const error = failureOf(events);
    expect(error).toEqual({
      code: 'generation_timeout',
      message: expect.stringMatching(/^The answer took longer than \d+(\.\d)? s and was stopped\.$/),
    });
    expect(attempts(events)).toEqual([1]);
    expect(countOf(events, 'chat.delta')).toBe(0);

    expect(h.ollama.requests).toHaveLength(1);
    expectEveryRequestToCarry(h.ollama, firstTurn('hang forever'));
    await h.ollama.waitForAbort(0);
    expect(h.ollama.requests[0]).toMatchObject({ aborted: true, finished: false });

    expect(await assistantEntry(client, messageId)).toMatchObject({ status: 'failed', content: '', error });
    await expectDeadLetter(h.redis, client, messageId, error);
    await expectNothingPending(h.redis);
  });
});

// ---------------------------------------------------------------------------------------------
// Real Ollama writes its response headers together with the first chunk: only once the model is
// loaded, and only once a busy server (all OLLAMA_NUM_PARALLEL slots taken) schedules the request.
// FakeOllama flushes the headers of a streamed answer at once, so this block uses a minimal server
// of its own that holds the headers back. Note: `Ollama#abort()` of the `ollama` client (0.6.x) only
// reaches streamed requests whose headers already arrived (it registers them when `chat()` resolves),
// so aborting it earlier is a no-op: the request must be cut at the fetch itself.
// ---------------------------------------------------------------------------------------------

interface LateRequest {
  /** The last user message, to tell the requests of the cases apart. */
  content: string;
  messages: unknown[];
  aborted: boolean;
  finished: boolean;
}

/**
 * /api/chat that sends nothing at all (not even headers) for `headerDelayMs`, then a normal short
 * answer; a request whose last user message contains "never" gets no answer at all until the client
 * hangs up (or stop()).
 */
class LateHeadersOllama {
  readonly requests: LateRequest[] = [];
  private server?: http.Server;
  private readonly sockets = new Set<Socket>();
  url = '';

  constructor(private readonly headerDelayMs: number) {}

  async start(): Promise<void> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  requestsFor(content: string): LateRequest[] {
    return this.requests.filter((r) => r.content === content);
  }

  /** Resolves once the n-th request (0-based) carrying `content` was abandoned by the client. */
  async waitForAbort(content: string, index: number, timeoutMs: number): Promise<void> {
    try {
      await eventually(
        () => this.requestsFor(content)[index]?.aborted ?? false,
        (aborted) => aborted,
        timeoutMs,
      );
    } catch {
      const seen = this.requestsFor(content)[index];
      throw new Error(
        `the worker did not abort /api/chat request #${index} for ${JSON.stringify(content)} within ${timeoutMs} ms ` +
          `(${seen ? `request seen, aborted=${seen.aborted}, finished=${seen.finished}` : 'request never arrived'})`,
      );
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (req.url === '/api/tags') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ models: [{ name: MODEL, model: MODEL }] }));
      return;
    }
    if (req.url !== '/api/chat') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('404 page not found');
      return;
    }
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { messages?: { role: string; content: string }[] };
    const messages = body.messages ?? [];
    const content = [...messages].reverse().find((m) => m.role === 'user')?.content ?? '';
    const record: LateRequest = { content, messages, aborted: false, finished: false };
    this.requests.push(record);
    res.once('finish', () => {
      record.finished = true;
    });
    // 'never': held until the client hangs up
    const timer = content.includes('never')
      ? undefined
      : setTimeout(() => {
          if (res.destroyed) return;
          res.writeHead(200, { 'content-type': 'application/x-ndjson' });
          const line = (text: string, done: boolean) =>
            `${JSON.stringify({
              model: MODEL,
              created_at: new Date().toISOString(),
              message: { role: 'assistant', content: text },
              done,
              ...(done ? { done_reason: 'stop', prompt_eval_count: 3, eval_count: 2 } : {}),
            })}\n`;
          res.write(line('Too', false));
          res.write(line(' late', false));
          res.end(line('', true));
        }, this.headerDelayMs);
    res.once('close', () => {
      clearTimeout(timer);
      if (!res.writableFinished) record.aborted = true;
    });
  }
}

describe('Ollama faults: no first token because Ollama holds back its response headers (model loading, server busy)', () => {
  let redis: TestRedis;
  let ollama: LateHeadersOllama;
  let app: AppProcess;
  const clients: ChatClient[] = [];

  beforeAll(async () => {
    redis = await freshTestRedis();
    ollama = new LateHeadersOllama(2000);
    await ollama.start();
    app = await AppProcess.start({
      env: {
        ...testRedisEnv(),
        OLLAMA_HOST: ollama.url,
        OLLAMA_MODEL: MODEL,
        SYSTEM_PROMPT,
        DELTA_COALESCE_MS: '20',
        OLLAMA_FIRST_TOKEN_TIMEOUT_MS: '400',
        OLLAMA_TIMEOUT_MS: '60000',
        SHUTDOWN_GRACE_MS: '500',
      },
    });
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });

  afterAll(async () => {
    await ollama?.stop();
    await app?.stop();
    await redis?.quit();
  });

  const open = async () => {
    const client = await ChatClient.open(app.url);
    clients.push(client);
    return client;
  };

  it('aborts the request at the first-token timeout although no headers came yet, and streams nothing of it', async () => {
    const content = 'still loading the model';
    const client = await open();
    const sent = await client.send(content);
    expect(sent.status).toBe(202);
    const messageId = String(sent.body.messageId);

    // The first-token timer fires at 400 ms; headers and answer would only come at 2000 ms.
    // A worker that gives up hangs up on Ollama well before that.
    await ollama.waitForAbort(content, 0, 1500);

    const events = await client.waitForEnd(messageId, 20_000);
    const error = failureOf(events);
    expect(error.code).toBe('first_token_timeout');
    expect(attempts(events)).toEqual([1, 2, 3]);
    // an attempt that timed out streams nothing to the person
    expect(countOf(events, 'chat.delta')).toBe(0);
    expect(ollama.requestsFor(content).map((r) => ({ aborted: r.aborted, finished: r.finished }))).toEqual([
      { aborted: true, finished: false },
      { aborted: true, finished: false },
      { aborted: true, finished: false },
    ]);
    for (const request of ollama.requestsFor(content)) expect(request.messages).toEqual(firstTurn(content));
    expect(await assistantEntry(client, messageId)).toMatchObject({ status: 'failed', content: '', error });
    await expectNothingPending(redis);
  });

  it('still ends the message (first_token_timeout after three attempts) when Ollama never sends headers', async () => {
    const content = 'this will never be scheduled';
    const client = await open();
    const sent = await client.send(content);
    expect(sent.status).toBe(202);
    const messageId = String(sent.body.messageId);

    // Three attempts aborted at 0.4 s and the 0.5 s + 2 s backoff take about 4 s; allow well over twice that.
    const events = await client.waitForEnd(messageId, 10_000);
    const error = failureOf(events);
    expect(error.code).toBe('first_token_timeout');
    expect(attempts(events)).toEqual([1, 2, 3]);
    expect(ollama.requestsFor(content).map((r) => r.aborted)).toEqual([true, true, true]);
    expect(await assistantEntry(client, messageId)).toMatchObject({ status: 'failed', content: '', error });
    await expectNothingPending(redis);
  });
});
