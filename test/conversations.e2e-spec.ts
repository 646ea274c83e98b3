import { expect } from '@jest/globals';
/**
 * Conversations people keep (issue 19), end to end: the context window (num_ctx sent, long chats
 * fitted into it, the fake Ollama counting every prompt with gpt-oss's tokenizer and failing the
 * suite on an overflow), the model list and choice, regenerate and edit over HTTP and Socket.IO,
 * and the title the model writes after the first answer.
 */
import { AppProcess } from './support/app-process';
import { ChatClient, ReceivedEvent } from './support/chat-client';
import { ChatRequestBody, FakeOllama, promptTokens } from './support/fake-ollama';
import { call, expectAckError, expectError } from './support/http-call';
import { freshTestRedis, type TestRedis, testRedisEnv } from './support/test-redis';

const SYSTEM_PROMPT = 'You are a test assistant.';
const NUM_CTX = 1024;
const RESERVE = 256;
const TITLE_PROMPT_START = 'You name conversations';

const COMMON = 'the river stone house light water green table window paper music garden city night morning road bird tree cloud sea'.split(
  ' ',
);

/** About `n` tokens: common English words are one o200k token each, with their space. */
function words(n: number, seed: string): string {
  return [seed, ...Array.from({ length: n - 1 }, (_, i) => COMMON[(i * 7 + seed.length) % COMMON.length])].join(' ');
}

/** The message's final event (a chat.title of the session's first answer may come after it). */
const finalOf = (events: ReceivedEvent[]): ReceivedEvent => {
  const final = events.find((e) => /^chat\.(completed|failed|cancelled)$/.test(e.type));
  if (!final) throw new Error(`no final event in ${events.map((e) => e.type).join(', ')}`);
  return final;
};

const isTitleRequest = (body: ChatRequestBody) => body.messages[0]?.content.startsWith(TITLE_PROMPT_START) ?? false;

