import calculateSlot from 'cluster-key-slot';

/** Redis Cluster's slot count: keys hash (CRC16 of the hash tag) into 0..16383. */
export const CLUSTER_SLOTS = 16384;

/** The partition of a session: FNV-1a (32-bit) of its id, modulo the partition count. Stable across processes and versions. */
export function partitionOf(sessionId: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < sessionId.length; i++) {
    hash ^= sessionId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % partitions;
}

/**
 * The hash tags of all partitions. Partition i's tag is `p<i>` when its slot lies in the i-th of
 * `partitions` equal slot ranges, else `p<i>.<k>` with the smallest k that does: partitions then
 * spread evenly over shards that split the slots into contiguous ranges (what `redis-cli --cluster
 * create` does), whatever their number. CRC16 of short strings spreads so well that k stays small.
 */
export function partitionTags(partitions: number): readonly string[] {
  const tags: string[] = [];
  for (let i = 0; i < partitions; i++) {
    const from = Math.floor((i * CLUSTER_SLOTS) / partitions);
    const to = Math.floor(((i + 1) * CLUSTER_SLOTS) / partitions);
    let tag = `p${i}`;
    for (let k = 1; !inRange(calculateSlot(tag), from, to); k++) tag = `p${i}.${k}`;
    tags.push(tag);
  }
  return tags;
}

function inRange(slot: number, from: number, to: number): boolean {
  return slot >= from && slot < to;
}
