/** Parsing of raw stream replies. Redis answers are untyped at runtime: check, never cast. */

export interface StreamEntry {
  id: string;
  fields: string[];
}

const STREAM_ID = /^(\d{1,20})-(\d{1,20})$/;
/** Both parts of a stream id are unsigned 64-bit numbers: Redis refuses anything larger. */
const U64_MAX = 2n ** 64n - 1n;

export function isStreamId(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const match = STREAM_ID.exec(value);
  return match !== null && BigInt(match[1]) <= U64_MAX && BigInt(match[2]) <= U64_MAX;
}

/** Compares two stream ids numerically (they are `ms-seq`). */
export function compareStreamIds(a: string, b: string): number {
  const [aMs, aSeq] = a.split('-').map(BigInt);
  const [bMs, bSeq] = b.split('-').map(BigInt);
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  if (aSeq !== bSeq) return aSeq < bSeq ? -1 : 1;
  return 0;
}

function toEntries(items: unknown): StreamEntry[] {
  if (!Array.isArray(items)) return [];
  const entries: StreamEntry[] = [];
  for (const item of items) {
    if (!Array.isArray(item) || !isStreamId(item[0])) continue;
    const rawFields: unknown = item[1];
    // A null field list means the entry was trimmed/deleted while pending.
    const fields = Array.isArray(rawFields) ? rawFields.filter((f): f is string => typeof f === 'string') : [];
    entries.push({ id: item[0], fields });
  }
  return entries;
}

/** XREAD / XREADGROUP reply for a single stream: `[[key, [[id, fields], ...]]]` or null. */
export function parseReadReply(reply: unknown): StreamEntry[] {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  const first: unknown = reply[0];
  if (!Array.isArray(first)) return [];
  return toEntries(first[1]);
}

/** The value of `name` in a flat `[name, value, name, value, ...]` reply (XINFO), or undefined. */
export function replyField(reply: readonly unknown[], name: string): unknown {
  for (let i = 0; i + 1 < reply.length; i += 2) if (reply[i] === name) return reply[i + 1];
  return undefined;
}

/** XRANGE / XREVRANGE reply: `[[id, fields], ...]`. */
export function parseRangeReply(reply: unknown): StreamEntry[] {
  return toEntries(reply);
}

/** XAUTOCLAIM reply: `[nextCursor, [[id, fields], ...], deletedIds?]`. */
export function parseAutoClaimReply(reply: unknown): { cursor: string; entries: StreamEntry[]; deleted: string[] } {
  if (!Array.isArray(reply)) return { cursor: '0-0', entries: [], deleted: [] };
  const cursor = isStreamId(reply[0]) ? reply[0] : '0-0';
  const deleted = Array.isArray(reply[2]) ? reply[2].filter(isStreamId) : [];
  return { cursor, entries: toEntries(reply[1]), deleted };
}