describe('conversations: context window, models, regenerate and edit, titles', () => {
  let redis: TestRedis;
  let ollama: FakeOllama;
  let app: AppProcess;
  const clients: ChatClient[] = [];

  const open = async (session?: ChatClient['session']) => {
    const client = await ChatClient.open(app.url, session);
    clients.push(client);
    return client;
  };
  const chatRequests = () => ollama.requests.filter((r) => !isTitleRequest(r.body));

  beforeAll(async () => {
    redis = await freshTestRedis();
    ollama = new FakeOllama({ models: ['gpt-oss:20b', 'qwen3:8b', 'gemma3:1b'] });
    await ollama.start();
    app = await AppProcess.start({
      env: {
        ...testRedisEnv(),
        OLLAMA_HOST: ollama.url,
        SYSTEM_PROMPT,
        OLLAMA_NUM_CTX: String(NUM_CTX),
        CONTEXT_RESERVE_TOKENS: String(RESERVE),
        ALLOWED_MODELS: 'gpt-oss:20b,qwen3:8b,llama3:70b',
        TITLES: 'true',
        MAX_MESSAGE_CHARS: '20000',
      },
    });
  });

  beforeEach(() => {
    // titles answer with a title; answers echo (the fake's default)
    ollama.setDefault((body) => (isTitleRequest(body) ? { thinking: ['Short'], content: ['"Stones', ' and', ' rivers".'] } : {}));
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    ollama.reset();
  });

  afterAll(async () => {
    await app?.stop();
    // throws when any prompt exceeded its num_ctx
    await ollama?.stop();
    await redis?.quit();
  });

  describe('context window', () => {
    it('sends num_ctx and fits a long conversation into it, newest turns first, saying what was left out', async () => {
      const client = await open();
      const started: Record<string, unknown>[] = [];
      // each message ~150 tokens and its echo as long: a few turns fill the 768 tokens left for the conversation
      for (let i = 0; i < 6; i++) {
        const sent = await client.send(`turn ${i}: ${words(150, `w${i}`)}`);
        expect(sent.status).toBe(202);
        const events = await client.waitForEnd(String(sent.body.messageId));
        expect(finalOf(events).type).toBe('chat.completed');
        started.push(events.find((e) => e.type === 'chat.started')!.payload);
      }
      const requests = chatRequests();
      expect(requests).toHaveLength(6);
      for (const r of requests) {
        expect(r.body.options).toMatchObject({ num_ctx: NUM_CTX });
        expect(promptTokens(r.body.messages)).toBeLessThanOrEqual(NUM_CTX - RESERVE);
        // the system prompt first and the new message last, always
        expect(r.body.messages[0]).toEqual({ role: 'system', content: SYSTEM_PROMPT });
        expect(r.body.messages.at(-1)!.role).toBe('user');
      }
      expect(started[0]).toMatchObject({ contextMessages: 0, contextOmitted: false });
      expect(started[1]).toMatchObject({ contextMessages: 2, contextOmitted: false });
      const last = started.at(-1)!;
      expect(last.contextOmitted).toBe(true);
      expect(Number(last.contextMessages)).toBeGreaterThan(0);
      expect(Number(last.contextMessages)).toBeLessThan(10);
      // what went in is the newest turns, in order: the earlier user messages of the last request end with turn 4
      const lastRequest = requests.at(-1)!.body.messages;
      expect(lastRequest).toHaveLength(Number(last.contextMessages) + 2);
      const earlierUsers = lastRequest.slice(1, -1).filter((m) => m.role === 'user');
      expect(earlierUsers.at(-1)!.content.startsWith('turn 4:')).toBe(true);
      expect(lastRequest.at(-1)!.content.startsWith('turn 5:')).toBe(true);
      expect(ollama.overflows).toEqual([]);
      // a reloaded page can show the note too
      const history = (await client.history()).body.messages;
      expect(history.at(-1)).toMatchObject({ role: 'assistant', contextOmitted: true });
      expect(history[1]).not.toHaveProperty('contextOmitted');
    });

    it('refuses at send a message that alone cannot fit the window, naming the limits, and queues nothing', async () => {
      const client = await open();
      const reply = await call(app.url, 'POST', '/chat/send', {
        token: client.session.token,
        json: { sessionId: client.session.sessionId, content: words(900, 'x') },
      });
      expectError(reply, 400, /OLLAMA_NUM_CTX=1024.*CONTEXT_RESERVE_TOKENS=256/);
      expect((await client.history()).body.messages).toEqual([]);
      expect(chatRequests()).toHaveLength(0);
    });
  });

  describe('models', () => {
    it('lists the provider models allowed here, the default first', async () => {
      const reply = await call(app.url, 'GET', '/models');
      expect(reply.status).toBe(200);
      // gemma3:1b is served but not allowed; llama3:70b is allowed but not served
      expect(reply.body).toEqual({ default: 'gpt-oss:20b', models: ['gpt-oss:20b', 'qwen3:8b'], reachable: true });
    });

    it('answers with the model a send names, and says so in chat.completed and the history', async () => {
      const client = await open();
      const sent = await client.send('Which model are you?', { model: 'qwen3:8b' });
      expect(sent.status).toBe(202);
      const events = await client.waitForEnd(String(sent.body.messageId));
      expect(events.find((e) => e.type === 'chat.user_message')!.payload.model).toBe('qwen3:8b');
      expect(finalOf(events)).toMatchObject({ type: 'chat.completed', payload: { model: 'qwen3:8b' } });
      expect(chatRequests()[0].body.model).toBe('qwen3:8b');
      const history = (await client.history()).body.messages;
      expect(history.map((m) => m.model)).toEqual(['qwen3:8b', 'qwen3:8b']);

      const plain = await client.send('And now?');
      const plainEvents = await client.waitForEnd(String(plain.body.messageId));
      expect(finalOf(plainEvents)).toMatchObject({ type: 'chat.completed', payload: { model: 'gpt-oss:20b' } });
      expect(chatRequests()[1].body.model).toBe('gpt-oss:20b');
    });

    it('refuses a model that is not offered, over HTTP and Socket.IO, and queues nothing', async () => {
      const client = await open();
      for (const model of ['gemma3:1b', 'llama3:70b', 'nope:1b']) {
        const reply = await call(app.url, 'POST', '/chat/send', {
          token: client.session.token,
          json: { sessionId: client.session.sessionId, content: 'hi', model },
        });
        expectError(reply, 400, new RegExp(`model "${model.replace('.', '\\.')}"`), model);
      }
      expectAckError(await client.emitWithAck('chat.send', { content: 'hi', model: 'gemma3:1b' }), 400, /model "gemma3:1b"/);
      expectError(
        await call(app.url, 'POST', '/chat/send', {
          token: client.session.token,
          json: { sessionId: client.session.sessionId, content: 'hi', model: '../x' },
        }),
        400,
        /model must be/,
      );
      expect((await client.history()).body.messages).toEqual([]);
    });
  });

  describe('regenerate and edit', () => {
    async function answered(client: ChatClient, text: string): Promise<string> {
      const sent = await client.send(text);
      expect(sent.status).toBe(202);
      const messageId = String(sent.body.messageId);
      await client.waitForEnd(messageId);
      return messageId;
    }

    it('regenerates the last answer over HTTP: a new message replaces the old in every tab and the history, idempotently', async () => {
      const client = await open();
      const other = await open(client.session);
      const first = await answered(client, 'first question');
      const second = await answered(client, 'second question');
      ollama.enqueue({ content: ['a', ' better', ' answer'] });

      const path = `/chat/${client.session.sessionId}/messages/${second}/regenerate`;
      const reply = await call(app.url, 'POST', path, { token: client.session.token, json: { clientMessageId: 'regen-1' } });
      expect(reply.status).toBe(202);
      expect(reply.body).toEqual({
        messageId: expect.any(String),
        sessionId: client.session.sessionId,
        status: 'queued',
        replaces: second,
      });
      const again = String(reply.body!.messageId);
      // a repeat is the same regenerate
      const repeat = await call(app.url, 'POST', path, { token: client.session.token, json: { clientMessageId: 'regen-1' } });
      expect(repeat.body).toMatchObject({ messageId: again });

      for (const tab of [client, other]) {
        const events = await tab.waitForEnd(again);
        expect(events[0]).toMatchObject({ type: 'chat.user_message', payload: { content: 'second question', replaces: second } });
        expect(finalOf(events)).toMatchObject({ type: 'chat.completed', payload: { content: 'a better answer' } });
      }
      // the model saw the first turn as context, never the replaced answer
      const request = chatRequests().at(-1)!.body.messages;
      expect(request.map((m) => m.content)).toEqual([SYSTEM_PROMPT, 'first question', 'You said: first question', 'second question']);
      const history = (await client.history()).body.messages;
      expect(history.map((m) => [m.messageId, m.role, m.content])).toEqual([
        [first, 'user', 'first question'],
        [first, 'assistant', 'You said: first question'],
        [again, 'user', 'second question'],
        [again, 'assistant', 'a better answer'],
      ]);
      expect(chatRequests()).toHaveLength(3);
    });

    it('edits the last message over Socket.IO: its answer goes, the new text is answered', async () => {
      const client = await open();
      await answered(client, 'what is 2+2');
      const last = await answered(client, 'what is 3+3');
      const ack = await client.emitWithAck('chat.edit', { messageId: last, content: 'what is 4+4', think: 'low' });
      expect(ack).toEqual({ messageId: expect.any(String), replaces: last });
      const events = await client.waitForEnd(String(ack.messageId));
      expect(events[0]).toMatchObject({ type: 'chat.user_message', payload: { content: 'what is 4+4', replaces: last } });
      expect(finalOf(events)).toMatchObject({ type: 'chat.completed', payload: { content: 'You said: what is 4+4' } });
      const history = (await client.history()).body.messages;
      expect(history.map((m) => m.content)).toEqual(['what is 2+2', 'You said: what is 2+2', 'what is 4+4', 'You said: what is 4+4']);
      expect(chatRequests().at(-1)!.body.think).toBe('low');
    });

    it('refuses a message that is not the last (409), one not ended (409) and an unknown one (404)', async () => {
      const client = await open();
      const first = await answered(client, 'one');
      await answered(client, 'two');
      const base = `/chat/${client.session.sessionId}/messages`;
      expectError(
        await call(app.url, 'POST', `${base}/${first}/regenerate`, { token: client.session.token, json: {} }),
        409,
        /no longer the last/,
      );
      expectError(
        await call(app.url, 'POST', `${base}/${first}/edit`, { token: client.session.token, json: { content: 'x' } }),
        409,
        /no longer the last/,
      );
      expectError(
        await call(app.url, 'POST', `${base}/m-unknown/regenerate`, { token: client.session.token, json: {} }),
        404,
        /no message/,
      );
      expectAckError(await client.emitWithAck('chat.regenerate', { messageId: first }), 409, /no longer the last/);

      ollama.enqueue({ hang: true });
      const running = await client.send('three');
      const runningId = String(running.body.messageId);
      await client.waitFor((e) => e.type === 'chat.started' && e.payload.messageId === runningId);
      expectError(
        await call(app.url, 'POST', `${base}/${runningId}/regenerate`, { token: client.session.token, json: {} }),
        409,
        /not been answered yet/,
      );
      await call(app.url, 'POST', `${base}/${runningId}/cancel`, { token: client.session.token });
      await client.waitForEnd(runningId);
      // once it ended (cancelled), it can be regenerated
      const retried = await call(app.url, 'POST', `${base}/${runningId}/regenerate`, { token: client.session.token, json: {} });
      expect(retried.status).toBe(202);
      await client.waitForEnd(String(retried.body!.messageId));
    });

    it('needs the session token, like every chat route', async () => {
      const client = await open();
      const last = await answered(client, 'mine');
      const stranger = await ChatClient.createSession(app.url);
      const path = `/chat/${client.session.sessionId}/messages/${last}/regenerate`;
      expect((await call(app.url, 'POST', path, { json: {} })).status).toBe(401);
      expect((await call(app.url, 'POST', path, { token: stranger.token, json: {} })).status).toBe(403);
    });
  });

  describe('titles', () => {
    it('writes a short title after the first answer only, as chat.title and in the history', async () => {
      const client = await open();
      const first = await client.send('Tell me about stones and rivers');
      await client.waitForEnd(String(first.body.messageId));
      const title = await client.waitFor((e) => e.type === 'chat.title');
      expect(title.payload).toMatchObject({ sessionId: client.session.sessionId, title: 'Stones and rivers' });
      expect((await client.history()).body.title).toBe('Stones and rivers');
      // (a title job of an earlier test's chat may still arrive: only this chat's count)
      const ofThisChat = () =>
        ollama.requests.filter((r) => isTitleRequest(r.body) && r.body.messages[1].content.includes('stones and rivers'));
      const titleRequests = ofThisChat();
      expect(titleRequests).toHaveLength(1);
      expect(titleRequests[0].body.messages[1].content).toContain('Tell me about stones and rivers');

      const second = await client.send('And mountains?');
      await client.waitForEnd(String(second.body.messageId));
      // give a (wrong) second title request time to arrive
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(ofThisChat()).toHaveLength(1);
    });
  });
});
