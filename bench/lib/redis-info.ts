/**
 * Redis INFO as numbers: CPU, memory, command counts (total and per command), of one server or
 * summed over the masters of a cluster (INFO describes only the node it is sent to).
 */
import type { Redis } from 'ioredis';

export interface RedisSnapshot {
  /** host:port of the node, or `all` for a sum over nodes */
  node: string;
  cpuSeconds: number;
  usedMemory: number;
  usedMemoryRss: number;
  totalCommands: number;
  instantaneousOps: number;
  /** calls per command name, e.g. { xadd: 123, evalsha: 45 } */
  calls: Record<string, number>;
  /**
   * Sum of `calls`: unlike total_commands_processed it also counts the commands scripts run
   * (commandstats counts a redis.call as a call of its command), which is the work a node does.
   */
  commandCalls: number;
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
    node: nodeName(redis),
    cpuSeconds: Number(info.used_cpu_user) + Number(info.used_cpu_sys),
    usedMemory: Number(info.used_memory),
    usedMemoryRss: Number(info.used_memory_rss),
    totalCommands: Number(info.total_commands_processed),
    instantaneousOps: Number(info.instantaneous_ops_per_sec),
    calls,
    commandCalls: Object.values(calls).reduce((a, b) => a + b, 0),
    keys,
  };
}

/** Every node's snapshot (taken at once) and their sum. */
export async function redisSnapshots(nodes: Redis[]): Promise<{ total: RedisSnapshot; nodes: RedisSnapshot[] }> {
  const each = await Promise.all(nodes.map(redisSnapshot));
  return { total: each.length === 1 ? each[0] : sumSnapshots(each), nodes: each };
}

/** The sum over nodes (a single node's snapshot as it is). */
export async function redisTotal(nodes: Redis[]): Promise<RedisSnapshot> {
  return (await redisSnapshots(nodes)).total;
}

function sumSnapshots(list: RedisSnapshot[]): RedisSnapshot {
  const sum = (k: 'cpuSeconds' | 'usedMemory' | 'usedMemoryRss' | 'totalCommands' | 'instantaneousOps' | 'commandCalls' | 'keys') =>
    list.reduce((a, s) => a + s[k], 0);
  const calls: Record<string, number> = {};
  for (const s of list) for (const [name, n] of Object.entries(s.calls)) calls[name] = (calls[name] ?? 0) + n;
  return {
    node: 'all',
    cpuSeconds: sum('cpuSeconds'),
    usedMemory: sum('usedMemory'),
    usedMemoryRss: sum('usedMemoryRss'),
    totalCommands: sum('totalCommands'),
    instantaneousOps: sum('instantaneousOps'),
    calls,
    commandCalls: sum('commandCalls'),
    keys: sum('keys'),
  };
}

/** `host:port` of a plain connection, as CLUSTER SLOTS names the node. */
export function nodeName(redis: Redis): string {
  return `${redis.options.host ?? '127.0.0.1'}:${redis.options.port ?? 6379}`;
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
