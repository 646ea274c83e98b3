/** Redis INFO as numbers: CPU, memory, command counts (total and per command). */
import type { Redis } from 'ioredis';

export interface RedisSnapshot {
  cpuSeconds: number;
  usedMemory: number;
  usedMemoryRss: number;
  totalCommands: number;
  instantaneousOps: number;
  /** calls per command name, e.g. { xadd: 123, evalsha: 45 } */
  calls: Record<string, number>;
  keys: number;
}

export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.indexOf(':');
    if (at > 0) out[line.slice(0, at)] = line.slice(at + 1);
  }
  return out;
}

export async function redisSnapshot(redis: Redis): Promise<RedisSnapshot> {
  const info = parseInfo(await redis.info('everything'));
  const calls: Record<string, number> = {};
  let keys = 0;
  for (const [key, value] of Object.entries(info)) {
    if (key.startsWith('cmdstat_')) {
      const m = value.match(/calls=(\d+)/);
      if (m) calls[key.slice('cmdstat_'.length)] = Number(m[1]);
    } else if (/^db\d+$/.test(key)) {
      const m = value.match(/keys=(\d+)/);
      if (m) keys += Number(m[1]);
    }
  }
  return {
    cpuSeconds: Number(info.used_cpu_user) + Number(info.used_cpu_sys),
    usedMemory: Number(info.used_memory),
    usedMemoryRss: Number(info.used_memory_rss),
    totalCommands: Number(info.total_commands_processed),
    instantaneousOps: Number(info.instantaneous_ops_per_sec),
    calls,
    keys,
  };
}

/** Per-command call deltas between two snapshots, largest first. */
export function callDeltas(before: RedisSnapshot, after: RedisSnapshot): [string, number][] {
  const out: [string, number][] = [];
  for (const [name, n] of Object.entries(after.calls)) {
    const d = n - (before.calls[name] ?? 0);
    if (d > 0) out.push([name, d]);
  }
  return out.sort((a, b) => b[1] - a[1]);
}

export async function redisVersion(redis: Redis): Promise<string> {
  return parseInfo(await redis.info('server')).redis_version ?? 'unknown';
}
