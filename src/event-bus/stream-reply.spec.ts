import { Redis } from 'ioredis';
import { testRedisUrl } from '../../test/support/test-redis';
import { compareStreamIds, isStreamId, parseAutoClaimReply, parseRangeReply, parseReadReply, StreamEntry } from './stream-reply';

const F1 = ['v', '1', 'type', 'chat.delta', 'data', '{"a":1}'];
const F2 = ['v', '1', 'type', 'chat.cancelled', 'data', '{}'];

const GARBAGE: [string, unknown][] = [
  ['null', null],
  ['undefined', undefined],
  ['number', 42],
  ['string', 'chat:outgoing'],
  ['object', { '0': ['k', []] }],
  ['empty array', []],
  ['array of null', [null]],
  ['array of strings', ['a', 'b']],
];

describe('stream-reply', () => {
  describe('isStreamId', () => {
    it.each(['0-0', '1-0', '1700000000000-12', '18446744073709551615-18446744073709551615'])('accepts %j', (id) => {
      expect(isStreamId(id)).toBe(true);
    });
    it.each([
      ['', ''],
      ['no seq', '123'],
      ['star', '123-*'],
      ['dollar', '$'],
      ['gt', '>'],
      ['neg', '-1-0'],
      ['spaces', ' 1-0'],
      ['trailing nl', '1-0\n'],
      ['three parts', '1-2-3'],
      ['letters', 'a-b'],
      ['23 digits (beyond 64 bits)', '12345678901234567890123-0'],
      ['2^64 ms', '18446744073709551616-0'],
      ['2^64 seq', '0-18446744073709551616'],
      ['number', 1],
      ['null', null],
      ['array', ['1-0']],
    ] as [string, unknown][])('rejects %s', (_name, id) => {
      expect(isStreamId(id)).toBe(false);
    });
  });

  describe('compareStreamIds', () => {
    const cases: [string, string, number][] = [
      ['1-0', '1-0', 0],
      ['0-0', '0-0', 0],
      ['1-0', '2-0', -1],
      ['2-0', '1-0', 1],
      // equal ms, different seq
      ['5-1', '5-2', -1],
      ['5-2', '5-1', 1],
      // numeric, not lexicographic
      ['9-0', '10-0', -1],
      ['5-9', '5-10', -1],
      ['5-10', '5-9', 1],
      ['100-0', '99-999', 1],
      // ms decides before seq
      ['1-999', '2-0', -1],
      // beyond Number.MAX_SAFE_INTEGER, where float comparison would say "equal"
      ['9007199254740993-0', '9007199254740992-0', 1],
      ['9007199254740992-0', '9007199254740993-0', -1],
      ['1-9007199254740993', '1-9007199254740992', 1],
      ['18446744073709551615-0', '18446744073709551614-18446744073709551615', 1],
      ['18446744073709551615-18446744073709551615', '18446744073709551615-18446744073709551615', 0],
    ];
    it.each(cases)('compare(%s, %s) = %d', (a, b, expected) => {
      expect(Math.sign(compareStreamIds(a, b))).toBe(expected);
      expect(Math.sign(compareStreamIds(b, a))).toBe(-expected || 0);
    });

    it('sorts ids numerically', () => {
      const ids = ['10-0', '2-5', '2-10', '1-0', '9007199254740993-1', '2-9', '9007199254740993-0', '0-1'];
      expect([...ids].sort(compareStreamIds)).toEqual([
        '0-1',
        '1-0',
        '2-5',
        '2-9',
        '2-10',
        '10-0',
        '9007199254740993-0',
        '9007199254740993-1',
      ]);
    });
  });

  describe('parseReadReply', () => {
    it('reads an XREAD/XREADGROUP reply for one stream', () => {
      const reply = [
        [
          'chat:outgoing',
          [
            ['1700000000000-0', F1],
            ['1700000000000-1', F2],
          ],
        ],
      ];
      expect(parseReadReply(reply)).toEqual<StreamEntry[]>([
        { id: '1700000000000-0', fields: F1 },
        { id: '1700000000000-1', fields: F2 },
      ]);
    });

    it('keeps an entry with a null field list (deleted while pending) with no fields', () => {
      const reply = [
        [
          'chat:incoming',
          [
            ['1-0', null],
            ['2-0', F1],
          ],
        ],
      ];
      expect(parseReadReply(reply)).toEqual([
        { id: '1-0', fields: [] },
        { id: '2-0', fields: F1 },
      ]);
    });

    it('reads only the first stream of a multi-stream reply', () => {
      const reply = [
        ['a', [['1-0', F1]]],
        ['b', [['2-0', F2]]],
      ];
      expect(parseReadReply(reply)).toEqual([{ id: '1-0', fields: F1 }]);
    });

    it('returns [] for a stream with no entries', () => {
      expect(parseReadReply([['chat:outgoing', []]])).toEqual([]);
    });

    it.each(GARBAGE)('returns [] for %s', (_name, reply) => {
      expect(parseReadReply(reply)).toEqual([]);
    });

    it.each([
      ['entries not an array', [['k', 'nope']]],
      ['entries null', [['k', null]]],
      ['stream tuple missing entries', [['k']]],
    ] as [string, unknown][])('returns [] when %s', (_name, reply) => {
      expect(parseReadReply(reply)).toEqual([]);
    });

    it('skips malformed entries but keeps good ones', () => {
      const reply = [
        ['k', [null, 'x', ['not-an-id', F1], [123, F1], [], ['3-0', F1], ['4-0', 'fields as a string'], ['5-0', ['a', 7, 'b', null, 'c']]]],
      ];
      expect(parseReadReply(reply)).toEqual([
        { id: '3-0', fields: F1 },
        { id: '4-0', fields: [] },
        { id: '5-0', fields: ['a', 'b', 'c'] },
      ]);
    });

    it('returns fresh arrays (does not alias the reply)', () => {
      const fields = [...F1];
      const [entry] = parseReadReply([['k', [['1-0', fields]]]]);
      expect(entry.fields).toEqual(F1);
      expect(entry.fields).not.toBe(fields);
    });
  });

  describe('parseRangeReply', () => {
    it('reads an XRANGE reply', () => {
      expect(
        parseRangeReply([
          ['1-0', F1],
          ['1-1', F2],
        ]),
      ).toEqual([
        { id: '1-0', fields: F1 },
        { id: '1-1', fields: F2 },
      ]);
    });

    it('keeps the order of an XREVRANGE reply', () => {
      expect(
        parseRangeReply([
          ['9-0', F2],
          ['1-0', F1],
        ]).map((e) => e.id),
      ).toEqual(['9-0', '1-0']);
    });

    it('maps a null field list to []', () => {
      expect(parseRangeReply([['1-0', null]])).toEqual([{ id: '1-0', fields: [] }]);
    });

    it.each(GARBAGE)('returns [] for %s', (_name, reply) => {
      expect(parseRangeReply(reply)).toEqual([]);
    });

    it('does not mistake an XREAD reply for a range reply', () => {
      expect(parseRangeReply([['chat:outgoing', [['1-0', F1]]]])).toEqual([]);
    });
  });

  describe('parseAutoClaimReply', () => {
    it('reads a Redis 7 reply with deleted ids', () => {
      const reply = [
        '1700000000005-0',
        [
          ['1700000000001-0', F1],
          ['1700000000002-0', null],
        ],
        ['1700000000003-0'],
      ];
      expect(parseAutoClaimReply(reply)).toEqual({
        cursor: '1700000000005-0',
        entries: [
          { id: '1700000000001-0', fields: F1 },
          { id: '1700000000002-0', fields: [] },
        ],
        deleted: ['1700000000003-0'],
      });
    });

    it('reads a Redis 6.2 reply (no deleted list)', () => {
      expect(parseAutoClaimReply(['0-0', [['1-0', F1]]])).toEqual({ cursor: '0-0', entries: [{ id: '1-0', fields: F1 }], deleted: [] });
    });

    it('reads a reply that claimed nothing', () => {
      expect(parseAutoClaimReply(['0-0', [], []])).toEqual({ cursor: '0-0', entries: [], deleted: [] });
    });

    it.each(GARBAGE)('falls back to cursor 0-0 and nothing for %s', (_name, reply) => {
      expect(parseAutoClaimReply(reply)).toEqual({ cursor: '0-0', entries: [], deleted: [] });
    });

    it('replaces a bad cursor with 0-0 and drops bad deleted ids', () => {
      expect(parseAutoClaimReply(['oops', [['2-0', F2]], ['3-0', 'x', null, 4, '5-1']])).toEqual({
        cursor: '0-0',
        entries: [{ id: '2-0', fields: F2 }],
        deleted: ['3-0', '5-1'],
      });
    });

    it('survives entries and deleted of the wrong type', () => {
      expect(parseAutoClaimReply(['7-0', 'entries', { a: 1 }])).toEqual({ cursor: '7-0', entries: [], deleted: [] });
    });
  });

  describe('against real Redis replies', () => {
    let redis: Redis;
    const key = `stream-reply-spec:${process.pid}:${Date.now()}`;

    beforeAll(async () => {
      redis = new Redis(testRedisUrl(), { protocol: 2, lazyConnect: true });
      await redis.connect();
    });

    afterAll(async () => {
      await redis.del(key);
      await redis.quit();
    });

    it('parses XADD/XRANGE/XREAD/XREADGROUP/XAUTOCLAIM replies, including a deleted pending entry', async () => {
      const id1 = await redis.xadd(key, '*', ...F1);
      const id2 = await redis.xadd(key, '*', ...F2);
      const id3 = await redis.xadd(key, '*', ...F1);
      expect([id1, id2, id3].every(isStreamId)).toBe(true);
      expect(compareStreamIds(id1!, id2!)).toBeLessThan(0);
      expect(compareStreamIds(id3!, id2!)).toBeGreaterThan(0);

      const range: unknown = await redis.xrange(key, '-', '+');
      expect(parseRangeReply(range)).toEqual([
        { id: id1, fields: F1 },
        { id: id2, fields: F2 },
        { id: id3, fields: F1 },
      ]);

      const rev: unknown = await redis.xrevrange(key, '+', '-', 'COUNT', 1);
      expect(parseRangeReply(rev)).toEqual([{ id: id3, fields: F1 }]);

      const read: unknown = await redis.xread('COUNT', 10, 'STREAMS', key, id1!);
      expect(parseReadReply(read)).toEqual([
        { id: id2, fields: F2 },
        { id: id3, fields: F1 },
      ]);

      const none: unknown = await redis.xread('COUNT', 10, 'STREAMS', key, id3!);
      expect(none).toBeNull();
      expect(parseReadReply(none)).toEqual([]);

      await redis.xgroup('CREATE', key, 'g', '0');
      const group: unknown = await redis.xreadgroup('GROUP', 'g', 'c1', 'COUNT', 10, 'STREAMS', key, '>');
      expect(parseReadReply(group).map((e) => e.id)).toEqual([id1, id2, id3]);

      // Deleting a pending entry: re-reading the PEL gives it back with a null field list.
      await redis.xdel(key, id2!);
      const pending: unknown = await redis.xreadgroup('GROUP', 'g', 'c1', 'COUNT', 10, 'STREAMS', key, '0');
      expect(parseReadReply(pending)).toEqual([
        { id: id1, fields: F1 },
        { id: id2, fields: [] },
        { id: id3, fields: F1 },
      ]);

      const claimed: unknown = await redis.call('XAUTOCLAIM', key, 'g', 'c2', '0', '0-0', 'COUNT', '10');
      const parsed = parseAutoClaimReply(claimed);
      expect(parsed.cursor).toBe('0-0');
      expect(parsed.entries).toEqual([
        { id: id1, fields: F1 },
        { id: id3, fields: F1 },
      ]);
      expect(parsed.deleted).toEqual([id2]);
    });
  });
});
