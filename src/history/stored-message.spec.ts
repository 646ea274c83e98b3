import { MessageStatus, parseAssistantPart, parseStatus, parseUserPart, StoredAssistantPart, StoredUserPart } from './stored-message';

const AT = '2024-05-01T12:00:00.000Z';

/** Inputs that are not a JSON object at all: every parser must answer null for them. */
const NOT_AN_OBJECT: [string, string | null | undefined][] = [
  ['null', null],
  ['undefined', undefined],
  ['empty string', ''],
  ['invalid JSON', '{content: "x"}'],
  ['truncated JSON', '{"content":"x","createdAt":"'],
  ['plain text', 'hello'],
  ['JSON null', 'null'],
  ['JSON number', '42'],
  ['JSON string', '"{\\"content\\":\\"x\\"}"'],
  ['JSON boolean', 'true'],
  ['JSON array', '[]'],
  ['JSON array of a part', JSON.stringify([{ content: 'x', createdAt: AT }])],
];

describe('stored-message', () => {
  describe('parseUserPart', () => {
    const roundTrip: [string, StoredUserPart][] = [
      ['plain', { content: 'hello', createdAt: AT }],
      ['empty content', { content: '', createdAt: AT }],
      ['think low', { content: 'q', createdAt: AT, think: 'low' }],
      ['think medium', { content: 'q', createdAt: AT, think: 'medium' }],
      ['think high', { content: 'q', createdAt: AT, think: 'high' }],
      ['unicode and newlines', { content: 'a\nb "c" 😀', createdAt: AT }],
    ];
    it.each(roundTrip)('round-trips %s', (_name, part) => {
      expect(parseUserPart(JSON.stringify(part))).toEqual(part);
    });

    it.each(NOT_AN_OBJECT)('returns null for %s', (_name, raw) => {
      expect(parseUserPart(raw)).toBeNull();
    });

    const wrong: [string, Record<string, unknown>][] = [
      ['content missing', { createdAt: AT }],
      ['createdAt missing', { content: 'x' }],
      ['content number', { content: 1, createdAt: AT }],
      ['content null', { content: null, createdAt: AT }],
      ['content object', { content: { text: 'x' }, createdAt: AT }],
      ['createdAt number', { content: 'x', createdAt: 1714564800000 }],
      ['createdAt null', { content: 'x', createdAt: null }],
      ['empty object', {}],
    ];
    it.each(wrong)('returns null when %s', (_name, value) => {
      expect(parseUserPart(JSON.stringify(value))).toBeNull();
    });

    it.each(['extreme', 'LOW', '', null, 1, true, ['low']])('drops an invalid think %j', (think) => {
      const parsed = parseUserPart(JSON.stringify({ content: 'x', createdAt: AT, think }));
      expect(parsed).toEqual({ content: 'x', createdAt: AT });
      expect(parsed).not.toHaveProperty('think');
    });

    it('drops unknown fields', () => {
      expect(parseUserPart(JSON.stringify({ content: 'x', createdAt: AT, role: 'system', extra: 1 }))).toEqual({
        content: 'x',
        createdAt: AT,
      });
    });
  });

  describe('parseAssistantPart', () => {
    const roundTrip: [string, StoredAssistantPart][] = [
      ['in progress (empty)', { content: '', createdAt: AT }],
      ['completed', { content: 'Answer', createdAt: AT }],
      ['completed with thinking', { content: 'Answer', createdAt: AT, thinking: 'Reasoning' }],
      ['failed with partial content', { content: 'Part', createdAt: AT, error: { code: 'ollama_error', message: 'Ollama failed' } }],
      [
        'failed with thinking and error',
        { content: '', createdAt: AT, thinking: 'hm', error: { code: 'model_not_found', message: 'ollama pull gpt-oss:20b' } },
      ],
    ];
    it.each(roundTrip)('round-trips %s', (_name, part) => {
      expect(parseAssistantPart(JSON.stringify(part))).toEqual(part);
    });

    it('round-trips a completed part with usage, as the generation runner stores it', () => {
      const part: StoredAssistantPart = {
        content: 'Answer',
        createdAt: AT,
        thinking: 'Reasoning',
        usage: { promptTokens: 12, completionTokens: 34 },
      };
      expect(parseAssistantPart(JSON.stringify(part))).toEqual(part);
    });

    it.each(NOT_AN_OBJECT)('returns null for %s', (_name, raw) => {
      expect(parseAssistantPart(raw)).toBeNull();
    });

    const wrong: [string, Record<string, unknown>][] = [
      ['content missing', { createdAt: AT }],
      ['createdAt missing', { content: 'x' }],
      ['content number', { content: 0, createdAt: AT }],
      ['content null', { content: null, createdAt: AT }],
      ['createdAt array', { content: 'x', createdAt: [AT] }],
    ];
    it.each(wrong)('returns null when %s', (_name, value) => {
      expect(parseAssistantPart(JSON.stringify(value))).toBeNull();
    });

    it.each([
      ['empty string', ''],
      ['number', 5],
      ['null', null],
      ['object', { text: 'x' }],
    ] as [string, unknown][])('omits thinking that is %s', (_name, thinking) => {
      const parsed = parseAssistantPart(JSON.stringify({ content: 'x', createdAt: AT, thinking }));
      expect(parsed).toEqual({ content: 'x', createdAt: AT });
      expect(parsed).not.toHaveProperty('thinking');
    });

    it.each([
      ['a string', 'boom'],
      ['null', null],
      ['an array', ['code', 'message']],
      ['code missing', { message: 'm' }],
      ['message missing', { code: 'c' }],
      ['code a number', { code: 500, message: 'm' }],
      ['message an object', { code: 'c', message: { text: 'm' } }],
    ] as [string, unknown][])('omits an error that is %s', (_name, error) => {
      const parsed = parseAssistantPart(JSON.stringify({ content: 'x', createdAt: AT, error }));
      expect(parsed).toEqual({ content: 'x', createdAt: AT });
      expect(parsed).not.toHaveProperty('error');
    });

    it.each([
      ['a string', '12,34'],
      ['null', null],
      ['an array', [12, 34]],
      ['empty', {}],
      ['promptTokens missing', { completionTokens: 3 }],
      ['completionTokens missing', { promptTokens: 3 }],
      ['negative promptTokens', { promptTokens: -1, completionTokens: 3 }],
      ['fractional completionTokens', { promptTokens: 1, completionTokens: 2.5 }],
      ['numeric strings', { promptTokens: '1', completionTokens: '2' }],
      ['null counts (NaN in JSON)', { promptTokens: null, completionTokens: 2 }],
    ] as [string, unknown][])('omits usage that is %s', (_name, usage) => {
      const parsed = parseAssistantPart(JSON.stringify({ content: 'x', createdAt: AT, usage }));
      expect(parsed).toEqual({ content: 'x', createdAt: AT });
      expect(parsed).not.toHaveProperty('usage');
    });

    it('keeps only the two counts of usage', () => {
      const parsed = parseAssistantPart(
        JSON.stringify({ content: 'x', createdAt: AT, usage: { promptTokens: 0, completionTokens: 7, totalDuration: 99 } }),
      );
      expect(parsed?.usage).toEqual({ promptTokens: 0, completionTokens: 7 });
    });

    it('keeps only code and message of an error', () => {
      const parsed = parseAssistantPart(
        JSON.stringify({ content: 'x', createdAt: AT, error: { code: 'c', message: 'm', stack: 'at ...' } }),
      );
      expect(parsed?.error).toEqual({ code: 'c', message: 'm' });
    });
  });

  describe('parseStatus', () => {
    it.each(['queued', 'streaming', 'completed', 'failed', 'cancelled'] as MessageStatus[])('reads %j as itself', (status) => {
      expect(parseStatus(status)).toBe(status);
    });

    it.each([
      ['unknown word', 'done'],
      ['upper case', 'COMPLETED'],
      ['leading space', ' completed'],
      ['trailing newline', 'failed\n'],
      ['JSON-quoted', '"completed"'],
      ['empty', ''],
      ['prototype name', 'constructor'],
      ['proto', '__proto__'],
      ['null', null],
      ['undefined', undefined],
    ] as [string, string | null | undefined][])('reads %s as queued', (_name, raw) => {
      expect(parseStatus(raw)).toBe('queued');
    });
  });
});
