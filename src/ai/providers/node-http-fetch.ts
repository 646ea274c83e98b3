import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';

/**
 * A `fetch` for the `ollama` client made on `node:http` with keep-alive agents. The worker streams
 * hundreds of answers at once, and the global `fetch` (undici: a Request, Headers, an
 * `AbortSignal.any` and its wasm HTTP parser per request) was the largest cost centre of the worker
 * in the benchmark (bench/NOTES.md). The client still gets a standard `Response`; only the transport
 * underneath changes.
 *
 * `signal` (the generation's) ends the request at any point, also while it waits for headers, which
 * Ollama sends only once the model is loaded.
 */
export class NodeHttpFetch {
  // Idle keep-alive sockets are unref'd by the agent, so they never hold a stopping process.
  private readonly agents = {
    'http:': new http.Agent({ keepAlive: true, maxSockets: Infinity }),
    'https:': new https.Agent({ keepAlive: true, maxSockets: Infinity }),
  };

  fetchWith(signal: AbortSignal): (input: RequestInfo | URL, init?: RequestInit) => Promise<Response> {
    return (input, init) => this.request(input, init, signal);
  }

  private request(input: RequestInfo | URL, init: RequestInit | undefined, outer: AbortSignal): Promise<Response> {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const transport = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : null;
    if (!transport) return Promise.reject(new TypeError(`unsupported protocol ${url.protocol}`));
    const signals = [outer, init?.signal].filter((s): s is AbortSignal => !!s);
    const aborted = signals.find((s) => s.aborted);
    if (aborted) return Promise.reject(abortError(aborted));

    const body = init?.body;
    if (body !== undefined && body !== null && typeof body !== 'string')
      return Promise.reject(new TypeError('only string bodies are supported'));

    return new Promise((resolve, reject) => {
      const req = transport.request(url, {
        method: init?.method ?? 'GET',
        headers: headersOf(init?.headers),
        agent: this.agents[url.protocol as 'http:' | 'https:'],
      });
      const onAbort = function (this: AbortSignal) {
        req.destroy(abortError(this));
      };
      const detach = () => signals.forEach((s) => s.removeEventListener('abort', onAbort));
      signals.forEach((s) => s.addEventListener('abort', onAbort, { once: true }));
      req.on('error', (err) => {
        detach();
        reject(new TypeError('fetch failed', { cause: err })); // no-op once resolved
      });
      req.once('response', (res) => {
        res.once('close', detach);
        try {
          const headers = new Headers();
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) headers.append(res.rawHeaders[i], res.rawHeaders[i + 1]);
          const status = res.statusCode ?? 500;
          const empty = status === 204 || status === 304 || init?.method === 'HEAD';
          if (empty) res.resume();
          resolve(new Response(empty ? null : bodyOf(res), { status, statusText: res.statusMessage ?? '', headers }));
        } catch (err) {
          // A status or header the Response type refuses: fail this request, never the process.
          res.destroy();
          reject(new TypeError('fetch failed', { cause: err }));
        }
      });
      req.end(body ?? undefined);
    });
  }
}

/**
 * The response body as a web stream. A body cut short fails with undici's `TypeError('terminated')`,
 * so a cut is told apart from an unreachable server (src/ai/providers/ollama-errors.ts) whatever the
 * transport. No backpressure: Ollama's NDJSON is read as fast as it comes.
 */
function bodyOf(res: IncomingMessage): ReadableStream<Uint8Array> {
  let settled = false;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      const fail = (cause?: unknown) => {
        if (settled) return;
        settled = true;
        controller.error(new TypeError('terminated', { cause }));
      };
      res.on('data', (chunk: Buffer) => {
        if (!settled) controller.enqueue(chunk);
      });
      res.once('end', () => {
        if (settled) return;
        settled = true;
        controller.close();
      });
      res.on('error', fail); // `on`: a second error must not go unhandled
      res.once('close', () => fail(new Error('the connection closed before the response ended')));
    },
    cancel() {
      settled = true;
      res.destroy();
    },
  });
}

function headersOf(headers: HeadersInit | undefined): Record<string, string> {
  if (!headers) return {};
  if (headers instanceof Headers) return Object.fromEntries(headers.entries());
  if (Array.isArray(headers)) return Object.fromEntries(headers);
  return headers;
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new DOMException('This operation was aborted', 'AbortError');
}
