import { GenerationChunk, GenerationRequest } from './ai-provider';
import { MockProvider, tokenize } from './mock.provider';

async function collect(
  provider: MockProvider,
  request: GenerationRequest,
  signal = new AbortController().signal,
  onChunk?: (chunk: GenerationChunk, index: number) => void,
): Promise<GenerationChunk[]> {
  const out: GenerationChunk[] = [];
  for await (const chunk of provider.stream(request, signal)) {
    out.push(chunk);
    onChunk?.(chunk, out.length - 1);
  }
  return out;
}

const textOf = (chunks: GenerationChunk[], kind: 'thinking' | 'content') =>
  chunks
    .filter((c): c is Extract<GenerationChunk, { kind: typeof kind }> => c.kind === kind)
    .map((c) => c.text)
    .join('');

/** A small deterministic PRNG (mulberry32), so the generated strings are the same every run. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('tokenize', () => {
  const examples: [string, string[]][] = [
    ['', []],
    ['a', ['a']],
    ['hello world', ['hello', ' world']],
    ['  leading', ['  leading']],
    ['trailing  ', ['trailing', '  ']],
    ['  both  ', ['  both', '  ']],
    [' ', [' ']],
    ['   \n\t ', ['   \n\t ']],
    ['line1\nline2\n', ['line1', '\nline2', '\n']],
    ['a\n\nb', ['a', '\n\nb']],
    ['tab\tseparated\tvalues', ['tab', '\tseparated', '\tvalues']],
    ['punctuation, too!', ['punctuation,', ' too!']],
  ];
  it.each(examples)('tokenize(%j)', (input, tokens) => {
    expect(tokenize(input)).toEqual(tokens);
  });

  const roundTrip = [
    '',
    ' ',
    '\n',
    'word',
    ' leading space',
    'trailing space ',
    '   many   spaces   ',
    '\nnew\nlines\n',
    '\r\nwindows\r\nline endings\r\n',
    'tabs\tand\u00a0nbsp\u2003em-space',
    'emoji 😀 and 👍🏽 and ZWJ 👩‍👩‍👧',
    'ünïcødé — dashes “quotes”',
    '中文没有空格',
    'x'.repeat(1000),
    ' \n \t ',
    'Mock reply #1: hello',
  ];
  it.each(roundTrip)('joins back to the input: %j', (input) => {
    const tokens = tokenize(input);
    expect(tokens.join('')).toBe(input);
    for (const t of tokens) expect(t.length).toBeGreaterThan(0);
  });

  it('round-trips 300 random strings of words, spaces, tabs and newlines', () => {
    const rand = prng(12345);
    const alphabet = ['a', 'b', 'Z', '9', '.', ' ', ' ', '\n', '\t', '\r', 'é', '😀', '\u00a0'];
    for (let i = 0; i < 300; i++) {
      const length = Math.floor(rand() * 40);
      let s = '';
      for (let j = 0; j < length; j++) s += alphabet[Math.floor(rand() * alphabet.length)];
      expect(tokenize(s).join('')).toBe(s);
    }
  });

  it('puts at most one run of non-space characters in a token', () => {
    for (const t of tokenize('  the quick\nbrown   fox  ')) expect(t.trim()).not.toMatch(/\s/);
  });
});

describe('MockProvider', () => {
  const oneTurn: GenerationRequest = {
    messages: [
      { role: 'system', content: 'You are helpful.' },
      { role: 'user', content: 'hello there' },
    ],
  };
  const twoTurns: GenerationRequest = {
    messages: [
      { role: 'system', content: 'You are helpful.' },
      { role: 'user', content: 'first question' },
      { role: 'assistant', content: 'Mock reply #1: first question' },
      { role: 'user', content: 'second one' },
    ],
  };

  describe('replyFor', () => {
    it('echoes the last user message and counts user turns', () => {
      expect(MockProvider.replyFor(oneTurn)).toEqual({
        thinking: 'The user wrote 11 characters in turn 1; I will echo them.',
        content: 'Mock reply #1: hello there',
      });
      expect(MockProvider.replyFor(twoTurns)).toEqual({
        thinking: 'The user wrote 10 characters in turn 2; I will echo them.',
        content: 'Mock reply #2: second one',
      });
    });

    it('copes with no user message', () => {
      expect(MockProvider.replyFor({ messages: [{ role: 'system', content: 's' }] })).toEqual({
        thinking: 'The user wrote 0 characters in turn 0; I will echo them.',
        content: 'Mock reply #0: ',
      });
    });

    it("does not reorder the caller's messages", () => {
      const messages = [...twoTurns.messages];
      MockProvider.replyFor(twoTurns);
      expect(twoTurns.messages).toEqual(messages);
    });
  });

  describe('stream', () => {
    const cases: [string, GenerationRequest][] = [
      ['one turn, no think', oneTurn],
      ['two turns, no think', twoTurns],
      ['one turn, think low', { ...oneTurn, think: 'low' }],
      ['two turns, think high', { ...twoTurns, think: 'high' }],
      ['spaces and newlines', { messages: [{ role: 'user', content: '  multi\nline  text  ' }], think: 'medium' }],
    ];

    it.each(cases)('%s: yields the reply, then one final done', async (_name, request) => {
      const chunks = await collect(new MockProvider(0), request);
      const reply = MockProvider.replyFor(request);

      expect(textOf(chunks, 'content')).toBe(reply.content);
      if (request.think) expect(textOf(chunks, 'thinking')).toBe(reply.thinking);
      else expect(chunks.some((c) => c.kind === 'thinking')).toBe(false);

      // thinking, then content, then done — never interleaved.
      const kinds = chunks.map((c) => c.kind);
      const order = { thinking: 0, content: 1, done: 2 };
      for (let i = 1; i < kinds.length; i++) expect(order[kinds[i]]).toBeGreaterThanOrEqual(order[kinds[i - 1]]);
      expect(kinds.filter((k) => k === 'done')).toHaveLength(1);

      const done = chunks[chunks.length - 1];
      if (done.kind !== 'done') throw new Error(`last chunk is ${done.kind}`);
      expect(done.usage.completionTokens).toBe(chunks.length - 1);
      const promptTokens = request.messages.reduce((n, m) => n + tokenize(m.content).length, 0);
      expect(done.usage.promptTokens).toBe(promptTokens);
    });

    it('reports usage for a known request', async () => {
      // 'You are helpful.' = 3 tokens, 'hello there' = 2; reply 'Mock reply #1: hello there' = 5.
      const chunks = await collect(new MockProvider(0), oneTurn);
      expect(chunks).toEqual([
        { kind: 'content', text: 'Mock' },
        { kind: 'content', text: ' reply' },
        { kind: 'content', text: ' #1:' },
        { kind: 'content', text: ' hello' },
        { kind: 'content', text: ' there' },
        { kind: 'done', usage: { promptTokens: 5, completionTokens: 5 } },
      ]);
    });

    it('counts thinking tokens in completionTokens', async () => {
      const chunks = await collect(new MockProvider(0), { ...oneTurn, think: 'low' });
      const thinkingTokens = tokenize(MockProvider.replyFor(oneTurn).thinking).length;
      expect(chunks.filter((c) => c.kind === 'thinking')).toHaveLength(thinkingTokens);
      expect(chunks[chunks.length - 1]).toEqual({ kind: 'done', usage: { promptTokens: 5, completionTokens: thinkingTokens + 5 } });
    });

    it('is deterministic across runs and instances', async () => {
      const request: GenerationRequest = { ...twoTurns, think: 'medium' };
      const a = await collect(new MockProvider(0), request);
      const b = await collect(new MockProvider(0), request);
      const c = await collect(new MockProvider(1), request);
      expect(b).toEqual(a);
      expect(c).toEqual(a);
    });

    it('waits tokenDelayMs between tokens', async () => {
      const started = Date.now();
      const chunks = await collect(new MockProvider(20), oneTurn);
      // five content tokens, each after a 20 ms pause (timers may fire a little early, hence 4x)
      expect(chunks).toHaveLength(6);
      expect(Date.now() - started).toBeGreaterThanOrEqual(4 * 20);
    });
  });

  describe('abort', () => {
    const long: GenerationRequest = {
      messages: [{ role: 'user', content: 'one two three four five six seven eight nine ten' }],
      think: 'high',
    };

    it('stops right after the chunk during which the signal was aborted', async () => {
      const controller = new AbortController();
      const full = await collect(new MockProvider(0), long);
      const chunks = await collect(new MockProvider(5), long, controller.signal, (_chunk, index) => {
        if (index === 0) controller.abort();
      });
      expect(full.length).toBeGreaterThan(10);
      expect(chunks).toEqual([full[0]]);
      expect(chunks.some((c) => c.kind === 'done')).toBe(false);
    });

    it('yields nothing when already aborted', async () => {
      const controller = new AbortController();
      controller.abort();
      expect(await collect(new MockProvider(5), long, controller.signal)).toEqual([]);
      expect(await collect(new MockProvider(0), long, controller.signal)).toEqual([]);
    });

    it('an abort during a pause ends the stream at once, without waiting out the delay', async () => {
      const controller = new AbortController();
      const started = Date.now();
      setTimeout(() => controller.abort(), 30);
      const chunks = await collect(new MockProvider(10_000), long, controller.signal);
      expect(chunks).toEqual([]);
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it('an abort mid-stream with a delay keeps the chunks so far and ends without done', async () => {
      const controller = new AbortController();
      const full = await collect(new MockProvider(0), long);
      setTimeout(() => controller.abort(), 40);
      const chunks = await collect(new MockProvider(5), long, controller.signal);
      expect(chunks.length).toBeLessThan(full.length);
      expect(chunks).toEqual(full.slice(0, chunks.length));
      expect(chunks.some((c) => c.kind === 'done')).toBe(false);
    });
  });

  it('is healthy and named mock', async () => {
    const provider = new MockProvider(0);
    expect(provider.name).toBe('mock');
    await expect(provider.health()).resolves.toMatchObject({ ok: true, details: { provider: 'mock' } });
  });
});
