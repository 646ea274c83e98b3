/**
 * How evenly a phase's Redis work spread over the masters of a cluster (`--cluster`): per master,
 * its share of the commands (INFO commandstats call deltas, so commands run inside scripts count
 * where they run) and of the Redis CPU (used_cpu_user + used_cpu_sys deltas), and which partitions
 * it owns. Issue 18's figure: with 3 masters, no master carries more than 45 % of either in the
 * throughput phase.
 */
import calculateSlot from 'cluster-key-slot';
import type { Redis } from 'ioredis';
import { partitionTags } from '../../src/event-bus/partitions';
import { GLOBAL_KEYS } from '../../src/event-bus/stream-names';
import { callDeltas, nodeName, RedisSnapshot } from './redis-info';
import { fmt, fmtInt, round, table } from './stats';

/** Issue 18: the most any one master may carry, in % of all commands or all Redis CPU. */
export const MAX_MASTER_SHARE_PCT = 45;

export interface Master {
  node: string;
  slots: number;
  /** partitions whose hash tag's slot this master owns */
  partitions: number;
  /** the un-tagged keys (chat:workers, chat:auth:secret) living here */
  globalKeys: string[];
}

export interface MasterShare {
  node: string;
  partitions: number;
  commands: number;
  /** % of the commands of all masters */
  commandsPct: number;
  cpuSeconds: number;
  /** % of the CPU of all masters */
  cpuPct: number;
  /** % of one core over the window */
  coreUsePct: number;
  /** keys on the master at the end (sessions spread by partition: an uneven share shows here) */
  keys: number;
  /** its largest command counts in the window, to see what made a share uneven */
  topCommands: [string, number][];
}

export interface ShardSpread {
  seconds: number;
  masters: MasterShare[];
  maxCommandsPct: number;
  maxCpuPct: number;
  /** both maxima ≤ MAX_MASTER_SHARE_PCT */
  even: boolean;
}

/** The masters as the cluster sees them (CLUSTER SLOTS, asked of the first node), with what they own. */
export async function describeMasters(nodes: Redis[], partitions: number): Promise<Master[]> {
  const ranges = await nodes[0].cluster('SLOTS');
  const ownerOf = (slot: number) => {
    const r = ranges.find(([from, to]) => slot >= from && slot <= to);
    return r ? `${r[2][0]}:${r[2][1]}` : 'unassigned';
  };
  const masters = new Map<string, Master>(
    nodes.map((n) => [nodeName(n), { node: nodeName(n), slots: 0, partitions: 0, globalKeys: [] as string[] }]),
  );
  for (const [from, to, [host, port]] of ranges) {
    const m = masters.get(`${host}:${port}`);
    if (m) m.slots += to - from + 1;
  }
  for (const tag of partitionTags(partitions)) {
    const m = masters.get(ownerOf(calculateSlot(tag)));
    if (m) m.partitions++;
  }
  for (const key of Object.values(GLOBAL_KEYS)) masters.get(ownerOf(calculateSlot(key)))?.globalKeys.push(key);
  return [...masters.values()];
}

/** Per-master shares between two sets of node snapshots (same nodes, same order). */
export function shardSpread(before: RedisSnapshot[], after: RedisSnapshot[], seconds: number, masters: Master[]): ShardSpread {
  const rows = after.map((b, i) => {
    const a = before[i];
    return {
      node: b.node,
      commands: b.commandCalls - a.commandCalls,
      cpuSeconds: b.cpuSeconds - a.cpuSeconds,
      keys: b.keys,
      topCommands: callDeltas(a, b).slice(0, 6),
    };
  });
  const commands = rows.reduce((s, r) => s + r.commands, 0);
  const cpu = rows.reduce((s, r) => s + r.cpuSeconds, 0);
  const shares: MasterShare[] = rows.map((r) => ({
    node: r.node,
    partitions: masters.find((m) => m.node === r.node)?.partitions ?? 0,
    commands: r.commands,
    commandsPct: commands > 0 ? round((r.commands / commands) * 100, 1) : 0,
    cpuSeconds: round(r.cpuSeconds, 3),
    cpuPct: cpu > 0 ? round((r.cpuSeconds / cpu) * 100, 1) : 0,
    coreUsePct: seconds > 0 ? round((r.cpuSeconds / seconds) * 100, 1) : 0,
    keys: r.keys,
    topCommands: r.topCommands,
  }));
  const maxCommandsPct = Math.max(...shares.map((s) => s.commandsPct));
  const maxCpuPct = Math.max(...shares.map((s) => s.cpuPct));
  return {
    seconds: round(seconds, 1),
    masters: shares,
    maxCommandsPct,
    maxCpuPct,
    even: maxCommandsPct <= MAX_MASTER_SHARE_PCT && maxCpuPct <= MAX_MASTER_SHARE_PCT,
  };
}

export function renderSpread(phase: string, s: ShardSpread): string[] {
  const rows = [['master', 'partitions', 'keys', 'commands', 'share', 'CPU seconds', 'share', 'of a core', 'top commands']];
  for (const m of s.masters) {
    rows.push([
      m.node,
      String(m.partitions),
      fmtInt(m.keys),
      fmtInt(m.commands),
      `${fmt(m.commandsPct, 1)}%`,
      fmt(m.cpuSeconds, 2),
      `${fmt(m.cpuPct, 1)}%`,
      `${fmt(m.coreUsePct, 0)}%`,
      m.topCommands
        .slice(0, 4)
        .map(([k, v]) => `${k} ${fmtInt(v)}`)
        .join(', '),
    ]);
  }
  return [
    `  ${phase} (${s.seconds} s): max share ${fmt(s.maxCommandsPct, 1)}% of commands, ${fmt(s.maxCpuPct, 1)}% of CPU — ` +
      `${s.even ? 'within' : 'ABOVE'} ${MAX_MASTER_SHARE_PCT}%`,
    table(rows),
  ];
}
