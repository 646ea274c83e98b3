import { CLUSTER_SLOTS } from './partitions';
import { addressRateKey, GLOBAL_KEYS, isValidId, KeyLayout, newSessionRateKey, STREAM_PREFIXES } from './stream-names';
import calculateSlot from 'cluster-key-slot';

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

  describe('KeyLayout', () => {
    const layout = new KeyLayout(64);
    /** Every key (and channel) of a session, with its partition's. */
    const keysOf = (sessionId: string): string[] => {
      const { partition, ...session } = layout.session(sessionId);
      const { incoming, outgoing, dead, backlog, cancel } = partition;
      return [...Object.values(session), incoming, outgoing, dead, backlog, cancel, layout.sessionRate(sessionId, 7)];
    };

    it.each(['s1', 'b6f1c1a2-3c1e-4d7f-9a55-0c1f2e3d4a5b', 'x'.repeat(64), '_', '-'])(
      "every key of %j carries its partition's hash tag (one slot: every script touches one slot)",
      (sessionId) => {
        const partition = layout.partitionOf(sessionId);
        const keys = keysOf(sessionId);
        for (const key of keys) expect(hashTag(key)).toBe(partition.tag);
        expect(new Set(keys.map((key) => calculateSlot(key))).size).toBe(1);
        expect(new Set(keys).size).toBe(keys.length);
        expect(layout.session(sessionId).hash).toBe(`chat:s:{${partition.tag}}:${sessionId}`);
      },
    );

    it('keeps the stream names people know as prefixes', () => {
      const p = layout.partitions[17];
      expect(p.incoming).toBe(`${STREAM_PREFIXES.incoming}:{${p.tag}}`);
      expect(p.outgoing).toBe(`chat:outgoing:{${p.tag}}`);
      expect(p.dead).toBe(`chat:dead:{${p.tag}}`);
    });

    it('gives different sessions different keys', () => {
      const a = Object.values(layout.session('a')).filter((k) => typeof k === 'string');
      const b = Object.values(layout.session('b')).filter((k) => typeof k === 'string');
      for (const key of a) expect(b).not.toContain(key);
    });

    it('puts a session in the same partition in every process (stable hash)', () => {
      expect(new KeyLayout(64).partitionOf('s1').tag).toBe(layout.partitionOf('s1').tag);
      const counts = new Array<number>(64).fill(0);
      for (let i = 0; i < 6400; i++) counts[layout.partitionOf(`session-${i}`).index]++;
      // sessions spread over every partition, none badly overloaded
      expect(Math.min(...counts)).toBeGreaterThan(50);
      expect(Math.max(...counts)).toBeLessThan(160);
    });

    it('gives partitions distinct tags whose slots spread evenly over contiguous slot ranges', () => {
      const tags = layout.partitions.map((p) => p.tag);
      expect(new Set(tags).size).toBe(64);
      // 3 shards of equal contiguous slot ranges (what `redis-cli --cluster create` makes): 64 / 3
      const shards = 3;
      const perShard = new Array<number>(shards).fill(0);
      for (const tag of tags) perShard[Math.floor((calculateSlot(tag) * shards) / CLUSTER_SLOTS)]++;
      for (const count of perShard) {
        expect(count).toBeGreaterThanOrEqual(21);
        expect(count).toBeLessThanOrEqual(22);
      }
      // partition i lies in the i-th of 64 equal ranges
      layout.partitions.forEach((p, i) => expect(Math.floor((calculateSlot(p.tag) * 64) / CLUSTER_SLOTS)).toBe(i));
    });

    it('works with other partition counts', () => {
      for (const count of [1, 7, 128]) {
        const other = new KeyLayout(count);
        expect(other.partitions).toHaveLength(count);
        expect(other.partitionOf('s1').index).toBeLessThan(count);
      }
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
      expect(() => layout.session(value as string)).toThrow(/invalid session id/);
    });

    it('quotes the offending id in the error', () => {
      expect(() => layout.session('../x')).toThrow('"../x"');
    });
  });

  describe('keys outside the partitions', () => {
    it('keep the client address hashed in a tag of its own', () => {
      expect(hashTag(addressRateKey('abc', 7))).toBe('abc');
      expect(hashTag(newSessionRateKey('abc', 7))).toBe('abc');
      for (const key of Object.values(GLOBAL_KEYS)) expect(key).not.toMatch(/[{}]/);
    });
  });
});
