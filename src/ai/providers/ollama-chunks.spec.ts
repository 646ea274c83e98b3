import { GenerationChunk } from './ai-provider';
import { mapOllamaChunk } from './ollama-chunks';

type Chunk = Parameters<typeof mapOllamaChunk>[0];

function chunk(message: { content: string; thinking?: string }, done = false, extra: Partial<Chunk> = {}): Chunk {
  return { message: { role: 'assistant', ...message }, done, ...extra };
}

describe('mapOllamaChunk', () => {
  const streaming: [string, Chunk, GenerationChunk[]][] = [
    ['thinking only', chunk({ content: '', thinking: 'Let me' }), [{ kind: 'thinking', text: 'Let me' }]],
    ['thinking only, content absent-ish', chunk({ content: '', thinking: ' think' }), [{ kind: 'thinking', text: ' think' }]],
    ['content only', chunk({ content: 'Hello' }), [{ kind: 'content', text: 'Hello' }]],
    ['content only with empty thinking', chunk({ content: ' world', thinking: '' }), [{ kind: 'content', text: ' world' }]],
    [
      'both, thinking first',
      chunk({ content: 'Answer', thinking: 'Reason' }),
      [
        { kind: 'thinking', text: 'Reason' },
        { kind: 'content', text: 'Answer' },
      ],
    ],
    ['empty strings', chunk({ content: '', thinking: '' }), []],
    ['empty content, no thinking', chunk({ content: '' }), []],
    [
      'whitespace is kept verbatim',
      chunk({ content: '\n\n', thinking: ' ' }),
      [
        { kind: 'thinking', text: ' ' },
        { kind: 'content', text: '\n\n' },
      ],
    ],
    [
      'counts on a non-final chunk are ignored',
      chunk({ content: 'x' }, false, { prompt_eval_count: 5, eval_count: 6 }),
      [{ kind: 'content', text: 'x' }],
    ],
  ];
  it.each(streaming)('%s', (_name, input, expected) => {
    expect(mapOllamaChunk(input)).toEqual(expected);
  });

  describe('done chunk', () => {
    it('emits usage from prompt_eval_count and eval_count, last', () => {
      expect(mapOllamaChunk(chunk({ content: '' }, true, { prompt_eval_count: 71, eval_count: 123, done_reason: 'stop' }))).toEqual([
        { kind: 'done', usage: { promptTokens: 71, completionTokens: 123 } },
      ]);
    });

    it('emits the final text before done', () => {
      expect(mapOllamaChunk(chunk({ content: 'end', thinking: 'hm' }, true, { prompt_eval_count: 1, eval_count: 2 }))).toEqual([
        { kind: 'thinking', text: 'hm' },
        { kind: 'content', text: 'end' },
        { kind: 'done', usage: { promptTokens: 1, completionTokens: 2 } },
      ]);
    });

    const counts: [string, unknown, number][] = [
      ['missing', undefined, 0],
      ['zero', 0, 0],
      ['negative', -3, 0],
      ['NaN', NaN, 0],
      ['Infinity', Infinity, 0],
      ['-Infinity', -Infinity, 0],
      ['numeric string', '12', 0],
      ['null', null, 0],
      ['fraction', 7.9, 7],
      ['large', 1_000_000, 1_000_000],
    ];
    it.each(counts)('prompt_eval_count %s -> %d', (_name, value, expected) => {
      const input = chunk({ content: '' }, true, { eval_count: 4 });
      (input as Record<string, unknown>).prompt_eval_count = value;
      if (value === undefined) delete (input as Record<string, unknown>).prompt_eval_count;
      expect(mapOllamaChunk(input)).toEqual([{ kind: 'done', usage: { promptTokens: expected, completionTokens: 4 } }]);
    });
    it.each(counts)('eval_count %s -> %d', (_name, value, expected) => {
      const input = chunk({ content: '' }, true, { prompt_eval_count: 9 });
      (input as Record<string, unknown>).eval_count = value;
      if (value === undefined) delete (input as Record<string, unknown>).eval_count;
      expect(mapOllamaChunk(input)).toEqual([{ kind: 'done', usage: { promptTokens: 9, completionTokens: expected } }]);
    });

    it('emits done with zero usage when both counts are missing', () => {
      expect(mapOllamaChunk(chunk({ content: '' }, true))).toEqual([{ kind: 'done', usage: { promptTokens: 0, completionTokens: 0 } }]);
    });

    it('emits usage counts that pass the chat.completed envelope check (non-negative integers)', () => {
      for (const [p, e] of [
        [-1, NaN],
        [2.5, -0.5],
        [Infinity, 3],
      ] as const) {
        const out = mapOllamaChunk(chunk({ content: '' }, true, { prompt_eval_count: p, eval_count: e }));
        const done = out.find((c) => c.kind === 'done');
        if (!done || done.kind !== 'done') throw new Error('no done chunk');
        expect(Number.isInteger(done.usage.promptTokens) && done.usage.promptTokens >= 0).toBe(true);
        expect(Number.isInteger(done.usage.completionTokens) && done.usage.completionTokens >= 0).toBe(true);
      }
    });
  });

  describe('odd chunks do not throw', () => {
    it.each([
      ['message missing', { done: false }],
      ['message null', { message: null, done: false }],
      ['content not a string', { message: { role: 'assistant', content: 42, thinking: { a: 1 } }, done: false }],
    ] as [string, unknown][])('%s', (_name, input) => {
      expect(mapOllamaChunk(input as Chunk)).toEqual([]);
    });

    it('message missing on the done chunk still gives usage', () => {
      expect(mapOllamaChunk({ done: true, eval_count: 3 } as unknown as Chunk)).toEqual([
        { kind: 'done', usage: { promptTokens: 0, completionTokens: 3 } },
      ]);
    });
  });
});
