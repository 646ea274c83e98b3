/**
 * CPU of every process in the pipeline over a window: API and worker from /proc/<pid>/stat, Redis
 * from INFO (used_cpu_user + used_cpu_sys, valid for a Redis we did not start too; on a cluster
 * summed over the masters, each also reported on its own), and the bench
 * process itself (driver + fake Ollama + socket clients) from process.cpuUsage(). Percentages are of
 * one core (a single-threaded process tops out near 100 %, the whole 2-core machine at 200 %).
 */
import type { Redis } from 'ioredis';
import { monitorEventLoopDelay, IntervalHistogram } from 'node:perf_hooks';
import { cpuSeconds, machineBusySeconds } from './procs';
import { callDeltas, redisSnapshots, RedisSnapshot } from './redis-info';
import { Master, shardSpread, ShardSpread } from './shards';
import { round } from './stats';

export interface Pids {
  api: number;
  worker: number;
}

export interface Snapshot {
  at: number;
  api: number;
  worker: number;
  bench: number;
  machine: number;
  /** summed over the nodes */
  redis: RedisSnapshot;
  redisNodes: RedisSnapshot[];
}

export interface CpuWindow {
  seconds: number;
  /** % of one core */
  apiPct: number;
  workerPct: number;
  redisPct: number;
  benchPct: number;
  totalPct: number;
  /** CPU used on this machine by processes that are not part of the bench (other users' work disturbs the numbers) */
  othersPct: number;
  /** CPU seconds used in the window, for per-message / per-event costs */
  apiCpu: number;
  workerCpu: number;
  redisCpu: number;
  benchCpu: number;
  redisCommands: number;
  redisCommandsPerSec: number;
  redisTopCommands: [string, number][];
  /** event-loop delay of the bench process (driver saturation shows here) */
  benchLoopDelayP99Ms: number;
  /** on a cluster: each master's share of the commands and of the Redis CPU */
  redisMasters?: ShardSpread;
}

export class Monitor {
  private loop: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });

  /**
   * @param nodes one plain connection per Redis server (a single Redis, or every master of a cluster)
   * @param masters set on a cluster: windows then also say how the work spread over the masters
   */
  constructor(
    private readonly nodes: Redis[],
    public pids: Pids,
    private readonly masters: Master[] | null = null,
  ) {
    this.loop.enable();
  }

  async snapshot(): Promise<Snapshot> {
    const { total: redis, nodes: redisNodes } = await redisSnapshots(this.nodes);
    const usage = process.cpuUsage();
    const snap = {
      at: performance.now(),
      api: cpuSeconds(this.pids.api),
      worker: cpuSeconds(this.pids.worker),
      bench: (usage.user + usage.system) / 1e6,
      machine: machineBusySeconds(),
      redis,
      redisNodes,
    };
    this.loop.reset();
    return snap;
  }

  window(a: Snapshot, b: Snapshot): CpuWindow {
    const seconds = (b.at - a.at) / 1000;
    const pct = (x: number) => round((x / seconds) * 100, 1);
    const apiCpu = b.api - a.api;
    const workerCpu = b.worker - a.worker;
    const redisCpu = b.redis.cpuSeconds - a.redis.cpuSeconds;
    const benchCpu = b.bench - a.bench;
    const redisCommands = b.redis.totalCommands - a.redis.totalCommands;
    return {
      seconds: round(seconds, 2),
      apiPct: pct(apiCpu),
      workerPct: pct(workerCpu),
      redisPct: pct(redisCpu),
      benchPct: pct(benchCpu),
      totalPct: pct(apiCpu + workerCpu + redisCpu + benchCpu),
      othersPct: Math.max(0, pct(b.machine - a.machine - (apiCpu + workerCpu + redisCpu + benchCpu))),
      apiCpu: round(apiCpu, 3),
      workerCpu: round(workerCpu, 3),
      redisCpu: round(redisCpu, 3),
      benchCpu: round(benchCpu, 3),
      redisCommands,
      redisCommandsPerSec: Math.round(redisCommands / seconds),
      redisTopCommands: callDeltas(a.redis, b.redis).slice(0, 12),
      benchLoopDelayP99Ms: round(this.loop.percentile(99) / 1e6, 1),
      ...(this.masters ? { redisMasters: shardSpread(a.redisNodes, b.redisNodes, seconds, this.masters) } : {}),
    };
  }

  /** Redis only, without touching the event-loop histogram a phase's own window may be using. */
  async redisNodes(): Promise<{ at: number; nodes: RedisSnapshot[] }> {
    return { at: performance.now(), nodes: (await redisSnapshots(this.nodes)).nodes };
  }

  stop(): void {
    this.loop.disable();
  }
}

/**
 * Names the bottleneck of a window: a Node process is single-threaded for JS, Redis for commands,
 * so one near a full core is saturated; when all together use most of the two cores the machine
 * itself is the limit, and the largest consumer is named.
 */
export function bottleneck(w: CpuWindow, cores: number): string {
  const parts: [string, number][] = [
    ['API process', w.apiPct],
    ['worker process', w.workerPct],
    ['redis-server', w.redisPct],
    ['bench driver (clients + fake Ollama)', w.benchPct],
  ];
  if (w.othersPct >= 20) parts.push(['OTHER processes on the machine', w.othersPct]);
  parts.sort((x, y) => y[1] - x[1]);
  const [top, topPct] = parts[0];
  const used = w.totalPct + w.othersPct;
  const machine = used >= cores * 100 * 0.85;
  const machineText = `machine ${Math.round(used)}% of ${cores * 100}%${w.othersPct >= 5 ? `, ${w.othersPct}% of it not ours` : ''}`;
  const saturated = parts.filter(([n, p]) => p >= 85 && !n.startsWith('OTHER')).map(([n, p]) => `${n} ${p}%`);
  if (saturated.length) return `${saturated.join(', ')} of a core (saturated); ${machineText}`;
  if (machine) return `machine CPU saturated (${machineText}); largest: ${top} ${topPct}%`;
  return `nothing saturated (largest: ${top} ${topPct}%; ${machineText})`;
}

/** Other processes above this share of a core make a measurement "disturbed". */
export const DISTURBED_PCT = 15;

/**
 * Runs a measurement up to `tries` times while other processes on the machine (not ours) used more
 * than DISTURBED_PCT of a core during it, and keeps the least disturbed result. On a shared machine
 * this keeps one burst of someone else's work from deciding a number; every result still carries
 * its own `othersPct`.
 */
export async function leastDisturbed<T>(
  tries: number,
  run: () => Promise<T>,
  othersOf: (result: T) => number,
  log: (line: string) => void,
  what: string,
): Promise<T> {
  let best: T | null = null;
  for (let i = 1; i <= tries; i++) {
    const result = await run();
    if (best === null || othersOf(result) < othersOf(best)) best = result;
    if (othersOf(best) < DISTURBED_PCT) break;
    if (i < tries) log(`${what}: other processes used ${othersOf(result)}% of a core meanwhile; measuring again (${i + 1}/${tries})`);
  }
  return best as T;
}
