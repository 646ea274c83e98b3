/**
 * The fake Ollama server of the test tree (test/support/fake-ollama.ts), run inside the bench
 * process, answering every chat with a reply whose shape the bench chooses per message.
 *
 * The bench puts the shape into the user message itself: `bench <nonce> <tokens> <delayMs>`. The
 * fake then streams <tokens> tokens ` <nonce>.0`, ` <nonce>.1`, ... with <delayMs> between them (and
 * before the first). Every token is unique in the run, so a token seen on a socket can be matched to
 * the moment the fake wrote it: that is how the fan-out delivery delay is measured, without clocks
 * in other processes. The write times come from a wrapper around `res.write` of each response,
 * installed by a 'request' listener added before the fake's own.
 */
import type { ServerResponse } from 'node:http';
import type http from 'node:http';
import { FakeOllama } from '../../test/support/fake-ollama';

export const MODEL = 'gpt-oss:20b';

export interface ReplyShape {
  tokens: number;
  delayMs: number;
}

export function messageContent(nonce: string, shape: ReplyShape): string {
  return `bench ${nonce} ${shape.tokens} ${shape.delayMs}`;
}

export function replyTokens(nonce: string, tokens: number): string[] {
  return Array.from({ length: tokens }, (_, i) => ` ${nonce}.${i}`);
}

export function expectedReply(nonce: string, tokens: number): string {
  return replyTokens(nonce, tokens).join('');
}

let counter = 0;
/** A short id unique within the run. */
export function nextNonce(): string {
  return (counter++).toString(36);
}

export class BenchFake {
  readonly fake = new FakeOllama();
  url = '';
  /** Record write times of every token (costs bench CPU; on only where delays are measured). */
  tracking = false;
  /** token (without its leading space) → performance.now() when the fake wrote it */
  readonly writtenAt = new Map<string, number>();
  /** nonce → when its request arrived and when its first token was written */
  readonly firstToken = new Map<string, { requestAt: number; firstWriteAt: number }>();
  /** tokens written since the last reset (all, tracked or not) */
  tokensWritten = 0;
  chatRequests = 0;
  private trimTimer: NodeJS.Timeout | null = null;

  async start(): Promise<string> {
    this.fake.setDefault((request) => {
      const last = request.messages[request.messages.length - 1]?.content ?? '';
      const [, nonce = 'x', tokens = '4', delay = '0'] = last.split(' ');
      return { content: replyTokens(nonce, Number(tokens)), tokenDelayMs: Number(delay), firstTokenDelayMs: Number(delay) };
    });
    this.url = await this.fake.start(0, '127.0.0.1');
    // `server` is private in TypeScript only; the bench needs it to see the bytes written.
    const server = (this.fake as unknown as { server: http.Server }).server;
    server.prependListener('request', (_req, res: ServerResponse) => this.hook(res));
    // The fake records every request (with its messages) for tests; a long bench must not keep them.
    this.trimTimer = setInterval(() => this.fake.requests.splice(0), 1000);
    this.trimTimer.unref();
    return this.url;
  }

  resetTracking(): void {
    this.writtenAt.clear();
    this.firstToken.clear();
    this.tokensWritten = 0;
    this.chatRequests = 0;
  }

  async stop(): Promise<void> {
    if (this.trimTimer) clearInterval(this.trimTimer);
    await this.fake.stop();
  }

  private hook(res: ServerResponse): void {
    const requestAt = performance.now();
    this.chatRequests++;
    const original = res.write.bind(res);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
      if (typeof chunk === 'string') {
        const at = chunk.indexOf('"content":"');
        if (at >= 0) {
          const start = at + 12; // skip the token's leading space
          const end = chunk.indexOf('"', start);
          if (end > start) {
            self.tokensWritten++;
            if (self.tracking) {
              const now = performance.now();
              const token = chunk.slice(start, end);
              self.writtenAt.set(token, now);
              if (token.endsWith('.0')) self.firstToken.set(token.slice(0, -2), { requestAt, firstWriteAt: now });
            }
          }
        }
      }
      return (original as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as typeof res.write;
  }
}
