import { expect } from '@jest/globals';
import { validatePayload } from '../../app/validation';
import { MessageInputDto, SendMessageDto } from './send-message.dto';

async function expectRejected(raw: unknown, ...mustMention: (string | RegExp)[]): Promise<string> {
  const r = await validatePayload(SendMessageDto, raw);
  expect(r.ok).toBe(false);
  if (r.ok) throw new Error('unreachable');
  for (const m of mustMention) {
    if (typeof m === 'string') expect(r.message).toContain(m);
    else expect(r.message).toMatch(m);
  }
  return r.message;
}

const base = { sessionId: 'b6f1c1a2-3c1e-4d7f-9a55-0c1f2e3d4a5b', content: 'Explain Redis Streams in two sentences.' };

describe('SendMessageDto', () => {
  it('accepts a minimal valid body', async () => {
    const r = await validatePayload(SendMessageDto, { sessionId: 'abc', content: 'hi' });
    expect(r.ok).toBe(true);
  });

  describe('valid bodies', () => {
    const valid: [string, Record<string, unknown>][] = [
      ['uuid session', base],
      ['64-char session id', { ...base, sessionId: 's'.repeat(64) }],
      ['1-char session id', { ...base, sessionId: 'x' }],
      ['id alphabet', { ...base, sessionId: 'AZaz09_-' }],
      ['think low', { ...base, think: 'low' }],
      ['think medium', { ...base, think: 'medium' }],
      ['think high', { ...base, think: 'high' }],
      ['clientMessageId', { ...base, clientMessageId: 'c-0001' }],
      ['64-char clientMessageId', { ...base, clientMessageId: 'c'.repeat(64) }],
      ['everything', { ...base, clientMessageId: 'A_b-9', think: 'high' }],
      ['content with surrounding whitespace', { ...base, content: '  hi  ' }],
      ['one-character content', { ...base, content: '?' }],
      ['multi-line unicode content', { ...base, content: 'Zeile 1\nZeile 2 — ünïcødé 😀' }],
      ['content that looks hostile is just text', { ...base, content: '../x {x} a*b <script>' }],
      ['a visible character between zero-width ones', { ...base, content: '\u200Bx\u200D' }],
      ['an emoji sequence with a joiner and a variation selector', { ...base, content: '👩\u200D💻 ❤\uFE0F' }],
      ['a lone combining mark (renders on a dotted circle)', { ...base, content: '\u0301' }],
    ];
    it.each(valid)('%s', async (_name, body) => {
      const r = await validatePayload(SendMessageDto, body);
      expect(r).toMatchObject({ ok: true });
      if (!r.ok) throw new Error('unreachable');
      expect(r.value).toBeInstanceOf(SendMessageDto);
      expect({ ...r.value }).toEqual(body);
    });
  });

  describe('content', () => {
    const cases: [string, Record<string, unknown>][] = [
      ['missing', { sessionId: base.sessionId }],
      ['undefined', { ...base, content: undefined }],
      ['empty', { ...base, content: '' }],
      ['spaces only', { ...base, content: '   ' }],
      ['whitespace only', { ...base, content: ' \n\t\r ' }],
      ['zero-width characters only', { ...base, content: '\u200B\u200C\u200D\u2060\uFEFF' }],
      ['bidi marks and a soft hyphen only', { ...base, content: '\u200E\u200F\u202E\u00AD' }],
      ['blank fillers only (Hangul, Braille)', { ...base, content: '\u3164\u2800\u115F' }],
      ['variation selectors and tags only', { ...base, content: '\uFE0F\u{E0041}\u{E0100}' }],
      ['ideographic space and no-break space only', { ...base, content: '\u3000\u00A0' }],
      ['number', { ...base, content: 42 }],
      ['zero', { ...base, content: 0 }],
      ['boolean', { ...base, content: true }],
      ['array', { ...base, content: ['hi'] }],
      ['object', { ...base, content: { text: 'hi' } }],
      ['null', { ...base, content: null }],
    ];
    it.each(cases)('rejects %s content', async (_name, body) => {
      await expectRejected(body, 'content');
    });

    it('says an empty content must not be empty', async () => {
      await expectRejected({ ...base, content: '  ' }, 'content must not be empty');
    });

    it('says a non-string content must be a string', async () => {
      await expectRejected({ ...base, content: 7 }, 'content must be a string');
    });
  });

  describe('unknown fields', () => {
    it.each(['role', 'messageId', 'status', 'priority', 'system', 'constructor_'])('rejects %j, naming it', async (field) => {
      await expectRejected({ ...base, [field]: 'x' }, field, 'should not exist');
    });

    it('names every unknown field', async () => {
      const message = await expectRejected({ ...base, foo: 1, bar: 2 }, 'foo', 'bar');
      expect(message).not.toContain('content');
    });

    it('reports an unknown field and a bad field together', async () => {
      await expectRejected({ ...base, content: '', extra: true }, 'extra', 'content must not be empty');
    });
  });

  describe('think', () => {
    it.each(['extreme', 'LOW', 'High', '', ' low', 'none', 1, true, ['low'], { level: 'low' }])('rejects %j', async (think) => {
      await expectRejected({ ...base, think }, 'think', /low, medium, high/);
    });
  });

  describe('clientMessageId', () => {
    it.each(['a', '1', 'c-0001', 'A_b-9', 'x'.repeat(64), 'b6f1c1a2-3c1e-4d7f-9a55-0c1f2e3d4a5b'])(
      'accepts %j',
      async (clientMessageId) => {
        expect((await validatePayload(SendMessageDto, { ...base, clientMessageId })).ok).toBe(true);
      },
    );

    const hostile: [string, unknown][] = [
      ['path traversal', '../x'],
      ['glob', 'a*b'],
      ['hash tag', '{x}'],
      ['colon', 'a:b'],
      ['space', 'a b'],
      ['trailing newline', 'abc\n'],
      ['embedded newline', 'a\nb'],
      ['empty', ''],
      ['65 chars', 'x'.repeat(65)],
      ['non-ascii', 'clïent'],
      ['number', 123],
      ['array', ['c-1']],
      ['object', { id: 'c-1' }],
    ];
    it.each(hostile)('rejects %s', async (_name, clientMessageId) => {
      await expectRejected({ ...base, clientMessageId }, 'clientMessageId');
    });

    it('explains the allowed pattern', async () => {
      await expectRejected({ ...base, clientMessageId: '../x' }, 'clientMessageId must be 1-64 characters of A-Z, a-z, 0-9, _ or -');
    });
  });

  describe('sessionId', () => {
    const bad: [string, Record<string, unknown>][] = [
      ['missing', { content: 'hi' }],
      ['undefined', { ...base, sessionId: undefined }],
      ['null', { ...base, sessionId: null }],
      ['empty', { ...base, sessionId: '' }],
      ['path traversal', { ...base, sessionId: '../x' }],
      ['glob', { ...base, sessionId: 'a*b' }],
      ['hash tag', { ...base, sessionId: '{x}' }],
      ['hash tag injection', { ...base, sessionId: 'x}:y' }],
      ['key separator', { ...base, sessionId: 'chat:abc' }],
      ['trailing newline', { ...base, sessionId: 'abc\n' }],
      ['65 chars', { ...base, sessionId: 's'.repeat(65) }],
      ['very long', { ...base, sessionId: 's'.repeat(10_000) }],
      ['number', { ...base, sessionId: 123 }],
      ['array', { ...base, sessionId: ['abc'] }],
      ['object', { ...base, sessionId: { id: 'abc' } }],
    ];
    it.each(bad)('rejects %s', async (_name, body) => {
      await expectRejected(body, 'sessionId');
    });

    it('explains the allowed pattern', async () => {
      await expectRejected({ ...base, sessionId: 'a b' }, 'sessionId must be 1-64 characters of A-Z, a-z, 0-9, _ or -');
    });
  });

  describe('payload that is not an object', () => {
    it.each([
      ['string', 'hello'],
      ['JSON text', JSON.stringify(base)],
      ['number', 42],
      ['boolean', true],
      ['array', [base]],
      ['empty array', []],
      ['null', null],
      ['undefined', undefined],
    ] as [string, unknown][])('rejects %s', async (_name, raw) => {
      await expectRejected(raw, 'payload must be a JSON object');
    });

    it('rejects an empty object, naming both required fields', async () => {
      await expectRejected({}, 'sessionId', 'content');
    });
  });

  describe('MessageInputDto (the socket form, without sessionId)', () => {
    it('accepts content alone', async () => {
      expect((await validatePayload(MessageInputDto, { content: 'hi' })).ok).toBe(true);
    });

    it('rejects a sessionId, which it does not declare', async () => {
      const r = await validatePayload(MessageInputDto, { content: 'hi', sessionId: 'abc' });
      expect(r).toEqual({ ok: false, message: expect.stringContaining('sessionId') });
    });
  });
});
