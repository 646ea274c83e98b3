/**
 * Memory across many messages: RSS of the API and worker processes and Redis used_memory, sampled
 * before, at every 1/N of the run, after it and after a short idle. Sessions are a fixed pool that
 * send back to back (closed loop), so each conversation grows to its caps (HISTORY_MAX_MESSAGES,
 * SESSION_EVENTS_MAX_LEN) as long conversations do; what one session costs in Redis is measured at
 * the end, so the ceiling for any number of sessions can be computed.
 */
import { SessionPool } from '../lib/clients';
import { bottleneck, CpuWindow } from '../lib/monitor';
import { rssBytes } from '../lib/procs';
import { redisTotal } from '../lib/redis-info';
import { round, sleep } from '../lib/stats';
import type { PhaseContext } from './context';
import type { Cluster, Redis } from 'ioredis';
import { KeyLayout } from '../../src/event-bus/stream-names';

/**
 * The app runs with the default PARTITIONS (64); the bench reads its keys through the same layout
 * (on a cluster through a Cluster client, which sends each key to its master; memory is summed over
 * the masters).
 */
const LAYOUT = new KeyLayout(64);

async function totalLength(redis: Redis | Cluster, streams: string[]): Promise<number> {
  const lengths = await Promise.all(streams.map((s) => redis.xlen(s)));
  return lengths.reduce((a, b) => a + Number(b), 0);
}

export interface MemorySample {
  label: string;
  messages: number;
  seconds: number;
  apiRss: number;
  workerRss: number;
  redisUsedMemory: number;
  redisRss: number;
  redisKeys: number;
  outgoingLen: number;
  incomingLen: number;
}

export interface MemoryResult {
  messages: number;
  target: number;
  stoppedAtTimeLimit: boolean;
  sessions: number;
  seconds: number;
  messagesPerSec: number;
  completed: number;
  failed: number;
  wrongContent: number;
  lost: number;
  samples: MemorySample[];
  cpu: CpuWindow;
  /** CPU per message with long conversations (history at its cap), to compare with the throughput phase */
  perMessage: { apiCpuUs: number; workerCpuUs: number; redisCpuUs: number; redisCommands: number };
  bottleneck: string;
  growth: {
    apiRssTotal: number;
    workerRssTotal: number;
    redisTotal: number;
    apiRssSecondHalf: number;
    workerRssSecondHalf: number;
    redisSecondHalf: number;
  };
  perSession: { eventsLen: number; eventsBytes: number; messagesBytes: number; orderLen: number; orderBytes: number };
  outgoingBytes: number;
  ceiling: { outgoingBytes: number; perSessionBytes: number; forTheseSessionsBytes: number; assumptions: string };
  verdict: { apiRss: string; workerRss: string; redis: string };
}

