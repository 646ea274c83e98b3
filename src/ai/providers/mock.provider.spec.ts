import { GenerationChunk, GenerationRequest } from './ai-provider';
import { MockProvider, tokenize } from './mock.provider';

/** What AI_PROVIDER=mock gives the worker: its chunks for a request, stopping when the stream does. */
async function collect(
  provider: MockProvider,
  request: GenerationRequest,
  signal = new AbortController().signal,
  onChunk?: (index: number) => void,
): Promise<GenerationChunk[]> {
  const out: GenerationChunk[] = [];
  for await (const chunk of provider.stream(request, signal)) {
    out.push(chunk);
    onChunk?.(out.length - 1);
  }
  return out;
}

describe('tokenize', () => {
  it.each(['', 'hello world', '  leading and trailing  ', 'line1\nline2\n', 'emoji 😀 and 👩‍👩‍👧', '中文没有空格'])(
    'splits %j into non-empty tokens that join back to it',
    (input) => {
      const tokens = tokenize(input);
      expect(tokens.join('')).toBe(input);
      for (const t of tokens) expect(t).not.toBe('');
    },
  );
});

describe('MockProvider', () => {
  const oneTurn: GenerationRequest = {
    messages: [
      { role: 'system', content: 'You are helpful.' },
      { role: 'user', content: 'hello there' },
    ],
  };
  const long: GenerationRequest = {
    messages: [{ role: 'user', content: 'one two three four five six seven eight nine ten' }],
    think: 'high',
  };

  it('streams a reply echoing the last user message word by word, then done with the usage', async () => {
    // 'You are helpful.' = 3 tokens, 'hello there' = 2; the reply 'Mock reply #1: hello there' = 5.
    expect(await collect(new MockProvider(0), oneTurn)).toEqual([
      { kind: 'content', text: 'Mock' },
      { kind: 'content', text: ' reply' },
      { kind: 'content', text: ' #1:' },
      { kind: 'content', text: ' hello' },
      { kind: 'content', text: ' there' },
      { kind: 'done', usage: { promptTokens: 5, completionTokens: 5 } },
    ]);
  });

  it('numbers the reply by user turn and is the same on every run', async () => {
    const twoTurns: GenerationRequest = {
      messages: [
        { role: 'user', content: 'first question' },
        { role: 'assistant', content: 'Mock reply #1: first question' },
        { role: 'user', content: 'second one' },
      ],
      think: 'medium',
    };
    const a = await collect(new MockProvider(0), twoTurns);
    const content = a.flatMap((c) => (c.kind === 'content' ? [c.text] : [])).join('');
    expect(content).toBe('Mock reply #2: second one');
    expect(await collect(new MockProvider(1), twoTurns)).toEqual(a);
  });

  it('thinks first when asked to, and counts the thinking tokens', async () => {
    const chunks = await collect(new MockProvider(0), { ...oneTurn, think: 'low' });
    const kinds = chunks.map((c) => c.kind);
    const thinkingTokens = kinds.filter((k) => k === 'thinking').length;
    expect(thinkingTokens).toBeGreaterThan(0);
    expect(kinds).toEqual([...Array<string>(thinkingTokens).fill('thinking'), ...Array<string>(5).fill('content'), 'done']);
    expect(chunks.flatMap((c) => (c.kind === 'thinking' ? [c.text] : [])).join('')).toBe(
      'The user wrote 11 characters in turn 1; I will echo them.',
    );
    expect(chunks.at(-1)).toEqual({ kind: 'done', usage: { promptTokens: 5, completionTokens: thinkingTokens + 5 } });
  });

  it('waits tokenDelayMs before each token', async () => {
    const started = Date.now();
    await collect(new MockProvider(20), oneTurn);
    // five tokens, each after a 20 ms pause (timers may fire a little early, hence 4x)
    expect(Date.now() - started).toBeGreaterThanOrEqual(4 * 20);
  });

  it('stops right after the chunk during which it was aborted, without done', async () => {
    const full = await collect(new MockProvider(0), long);
    const controller = new AbortController();
    const chunks = await collect(new MockProvider(5), long, controller.signal, (index) => {
      if (index === 2) controller.abort();
    });
    expect(chunks).toEqual(full.slice(0, 3));
  });

  it('ends at once when aborted during a long pause, or yields nothing when already aborted', async () => {
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 30);
    expect(await collect(new MockProvider(10_000), long, controller.signal)).toEqual([]);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(await collect(new MockProvider(0), long, controller.signal)).toEqual([]);
  });

  it('is healthy', async () => {
    await expect(new MockProvider(0).health()).resolves.toMatchObject({ ok: true });
  });
});
