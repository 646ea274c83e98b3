/**
 * Overhead latency: time from an HTTP send to the first chat.delta on the session's socket, at
 * several offered loads, beside the floor: the same fake Ollama streamed directly through the
 * official `ollama` client from this process (no API, no Redis, no worker). The difference of the
 * percentiles is what the pipeline adds. With the fake's write hook the pipeline time is also split
 * into: before the model (send → the worker's request reaches the fake), the model's own first-token
 * delay, and after the model (fake writes the first token → it arrives on the socket).
 */
import { Ollama } from 'ollama';
import { openLoop, SessionPool } from '../lib/clients';
import { messageContent, MODEL, nextNonce, ReplyShape } from '../lib/fake';
import { bottleneck, CpuWindow, leastDisturbed } from '../lib/monitor';
import { round, roundSummary, sleep, summarize, Summary } from '../lib/stats';
import type { PhaseContext } from './context';

export interface LatencyLoad {
  offeredPerSec: number;
  floor: { firstToken: Summary; errors: number; achievedPerSec: number };
  pipeline: {
    firstDelta: Summary;
    accept: Summary;
    beforeModel: Summary;
    model: Summary;
    afterModel: Summary;
    offered: number;
    skippedNoFreeSession: number;
    completed: number;
    rejected: number;
    failed: number;
    lost: number;
    wrongContent: number;
    cpu: CpuWindow;
    bottleneck: string;
  };
  added: { p50: number; p95: number; p99: number };
}

export async function runLatency(ctx: PhaseContext): Promise<LatencyLoad[]> {
  const { env, config, log } = ctx;
  const cfg = config.latency;
  const pool = await SessionPool.open(env.apiUrl, `${config.runTag}-lat`, cfg.sessions);
  try {
    const send = () => pool.sendOnFree(cfg.reply);
    log(`latency: warm-up ${cfg.warmupSeconds}s at 100 msg/s (not reported)`);
    await openLoop(100, cfg.warmupSeconds, send);
    await pool.drain(10_000);
    await floorRun(env.fake.url, 50, Math.min(1, cfg.warmupSeconds), cfg.reply);

    const results: LatencyLoad[] = [];
    for (const rate of cfg.loads) {
      const result = await leastDisturbed(
        config.tries,
        () => measureLoad(ctx, pool, rate),
        (r) => r.pipeline.cpu.othersPct,
        log,
        `latency @${rate}/s`,
      );
      results.push(result);
      const fl = result.floor.firstToken;
      const pipe = result.pipeline.firstDelta;
      log(
        `latency @${rate}/s: floor p50 ${fl.p50.toFixed(2)} p99 ${fl.p99.toFixed(2)} ms | pipeline p50 ${pipe.p50.toFixed(2)} p99 ${pipe.p99.toFixed(2)} ms ` +
          `| added p50 ${result.added.p50} p99 ${result.added.p99} ms | n=${pipe.n} skipped=${result.pipeline.skippedNoFreeSession} lost=${result.pipeline.lost}`,
      );
    }
    return results;
  } finally {
    pool.onEnd = null;
    pool.close();
  }
}

async function measureLoad(ctx: PhaseContext, pool: SessionPool, rate: number): Promise<LatencyLoad> {
  const { env, monitor, config } = ctx;
  const cfg = config.latency;
  const send = () => pool.sendOnFree(cfg.reply);
  const floor = await floorRun(env.fake.url, rate, cfg.floorSeconds, cfg.reply);

  const firstDelta: number[] = [];
  const accept: number[] = [];
  const beforeModel: number[] = [];
  const model: number[] = [];
  const afterModel: number[] = [];
  env.fake.resetTracking();
  env.fake.tracking = true;
  pool.resetCounters();
  pool.onEnd = (_s, m) => {
    if (m.acceptedAt !== undefined && m.httpStatus === 202) accept.push(m.acceptedAt - m.sentAt);
    if (m.outcome !== 'completed' || m.firstDeltaAt === undefined) return;
    firstDelta.push(m.firstDeltaAt - m.sentAt);
    const fake = env.fake.firstToken.get(m.nonce);
    if (fake) {
      beforeModel.push(fake.requestAt - m.sentAt);
      model.push(fake.firstWriteAt - fake.requestAt);
      afterModel.push(m.firstDeltaAt - fake.firstWriteAt);
    }
  };
  await sleep(200);
  const a = await monitor.snapshot();
  const loop = await openLoop(rate, cfg.seconds, send);
  const b = await monitor.snapshot();
  const open = await pool.drain(15_000);
  env.fake.tracking = false;
  pool.onEnd = null;
  const c = pool.resetCounters();
  const cpu = monitor.window(a, b);
  const pipe = summarize(firstDelta);
  const fl = floor.firstToken;
  const result: LatencyLoad = {
    offeredPerSec: rate,
    floor: { ...floor, firstToken: roundSummary(fl, 3) },
    pipeline: {
      firstDelta: roundSummary(pipe, 3),
      accept: roundSummary(summarize(accept), 3),
      beforeModel: roundSummary(summarize(beforeModel), 3),
      model: roundSummary(summarize(model), 3),
      afterModel: roundSummary(summarize(afterModel), 3),
      offered: loop.offered,
      skippedNoFreeSession: loop.skipped,
      completed: c.completed,
      rejected: c.rejected,
      failed: c.failed,
      lost: open.filter((m) => m.httpStatus === 202).length,
      wrongContent: c.wrongContent,
      cpu,
      bottleneck: bottleneck(cpu, config.cores),
    },
    added: { p50: round(pipe.p50 - fl.p50, 3), p95: round(pipe.p95 - fl.p95, 3), p99: round(pipe.p99 - fl.p99, 3) },
  };
  env.fake.resetTracking();
  return result;
}

/** The same fake, the same reply, straight through the `ollama` client: time to the first content token. */
async function floorRun(url: string, rate: number, seconds: number, reply: ReplyShape) {
  const samples: number[] = [];
  let errors = 0;
  const pending = new Set<Promise<void>>();
  const one = () => {
    const p = (async () => {
      const t0 = performance.now();
      const client = new Ollama({ host: url });
      const stream = await client.chat({
        model: MODEL,
        messages: [{ role: 'user', content: messageContent(nextNonce(), reply) }],
        stream: true,
      });
      let first = true;
      for await (const part of stream) {
        if (first && part.message?.content) {
          samples.push(performance.now() - t0);
          first = false;
        }
      }
    })().catch(() => {
      errors++;
    });
    pending.add(p);
    void p.finally(() => pending.delete(p));
    return true;
  };
  const loop = await openLoop(rate, seconds, one);
  await Promise.all([...pending]);
  return { firstToken: summarize(samples), errors, achievedPerSec: round(samples.length / loop.elapsed, 1) };
}
