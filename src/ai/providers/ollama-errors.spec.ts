import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { Ollama } from 'ollama';
import { GenerationError } from '../generation-error';
import { NodeHttpFetch } from './node-http-fetch';
import { classifyOllamaError } from './ollama-errors';

/** Same shape as the `ollama` client's (unexported) ResponseError. */
class ResponseError extends Error {
  constructor(
    readonly error: string,
    readonly status_code: number,
  ) {
    super(error);
    this.name = 'ResponseError';
  }
}

const HOST = 'http://ollama.internal:11434';
const MODEL = 'gpt-oss:20b';
const before = { host: HOST, model: MODEL, receivedAny: false };
const after = { host: HOST, model: MODEL, receivedAny: true };
const NOT_FOUND = 'model "gpt-oss:20b" not found, try pulling it first';

function connectionError(code: string, message = 'fetch failed'): TypeError {
  const cause = Object.assign(new Error(`connect ${code} 10.0.0.1:11434`), { code, errno: -111, syscall: 'connect' });
  return new TypeError(message, { cause });
}

describe('classifyOllamaError', () => {
  describe('HTTP errors (ResponseError)', () => {
    it('404 model not found -> model_not_found, not transient, says how to pull', () => {
      const err = new ResponseError(NOT_FOUND, 404);
      const g = classifyOllamaError(err, before);
      expect(g).toBeInstanceOf(GenerationError);
      expect(g.code).toBe('model_not_found');
      expect(g.transient).toBe(false);
      expect(g.message).toContain('ollama pull gpt-oss:20b');
      expect(g.message).not.toContain(HOST); // sent to clients: the internal address stays private
      expect(g.message).toContain('"gpt-oss:20b"');
      expect(g.cause).toBe(err);
      expect(g.toReason()).toEqual({ code: 'model_not_found', message: g.message });
    });

    it('names the configured model in the pull hint', () => {
      const g = classifyOllamaError(new ResponseError('model "llama3" not found, try pulling it first', 404), {
        ...before,
        model: 'llama3',
      });
      expect(g.code).toBe('model_not_found');
      expect(g.message).toContain('ollama pull llama3');
    });

    it('a 404 is model_not_found even once the stream had started', () => {
      expect(classifyOllamaError(new ResponseError(NOT_FOUND, 404), after).code).toBe('model_not_found');
    });

    const statuses: [number, string, string, boolean][] = [
      [500, 'llama runner process has terminated', 'ollama_error', true],
      [502, 'bad gateway', 'ollama_error', true],
      [503, 'server busy', 'ollama_error', true],
      [400, 'invalid think value', 'bad_request', false],
      [401, 'unauthorized', 'bad_request', false],
      [404, '404 page', 'bad_request', false],
      [413, 'request too large', 'bad_request', false],
    ];
    it.each(statuses)('%d %j -> %s (transient=%s)', (status, text, code, transient) => {
      const err = new ResponseError(text, status);
      const g = classifyOllamaError(err, before);
      expect(g.code).toBe(code);
      expect(g.transient).toBe(transient);
      expect(g.message).toContain(`HTTP ${status}`);
      expect(g.message).toContain(text);
      expect(g.cause).toBe(err);
    });

    it('uses status_code even on a plain object', () => {
      const g = classifyOllamaError({ status_code: 500, message: 'x' }, before);
      expect(g.code).toBe('ollama_error');
      expect(g.transient).toBe(true);
    });
  });

  describe('connection errors', () => {
    it('fetch failed with cause ECONNREFUSED -> ollama_unreachable, transient, never names the internal host', () => {
      const err = connectionError('ECONNREFUSED');
      const g = classifyOllamaError(err, before);
      expect(g.code).toBe('ollama_unreachable');
      expect(g.transient).toBe(true);
      expect(g.message).not.toContain(HOST); // sent to clients: the internal address stays private
      expect(g.message).toContain('ollama serve');
      expect(g.message).toContain('OLLAMA_HOST');
      expect(g.cause).toBe(err);
    });

    it.each(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'])(
      'a %s cause under another message is ollama_unreachable',
      (code) => {
        const g = classifyOllamaError(connectionError(code, 'request failed'), before);
        expect(g.code).toBe('ollama_unreachable');
        expect(g.transient).toBe(true);
      },
    );

    it('finds the code a few causes deep', () => {
      const inner = Object.assign(new Error('getaddrinfo ENOTFOUND ollama.internal'), { code: 'ENOTFOUND' });
      const err = new Error('outer', { cause: new Error('middle', { cause: inner }) });
      expect(classifyOllamaError(err, before).code).toBe('ollama_unreachable');
    });

    it('fetch failed with no code at all is still unreachable', () => {
      expect(classifyOllamaError(new TypeError('fetch failed'), before).code).toBe('ollama_unreachable');
    });

    it('a connection code on the error itself counts', () => {
      const err = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      expect(classifyOllamaError(err, before).code).toBe('ollama_unreachable');
    });
  });

  describe('a connection reset before Ollama answered', () => {
    const socketError = (message: string, code: string) => Object.assign(new Error(message), { code });
    it.each([
      ['fetch failed / ECONNRESET', connectionError('ECONNRESET')],
      [
        'fetch failed / other side closed (undici)',
        new TypeError('fetch failed', { cause: socketError('other side closed', 'UND_ERR_SOCKET') }),
      ],
      ['socket hang up (node http)', socketError('socket hang up', 'ECONNRESET')],
      ['request failed / socket hang up', new Error('request failed', { cause: new Error('socket hang up') })],
      ['terminated', new TypeError('terminated')],
    ])('%s -> stream_interrupted, transient, not "is it running?"', (_name, err) => {
      const g = classifyOllamaError(err, before);
      expect(g.code).toBe('stream_interrupted');
      expect(g.transient).toBe(true);
      expect(g.message).not.toMatch(/Is it running|ollama serve/);
      expect(g.message).not.toContain('10.0.0.1'); // sent to clients: the internal address stays private
      expect(g.cause).toBe(err);
    });
  });

  describe('failures after the stream started', () => {
    it.each([
      ['a plain error', new Error('something odd')],
      ['fetch failed / ECONNRESET', connectionError('ECONNRESET')],
      ['terminated', new TypeError('terminated')],
    ])('%s with receivedAny=true -> stream_interrupted, transient', (_name, err) => {
      const g = classifyOllamaError(err, after);
      expect(g.code).toBe('stream_interrupted');
      expect(g.transient).toBe(true);
      expect(g.message).toContain(err.message);
      expect(g.cause).toBe(err);
    });

    it('terminated with a connection code underneath, before any chunk, is still stream_interrupted', () => {
      expect(classifyOllamaError(new TypeError('terminated', { cause: connectionError('ECONNRESET', 'aborted') }), before).code).toBe(
        'stream_interrupted',
      );
    });

    it.each(['Did not receive done or success response in stream.', 'terminated', 'other side closed: socket hang up', 'premature close'])(
      'a cut-stream message %j before any chunk is stream_interrupted too',
      (message) => {
        expect(classifyOllamaError(new Error(message), before).code).toBe('stream_interrupted');
      },
    );
  });

  describe('everything else', () => {
    it('an unknown error before the stream -> ollama_error, transient', () => {
      const err = new Error('unexpected JSON');
      const g = classifyOllamaError(err, before);
      expect(g.code).toBe('ollama_error');
      expect(g.transient).toBe(true);
      expect(g.message).toContain('unexpected JSON');
    });

    it.each([
      ['a string', 'boom', 'boom'],
      ['null', null, 'null'],
      ['undefined', undefined, 'undefined'],
      ['a number', 42, '42'],
    ] as [string, unknown, string][])('does not throw on %s', (_name, thrown, text) => {
      let g: GenerationError | undefined;
      expect(() => {
        g = classifyOllamaError(thrown, before);
      }).not.toThrow();
      expect(g).toBeInstanceOf(GenerationError);
      expect(g!.code).toBe('ollama_error');
      expect(g!.message).toContain(text);
    });

    it('passes a GenerationError through unchanged', () => {
      const original = new GenerationError('first_token_timeout', 'no token in 60 s', true);
      expect(classifyOllamaError(original, before)).toBe(original);
      expect(classifyOllamaError(original, after)).toBe(original);
      const permanent = new GenerationError('bad_request', 'nope', false);
      const g = classifyOllamaError(permanent, after);
      expect(g).toBe(permanent);
      expect(g.code).toBe('bad_request');
      expect(g.transient).toBe(false);
    });
  });

  // The worker's own transport (NodeHttpFetch) and the global fetch must fail alike.
  describe.each([
    ['global fetch', () => undefined],
    ['NodeHttpFetch', () => new NodeHttpFetch().fetchWith(new AbortController().signal)],
  ])('with errors thrown by the real ollama client over %s', (_transport, makeFetch) => {
    let server: Server;
    let baseUrl: string;
    let handler: (req: IncomingMessage, res: ServerResponse) => void = () => undefined;

    beforeAll(async () => {
      server = createServer((req, res) => handler(req, res));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    afterAll(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    async function chatError(host: string): Promise<{ err: unknown; receivedAny: boolean }> {
      const fetch = makeFetch();
      const client = new Ollama({ host, ...(fetch ? { fetch } : {}) });
      let receivedAny = false;
      try {
        const stream = await client.chat({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true });
        for await (const chunk of stream) receivedAny ||= chunk !== undefined;
      } catch (err) {
        return { err, receivedAny };
      }
      throw new Error('expected the ollama client to throw');
    }

    function replyJson(status: number, body: object) {
      handler = (_req, res) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
    }

    it('404 model not found', async () => {
      replyJson(404, { error: NOT_FOUND });
      const { err } = await chatError(baseUrl);
      const g = classifyOllamaError(err, { host: baseUrl, model: MODEL, receivedAny: false });
      expect(g.code).toBe('model_not_found');
      expect(g.transient).toBe(false);
      expect(g.message).toContain('ollama pull gpt-oss:20b');
    });

    it('500', async () => {
      replyJson(500, { error: 'llama runner process has terminated' });
      const { err } = await chatError(baseUrl);
      const g = classifyOllamaError(err, { host: baseUrl, model: MODEL, receivedAny: false });
      expect(g.code).toBe('ollama_error');
      expect(g.transient).toBe(true);
      expect(g.message).toContain('llama runner process has terminated');
    });

    it('400', async () => {
      replyJson(400, { error: 'invalid think value' });
      const { err } = await chatError(baseUrl);
      const g = classifyOllamaError(err, { host: baseUrl, model: MODEL, receivedAny: false });
      expect(g.code).toBe('bad_request');
      expect(g.transient).toBe(false);
    });

    it('connection refused', async () => {
      const probe = createServer();
      await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
      const closedHost = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`;
      await new Promise<void>((resolve) => probe.close(() => resolve()));
      const { err } = await chatError(closedHost);
      const g = classifyOllamaError(err, { host: closedHost, model: MODEL, receivedAny: false });
      expect(g.code).toBe('ollama_unreachable');
      expect(g.transient).toBe(true);
      expect(g.message).not.toContain(closedHost);
    });

    it('connection reset before any answer', async () => {
      handler = (req) => req.socket.destroy();
      const { err, receivedAny } = await chatError(baseUrl);
      expect(receivedAny).toBe(false);
      const g = classifyOllamaError(err, { host: baseUrl, model: MODEL, receivedAny });
      expect(g.code).toBe('stream_interrupted');
      expect(g.transient).toBe(true);
      expect(g.message).not.toContain('Is it running');
    });

    it('stream cut after the headers, before any chunk', async () => {
      handler = (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.flushHeaders();
        setTimeout(() => res.socket?.destroy(), 20);
      };
      const { err, receivedAny } = await chatError(baseUrl);
      expect(receivedAny).toBe(false);
      const g = classifyOllamaError(err, { host: baseUrl, model: MODEL, receivedAny });
      expect(g.code).toBe('stream_interrupted');
      expect(g.transient).toBe(true);
    });

    it('stream cut after the first chunk', async () => {
      handler = (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.write(JSON.stringify({ model: MODEL, message: { role: 'assistant', content: 'Hel' }, done: false }) + '\n', () => {
          setTimeout(() => res.socket?.destroy(), 20);
        });
      };
      const { err, receivedAny } = await chatError(baseUrl);
      expect(receivedAny).toBe(true);
      const g = classifyOllamaError(err, { host: baseUrl, model: MODEL, receivedAny });
      expect(g.code).toBe('stream_interrupted');
      expect(g.transient).toBe(true);
    });
  });
});