export async function runMemory(ctx: PhaseContext): Promise<MemoryResult> {
  const { env, config, log } = ctx;
  const cfg = config.memory;
  const pool = await SessionPool.open(env.apiUrl, `${config.runTag}-mem`, cfg.sessions);
  const samples: MemorySample[] = [];
  const t0 = performance.now();
  let done = 0;
  const sample = async (label: string) => {
    const r = await redisTotal(env.nodes);
    const s: MemorySample = {
      label,
      messages: done,
      seconds: round((performance.now() - t0) / 1000, 1),
      apiRss: rssBytes(env.api.pid),
      workerRss: rssBytes(env.worker.pid),
      redisUsedMemory: r.usedMemory,
      redisRss: r.usedMemoryRss,
      redisKeys: r.keys,
      outgoingLen: await totalLength(
        env.redis,
        LAYOUT.partitions.map((p) => p.outgoing),
      ),
      incomingLen: await totalLength(
        env.redis,
        LAYOUT.partitions.map((p) => p.incoming),
      ),
    };
    samples.push(s);
    return s;
  };
  try {
    await sample('before');
    const cpuStart = await ctx.monitor.snapshot();
    const every = Math.max(1, Math.floor(cfg.messages / cfg.checkpoints));
    let sent = 0;
    let nextCheckpoint = every;
    let checkpointDue = false;
    let checkpointLabel = '';
    let lastLog = performance.now();
    let stoppedEarly = false;
    pool.onEnd = () => {
      done++;
      if (done >= nextCheckpoint) {
        checkpointLabel = `${Math.round((nextCheckpoint / cfg.messages) * 100)}%`;
        nextCheckpoint += every;
        checkpointDue = true;
      }
      if (sent < cfg.messages && pool.sendOnFree(cfg.reply)) sent++;
    };
    while (sent < cfg.messages && pool.sendOnFree(cfg.reply)) sent++;
    const deadline = t0 + cfg.maxSeconds * 1000;
    while (done < cfg.messages) {
      if (performance.now() > deadline && sent < cfg.messages) {
        log(`memory: time limit of ${cfg.maxSeconds} s reached after ${done} messages; finishing those in flight`);
        stoppedEarly = true;
        sent = cfg.messages; // no new sends
      }
      await sleep(20);
      if (checkpointDue) {
        checkpointDue = false;
        const s = await sample(checkpointLabel);
        if (performance.now() - lastLog > 5000) {
          lastLog = performance.now();
          log(
            `memory: ${done}/${cfg.messages} messages, api ${mbs(s.apiRss)}, worker ${mbs(s.workerRss)}, redis ${mbs(s.redisUsedMemory)}`,
          );
        }
      }
      if (pool.inFlight === 0 && sent >= cfg.messages) break;
    }
    const open = await pool.drain(15_000);
    const cpuEnd = await ctx.monitor.snapshot();
    const seconds = (performance.now() - t0) / 1000;
    const c = pool.counters;
    const cpu = ctx.monitor.window(cpuStart, cpuEnd);
    const n = Math.max(1, c.completed);
    const perMessage = {
      apiCpuUs: Math.round((cpu.apiCpu / n) * 1e6),
      workerCpuUs: Math.round((cpu.workerCpu / n) * 1e6),
      redisCpuUs: Math.round((cpu.redisCpu / n) * 1e6),
      redisCommands: round(cpu.redisCommands / n, 1),
    };
    await sample('after');
    await sleep(cfg.idleSeconds * 1000);
    await sample(`after +${cfg.idleSeconds} s idle`);

    // What one long conversation costs in Redis, measured on the first session.
    const sid = pool.sessions[0].id;
    const keys = LAYOUT.session(sid);
    const usage = async (k: string) => Number((await env.redis.call('MEMORY', 'USAGE', k, 'SAMPLES', '0')) ?? 0);
    const perSession = {
      eventsLen: Number(await env.redis.xlen(keys.events)),
      eventsBytes: await usage(keys.events),
      messagesBytes: await usage(keys.hash),
      orderLen: Number(await env.redis.llen(keys.order)),
      orderBytes: await usage(keys.order),
    };
    let outgoingBytes = 0;
    for (const p of LAYOUT.partitions) outgoingBytes += await usage(p.outgoing);

    const first = samples[0];
    const last = samples[samples.length - 2]; // 'after'
    const run = samples.slice(1, -2); // the checkpoints
    const half = run.filter((x) => x.messages <= done / 2);
    const secondHalf = run.filter((x) => x.messages > done / 2);
    const mid = half.length ? half[half.length - 1] : first;
    const peak = (list: MemorySample[], k: 'apiRss' | 'workerRss') => Math.max(...list.map((x) => x[k]));
    const growth = {
      apiRssTotal: last.apiRss - first.apiRss,
      workerRssTotal: last.workerRss - first.workerRss,
      redisTotal: last.redisUsedMemory - first.redisUsedMemory,
      apiRssSecondHalf: last.apiRss - mid.apiRss,
      workerRssSecondHalf: last.workerRss - mid.workerRss,
      redisSecondHalf: last.redisUsedMemory - mid.redisUsedMemory,
    };
    // RSS moves with every garbage collection, so compare peaks: bounded when the second half never
    // goes higher than the first half did (10 % + 8 MB of slack).
    const rssVerdict = (k: 'apiRss' | 'workerRss') => {
      if (!half.length || !secondHalf.length) return 'n/a (too few checkpoints)';
      const p1 = Math.max(first[k], peak(half, k));
      const p2 = peak(secondHalf, k);
      const text = `peak ${mbs(p1)} in the first half, ${mbs(p2)} in the second; ${signed(last[k] - first[k])} from before to after`;
      return p2 <= p1 * 1.1 + 8 * 1048576 ? `flat (${text})` : `growing (${text})`;
    };

    // Redis grows until the caps are reached; what the caps allow, from the measured entry sizes.
    const env2 = config.appEnv;
    const streamMaxLen = Number(env2.STREAM_MAX_LEN ?? 100_000);
    const sessionEventsMaxLen = Number(env2.SESSION_EVENTS_MAX_LEN ?? 5000);
    const maxTurns = Math.floor(Number(env2.HISTORY_MAX_MESSAGES ?? 200) / 2);
    const perEvent = perSession.eventsLen ? perSession.eventsBytes / perSession.eventsLen : 0;
    const perTurn = perSession.orderLen ? (perSession.messagesBytes + perSession.orderBytes) / perSession.orderLen : 0;
    const outgoingPerEntry = last.outgoingLen ? outgoingBytes / last.outgoingLen : 0;
    const sessionCeiling = perEvent * sessionEventsMaxLen + perTurn * maxTurns;
    const ceiling = {
      outgoingBytes: Math.round(outgoingPerEntry * streamMaxLen),
      perSessionBytes: Math.round(sessionCeiling),
      forTheseSessionsBytes: Math.round(outgoingPerEntry * streamMaxLen + sessionCeiling * cfg.sessions),
      assumptions: `STREAM_MAX_LEN=${streamMaxLen}, SESSION_EVENTS_MAX_LEN=${sessionEventsMaxLen}, ${maxTurns} turns of history; entry sizes as measured`,
    };
    // Redis grows (almost) monotonically until the caps are reached: flat when the last 30 % of the
    // run added under a tenth of the run's growth (steady growth would add 30 %), or under 1 MB.
    const tailStart = run.filter((x) => x.messages <= done * 0.7).slice(-1)[0] ?? mid;
    const lastPart = last.redisUsedMemory - tailStart.redisUsedMemory;
    const redisFlat = lastPart <= Math.max(0.1 * growth.redisTotal, 1048576);
    const redisText =
      `${signed(lastPart)} over the last 30 % of the run, ${signed(growth.redisTotal)} overall; caps allow ≈ ${mbs(ceiling.forTheseSessionsBytes)} for ${cfg.sessions} sessions ` +
      `(${mbs(ceiling.outgoingBytes)} chat:outgoing + ${mbs(ceiling.perSessionBytes)} per session kept within HISTORY_TTL_SECONDS) on top of what earlier phases left`;
    const redisVerdict = redisFlat ? `flat at its caps (${redisText})` : `growing (${redisText})`;
    const result: MemoryResult = {
      messages: done,
      target: cfg.messages,
      stoppedAtTimeLimit: stoppedEarly,
      sessions: cfg.sessions,
      seconds: round(seconds, 1),
      messagesPerSec: round(done / seconds, 1),
      completed: c.completed,
      failed: c.failed,
      wrongContent: c.wrongContent,
      lost: open.filter((m) => m.httpStatus === 202).length,
      samples,
      cpu,
      perMessage,
      bottleneck: bottleneck(cpu, config.cores),
      growth,
      perSession,
      outgoingBytes,
      ceiling,
      verdict: { apiRss: rssVerdict('apiRss'), workerRss: rssVerdict('workerRss'), redis: redisVerdict },
    };
    log(
      `memory: ${done} messages in ${result.seconds}s (${result.messagesPerSec}/s); api ${result.verdict.apiRss}; worker ${result.verdict.workerRss}; redis ${result.verdict.redis}`,
    );
    return result;
  } finally {
    pool.onEnd = null;
    pool.close();
  }
}

const mbs = (b: number) => `${(b / 1048576).toFixed(1)} MB`;
const signed = (b: number) => `${b >= 0 ? '+' : '-'}${(Math.abs(b) / 1048576).toFixed(1)} MB`;
