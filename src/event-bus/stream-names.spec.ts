import { isValidId, sessionKeys, sessionRateKey, STREAMS } from './stream-names';

/** The Redis Cluster hash tag of a key: the text between the first `{` and the next `}`, if non-empty. */
function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open === -1) return key;
  const close = key.indexOf('}', open + 1);
  if (close === -1 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

describe('stream-names', () => {
  describe('isValidId', () => {
    const valid: [string, string][] = [
      ['single letter', 'a'],
      ['single digit', '7'],
      ['underscore only', '_'],
      ['dash only', '-'],
      ['uuid', 'b6f1c1a2-3c1e-4d7f-9a55-0c1f2e3d4a5b'],
      ['mixed alphabet', 'AZaz09_-'],
      ['64 chars', 'x'.repeat(64)],
      ['client id', 'c-0001'],
    ];
    it.each(valid)('accepts %s', (_name, value) => {
      expect(isValidId(value)).toBe(true);
    });

    const invalid: [string, unknown][] = [
      ['empty', ''],
      ['65 chars', 'x'.repeat(65)],
      ['1000 chars', 'x'.repeat(1000)],
      ['path traversal', '../x'],
      ['slash', 'a/b'],
      ['dot', 'a.b'],
      ['glob star', 'a*b'],
      ['glob question', 'a?b'],
      ['glob class', 'a[b]'],
      ['hash tag', '{x}'],
      ['open brace', 'a{b'],
      ['close brace', 'a}b'],
      ['colon', 'chat:x'],
      ['space', 'a b'],
      ['tab', 'a\tb'],
      ['trailing newline', 'abc\n'],
      ['leading newline', '\nabc'],
      ['embedded newline', 'a\nb'],
      ['carriage return', 'abc\r'],
      ['NUL', 'a\u0000b'],
      ['accented', 'café'],
      ['emoji', 'a😀'],
      ['fullwidth digit', '１'],
      ['number', 123],
      ['null', null],
      ['undefined', undefined],
      ['array of a valid id', ['abc']],
      ['object', { toString: () => 'abc' }],
      ['boolean', true],
    ];
    it.each(invalid)('rejects %s', (_name, value) => {
      expect(isValidId(value)).toBe(false);
    });

    it('is not stateful across calls (no global-flag lastIndex trap)', () => {
      for (let i = 0; i < 5; i++) expect(isValidId('abc')).toBe(true);
    });
  });

  describe('sessionKeys', () => {
    it('puts the rate window of a session in its slot', () => {
      expect(hashTag(sessionRateKey('s1', 7))).toBe('s1');
    });

    it.each(['s1', 'b6f1c1a2-3c1e-4d7f-9a55-0c1f2e3d4a5b', 'x'.repeat(64), '_', '-'])(
      'all keys of %j share the hash tag {sessionId}',
      (sessionId) => {
        const keys = Object.values(sessionKeys(sessionId));
        for (const key of keys) {
          expect(hashTag(key)).toBe(sessionId);
          expect(key.startsWith(`chat:{${sessionId}}:`)).toBe(true);
        }
        expect(new Set(keys).size).toBe(keys.length);
      },
    );

    it('gives different sessions different keys', () => {
      const a = Object.values(sessionKeys('a'));
      const b = Object.values(sessionKeys('b'));
      for (const key of a) expect(b).not.toContain(key);
    });

    const bad: [string, unknown][] = [
      ['empty', ''],
      ['path traversal', '../x'],
      ['glob', 'a*b'],
      ['hash tag injection', 'x}:other:{y'],
      ['braces', '{x}'],
      ['newline', 'abc\n'],
      ['65 chars', 'x'.repeat(65)],
      ['number', 7],
      ['null', null],
      ['undefined', undefined],
    ];
    it.each(bad)('throws on %s', (_name, value) => {
      expect(() => sessionKeys(value as string)).toThrow(/invalid session id/);
    });

    it('quotes the offending id in the error', () => {
      expect(() => sessionKeys('../x')).toThrow('"../x"');
    });
  });

  describe('STREAMS', () => {
    it('keeps stream names out of any session hash tag', () => {
      for (const name of Object.values(STREAMS)) expect(name).not.toMatch(/[{}]/);
    });
  });
});
