import { AiProvider, GenerationChunk, GenerationRequest, ProviderHealth } from './ai-provider';

/** Splits text into word-ish tokens that concatenate back to it exactly. */
export function tokenize(text: string): string[] {
  return text.match(/\s*\S+|\s+$/g) ?? [];
}

/**
 * Deterministic local replies for demos, tests and benchmarks (AI_PROVIDER=mock): the same input
 * always streams the same tokens, with MOCK_TOKEN_DELAY_MS between them.
 */
export class MockProvider implements AiProvider {
  readonly name = 'mock';

  constructor(
    private readonly tokenDelayMs: number,
    private readonly model = 'mock',
  ) {}

  listModels(): Promise<string[]> {
    return Promise.resolve([this.model]);
  }

  static replyFor(request: GenerationRequest): { thinking: string; content: string } {
    const last = [...request.messages].reverse().find((m) => m.role === 'user')?.content ?? '';
    const turns = request.messages.filter((m) => m.role === 'user').length;
    return {
      thinking: `The user wrote ${last.length} characters in turn ${turns}; I will echo them.`,
      content: `Mock reply #${turns}: ${last}`,
    };
  }

  async *stream(request: GenerationRequest, signal: AbortSignal): AsyncIterable<GenerationChunk> {
    const reply = MockProvider.replyFor(request);
    const thinking = request.think ? tokenize(reply.thinking) : [];
    const content = tokenize(reply.content);
    for (const text of thinking) {
      if (!(await this.pause(signal))) return;
      yield { kind: 'thinking', text };
    }
    for (const text of content) {
      if (!(await this.pause(signal))) return;
      yield { kind: 'content', text };
    }
    const promptTokens = request.messages.reduce((n, m) => n + tokenize(m.content).length, 0);
    yield { kind: 'done', usage: { promptTokens, completionTokens: thinking.length + content.length } };
  }

  health(): Promise<ProviderHealth> {
    return Promise.resolve({ ok: true, message: 'ok', details: { provider: 'mock' } });
  }

  /** Resolves false when aborted. */
  private pause(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    if (this.tokenDelayMs === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      }, this.tokenDelayMs);
      const onAbort = () => {
        clearTimeout(timer);
        resolve(false);
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
