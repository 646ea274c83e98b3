/**
 * Fan-out: many generations streaming at once (one session each, one socket each), every session
 * starting its next message as soon as the last completed. Counts the chat.delta events and the
 * tokens in them that reach the sockets per second, the tokens the fake wrote per second (what was
 * offered), and the delivery delay of every token: from the moment the fake Ollama wrote it to the
 * moment it arrived on a socket (both clocks are this process's). Steps raise the offered rate by
 * shortening the delay between tokens (every message lasts about the same time); a step keeps up
 * when the sockets receive ≥ 95 % of what the fake wrote, with a delay p99 ≤ 200 ms, nothing lost.
 */
import { SessionPool } from '../lib/clients';
import { bottleneck, CpuWindow, leastDisturbed } from '../lib/monitor';
import { round, roundSummary, sleep, summarize, Summary } from '../lib/stats';
import type { ReplyShape } from '../lib/fake';
import type { PhaseContext } from './context';

export interface FanoutResult {
  coalesceMs: number;
  sessions: number;
  tokensPerMessage: number;
  tokenDelayMs: number;
  seconds: number;
  offeredTokensPerSec: number;
  fakeWrittenTokensPerSec: number;
  deliveredEventsPerSec: number;
  deliveredTokensPerSec: number;
  tokensPerEvent: number;
  meanConcurrentGenerations: number;
  deliveryDelay: Summary;
  completed: number;
  failed: number;
  wrongContent: number;
  lost: number;
  cpu: CpuWindow;
  perEvent: { apiCpuUs: number; workerCpuUs: number; redisCpuUs: number; benchCpuUs: number; redisCommands: number };
  bottleneck: string;
  /** delivered ≥ 95 % of what the fake wrote, delay p99 ≤ MAX_P99_MS, nothing lost */
  keptUp: boolean;
  why: string;
}

/** One pool of sessions per DELTA_COALESCE_MS value; one step per token delay (offered rate). */
export async function runFanout(ctx: PhaseContext, coalesceMs: number): Promise<FanoutResult[]> {
  const { env, config } = ctx;
  const cfg = config.fanout;
  const pool = await SessionPool.open(env.apiUrl, `${config.runTag}-fan${coalesceMs}`, cfg.sessions);
  const out: FanoutResult[] = [];
  try {
    for (const delayMs of cfg.delaysMs) {
      const tokens = Math.max(10, Math.round(cfg.messageMs / delayMs));
      out.push(
        await leastDisturbed(
          config.tries,
          () => step(ctx, pool, coalesceMs, { tokens, delayMs }),
          (x) => x.cpu.othersPct,
          ctx.log,
          `fan-out ${delayMs} ms`,
        ),
      );
      await sleep(300);
    }
    return out;
  } finally {
    pool.close();
  }
}

async function step(ctx: PhaseContext, pool: SessionPool, coalesceMs: number, reply: ReplyShape): Promise<FanoutResult> {
  const { env, monitor, config, log } = ctx;
  const cfg = config.fanout;
  const delays: number[] = [];
  let measuring = false;
  let running = true;
  try {
    env.fake.resetTracking();
    env.fake.tracking = true;
    const written = env.fake.writtenAt;
    pool.onTokens = (tokens, at) => {
      for (const t of tokens) {
        const w = written.get(t);
        if (w === undefined) continue;
        if (measuring) delays.push(at - w);
        written.delete(t);
      }
    };
    pool.onEnd = () => {
      if (running) pool.sendOnFree(reply);
    };
    while (pool.sendOnFree(reply));
    await sleep(cfg.warmupSeconds * 1000);

    pool.resetCounters();
    env.fake.tokensWritten = 0;
    const concurrency: number[] = [];
    const sampler = setInterval(() => concurrency.push(pool.inFlight), 100);
    measuring = true;
    const a = await monitor.snapshot();
    await sleep(cfg.seconds * 1000);
    const b = await monitor.snapshot();
    measuring = false;
    clearInterval(sampler);
    const c = pool.resetCounters();
    const fakeWritten = env.fake.tokensWritten;
    running = false;
    const open = await pool.drain(reply.tokens * reply.delayMs * 3 + 15_000);
    const cpu = monitor.window(a, b);
    const events = Math.max(1, c.deltaEvents);
    const result: FanoutResult = {
      coalesceMs,
      sessions: cfg.sessions,
      tokensPerMessage: reply.tokens,
      tokenDelayMs: reply.delayMs,
      seconds: cpu.seconds,
      offeredTokensPerSec: Math.round((cfg.sessions * 1000) / Math.max(1, reply.delayMs)),
      fakeWrittenTokensPerSec: Math.round(fakeWritten / cpu.seconds),
      deliveredEventsPerSec: Math.round(c.deltaEvents / cpu.seconds),
      deliveredTokensPerSec: Math.round(c.deltaTokens / cpu.seconds),
      tokensPerEvent: round(c.deltaTokens / events, 2),
      meanConcurrentGenerations: round(concurrency.reduce((x, y) => x + y, 0) / Math.max(1, concurrency.length), 1),
      deliveryDelay: roundSummary(summarize(delays), 2),
      completed: c.completed,
      failed: c.failed,
      wrongContent: c.wrongContent,
      lost: open.filter((m) => m.httpStatus === 202).length,
      cpu,
      perEvent: {
        apiCpuUs: round((cpu.apiCpu / events) * 1e6, 1),
        workerCpuUs: round((cpu.workerCpu / events) * 1e6, 1),
        redisCpuUs: round((cpu.redisCpu / events) * 1e6, 1),
        benchCpuUs: round((cpu.benchCpu / events) * 1e6, 1),
        redisCommands: round(cpu.redisCommands / events, 2),
      },
      bottleneck: bottleneck(cpu, config.cores),
      keptUp: false,
      why: '',
    };
    const why: string[] = [];
    if (result.deliveredTokensPerSec < 0.95 * result.fakeWrittenTokensPerSec)
      why.push(`delivered ${result.deliveredTokensPerSec} < 95% of the ${result.fakeWrittenTokensPerSec} tokens/s written`);
    if (result.deliveryDelay.p99 > MAX_P99_MS) why.push(`delay p99 ${result.deliveryDelay.p99} ms > ${MAX_P99_MS} ms`);
    if (result.lost + result.failed + result.wrongContent > 0) why.push('messages lost or wrong');
    result.keptUp = why.length === 0;
    result.why = why.join('; ');
    log(
      `fan-out (DELTA_COALESCE_MS=${coalesceMs}, ${cfg.sessions} sessions × ${Math.round(1000 / reply.delayMs)} tokens/s): ${result.deliveredEventsPerSec} events/s, ${result.deliveredTokensPerSec} tokens/s ` +
        `(fake wrote ${result.fakeWrittenTokensPerSec}/s), delay p50 ${result.deliveryDelay.p50} p99 ${result.deliveryDelay.p99} ms → ${result.keptUp ? 'kept up' : `fell behind (${result.why})`}; ${result.bottleneck}`,
    );
    return result;
  } finally {
    running = false;
    env.fake.tracking = false;
    env.fake.resetTracking();
    pool.onTokens = null;
    pool.onEnd = null;
    await pool.drain(5000);
  }
}

/** Delivery delay p99 above which a step counts as not keeping up. */
export const MAX_P99_MS = 200;
