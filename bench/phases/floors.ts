/**
 * FLOORS — what the parts of the chosen stack cost on this machine by themselves, with none of the
 * app's logic around them: a bare node:http JSON POST, an ioredis XADD + XREAD of an event-sized
 * entry, a Socket.IO packet to a one-socket room, and a reply streamed through the official
 * `ollama` client from the fake. Each part runs in a child process of its own (bench/floors/*.ts)
 * while the bench drives it, and is measured in CPU µs per unit on each side (the part, Redis,
 * and the bench's clients / fake Ollama).
 *
 * Their sums are the least CPU a message and a token event can cost on this stack: the pipeline
 * adds history, turn order, idempotency and the session log on top. Against the targets' budget
 * (cores ÷ rate) that says whether a target is reachable here at all.
 */
import http from 'node:http';
import { io, Socket } from 'socket.io-client';
import { FloorChild, FloorCounters } from '../lib/floor-child';
import type { BenchEnv } from '../lib/env';
import { MODEL } from '../lib/fake';
import { Monitor } from '../lib/monitor';
import { redisTotal } from '../lib/redis-info';
import { round, sleep, table } from '../lib/stats';
import type { PhaseContext } from './context';
import { LatencyLoad, runLatency } from './latency';

export interface FloorPart {
  /** what one unit is */
  unit: string;
  units: number;
  seconds: number;
  /** CPU µs per unit: the part's own process, Redis, and the bench process (clients, fake Ollama) */
  partUs: number;
  redisUs: number;
  benchUs: number;
  totalUs: number;
  /** set when the window was not clean (the reader fell behind, packets missing) */
  note?: string;
}

export interface FloorsResult {
  http: FloorPart;
  /** the same POST through NestJS + Express + helmet + the app's ValidationPipe (bench/floors/nest-http-server.ts) */
  nestHttp: FloorPart;
  redisEvent: FloorPart;
  socketEvent: FloorPart;
  ollamaToken: FloorPart;
  ollamaReply: FloorPart;
  /** the same reply through the client's default transport (global fetch), for comparison */
  ollamaReplyFetch: FloorPart;
  /** the fewest events a message has: chat.user_message, chat.started, one chat.delta, chat.completed */
  eventsPerMessage: number;
  tokensPerReply: number;
  /** least CPU of one token event (model chunk read, XADD + XREAD, socket packet) */
  perEvent: FloorSum;
  /** least CPU of one complete message (HTTP send, model request + reply, its events) */
  perMessage: FloorSum;
  cores: number;
  /**
   * The latency phase run against a bare pipeline of the same parts (bench/floors/bare-api.ts and
   * bare-worker.ts): HTTP → XADD → XREADGROUP → ollama client → XADD per chunk → XREAD → Socket.IO.
   * What it adds over the direct client is the least this stack's hops add on this machine.
   */
  bareLatency?: LatencyLoad[];
}

/** A sum of floors: with the bench's clients and fake Ollama (all on this box), and the server side alone. */
export interface FloorSum {
  totalUs: number;
  /** without the bench process: what the server side (app processes + Redis) cannot go below */
  serverUs: number;
  /** what the cores allow at those costs */
  maxPerSec: number;
  maxPerSecServerOnly: number;
}

function floorSum(cores: number, parts: [FloorPart, number][]): FloorSum {
  const totalUs = parts.reduce((sum, [p, times]) => sum + p.totalUs * times, 0);
  const serverUs = parts.reduce((sum, [p, times]) => sum + (p.partUs + p.redisUs) * times, 0);
  return {
    totalUs: round(totalUs, 1),
    serverUs: round(serverUs, 1),
    maxPerSec: Math.round((cores * 1e6) / totalUs),
    maxPerSecServerOnly: Math.round((cores * 1e6) / serverUs),
  };
}

const EVENTS_PER_MESSAGE = 4;
const SOCKETS = 200;

export async function runFloors(ctx: PhaseContext): Promise<FloorsResult> {
  const { config, log } = ctx;
  const seconds = config.mode === 'quick' ? 2 : 4;
  const warmup = config.mode === 'quick' ? 1 : 2;
  const tokensPerReply = config.throughput.reply.tokens;

  const httpPart = await floorHttp('http-server.ts', seconds, warmup);
  log(`floor http: ${fmtPart(httpPart)}`);
  const nestHttp = await floorHttp('nest-http-server.ts', seconds, warmup);
  log(`floor http through the framework: ${fmtPart(nestHttp)}`);
  const redisEvent = await floorRedis(ctx, seconds, warmup);
  log(`floor redis: ${fmtPart(redisEvent)}`);
  const socketEvent = await floorSocket(seconds, warmup);
  log(`floor socket.io: ${fmtPart(socketEvent)}`);
  const ollamaToken = await floorOllama(
    ctx,
    seconds,
    warmup,
    { streams: config.fanout.sessions, tokens: 50, delayMs: 4, transport: 'node-http' },
    'token',
  );
  log(`floor ollama stream: ${fmtPart(ollamaToken)}`);
  const ollamaReply = await floorOllama(
    ctx,
    seconds,
    warmup,
    { streams: 64, tokens: tokensPerReply, delayMs: 0, transport: 'node-http' },
    'reply',
  );
  log(`floor ollama reply: ${fmtPart(ollamaReply)}`);
  const ollamaReplyFetch = await floorOllama(
    ctx,
    seconds,
    warmup,
    { streams: 64, tokens: tokensPerReply, delayMs: 0, transport: 'fetch' },
    'reply',
  );
  log(`floor ollama reply (global fetch): ${fmtPart(ollamaReplyFetch)}`);

  return {
    http: httpPart,
    nestHttp,
    redisEvent,
    socketEvent,
    ollamaToken,
    ollamaReply,
    ollamaReplyFetch,
    eventsPerMessage: EVENTS_PER_MESSAGE,
    tokensPerReply,
    perEvent: floorSum(config.cores, [
      [ollamaToken, 1],
      [redisEvent, 1],
      [socketEvent, 1],
    ]),
    perMessage: floorSum(config.cores, [
      [httpPart, 1],
      [ollamaReply, 1],
      [redisEvent, EVENTS_PER_MESSAGE],
      [socketEvent, EVENTS_PER_MESSAGE],
    ]),
    cores: config.cores,
    bareLatency: await bareLatency(ctx),
  };
}

async function bareLatency(ctx: PhaseContext): Promise<LatencyLoad[]> {
  const { env, config, log } = ctx;
  const streams = { incoming: `bench:${config.runTag}:bare:in`, outgoing: `bench:${config.runTag}:bare:out` };
  const api = await FloorChild.start('bare-api.ts', { redisUrl: env.redisUrl, ...streams });
  const worker = await FloorChild.start('bare-worker.ts', {
    redisUrl: env.redisUrl,
    host: env.fake.url,
    model: MODEL,
    group: 'bare',
    ...streams,
  }).catch(async (err: Error) => {
    await api.child.close();
    throw err;
  });
  const monitor = new Monitor(env.nodes, { api: api.child.pid, worker: worker.child.pid });
  try {
    const bareEnv = Object.create(env) as BenchEnv;
    bareEnv.apiUrl = `http://127.0.0.1:${api.ready.port}`;
    log('floor latency: the latency phase against a bare pipeline of the same parts');
    return await runLatency({ ...ctx, env: bareEnv, monitor, log: (line) => log(`bare pipeline: ${line}`) });
  } finally {
    monitor.stop();
    await Promise.all([api.child.close(), worker.child.close()]);
    await env.redis.del(streams.incoming, streams.outgoing);
  }
}

function fmtPart(p: FloorPart): string {
  return `${p.units} ${p.unit}s in ${p.seconds} s: ${p.partUs} µs part + ${p.redisUs} µs redis + ${p.benchUs} µs bench = ${p.totalUs} µs per ${p.unit}`;
}

interface Load {
  start(): void;
  /** stops the load; resolves once it is quiet */
  stop(): Promise<void>;
}

/**
 * One warm-up window (discarded), then the measured one. `units` picks the count from the child's
 * counters; `onWindow` is called around the measured window only.
 */
async function measure(
  ctx: PhaseContext | null,
  child: FloorChild,
  load: Load | null,
  seconds: number,
  warmup: number,
  unit: string,
  units: (c: FloorCounters) => number,
  onWindow?: { start(): void; stop(): void },
): Promise<FloorPart> {
  load?.start();
  child.begin();
  await sleep(warmup * 1000);
  await child.end();
  const redisBefore = ctx ? await redisTotal(ctx.env.nodes) : null;
  const benchBefore = process.cpuUsage();
  const t0 = performance.now();
  onWindow?.start();
  child.begin();
  await sleep(seconds * 1000);
  const counters = await child.end();
  onWindow?.stop();
  const bench = process.cpuUsage(benchBefore);
  const elapsed = (performance.now() - t0) / 1000;
  const redisAfter = ctx ? await redisTotal(ctx.env.nodes) : null;
  await load?.stop();
  const n = units(counters);
  if (!(n > 0)) throw new Error(`floor ${child.name}: nothing was counted (${JSON.stringify(counters)})`);
  const us = (cpuSeconds: number) => round((cpuSeconds * 1e6) / n, 1);
  const partUs = us(counters.cpuSeconds);
  const redisUs = redisBefore && redisAfter ? us(redisAfter.cpuSeconds - redisBefore.cpuSeconds) : 0;
  const benchUs = us((bench.user + bench.system) / 1e6);
  return { unit, units: n, seconds: round(elapsed, 2), partUs, redisUs, benchUs, totalUs: round(partUs + redisUs + benchUs, 1) };
}

async function floorHttp(file: string, seconds: number, warmup: number): Promise<FloorPart> {
  const { child, ready } = await FloorChild.start(file, {});
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const body = JSON.stringify({ sessionId: '3f0c8a52-6f8e-4a53-9d7e-0b6f1f7c2a10', content: 'bench floor 4 0' });
  let running = false;
  const loops: Promise<void>[] = [];
  const post = () =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: ready.port,
          path: '/chat/send',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          res.resume();
          res.on('end', resolve);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const load: Load = {
    start: () => {
      running = true;
      for (let i = 0; i < 16; i++) {
        loops.push(
          (async () => {
            while (running) await post();
          })(),
        );
      }
    },
    stop: async () => {
      running = false;
      await Promise.all(loops);
      agent.destroy();
    },
  };
  try {
    return await measure(null, child, load, seconds, warmup, 'request', (c) => c.requests);
  } finally {
    await child.close();
  }
}

async function floorRedis(ctx: PhaseContext, seconds: number, warmup: number): Promise<FloorPart> {
  const stream = `bench:${ctx.config.runTag}:floor`;
  const { child } = await FloorChild.start('redis-stream.ts', { redisUrl: ctx.env.redisUrl, writers: 64, stream });
  try {
    let read = 0;
    const part = await measure(ctx, child, null, seconds, warmup, 'event', (c) => {
      read = c.read;
      return c.written;
    });
    // The reader must have kept up, or the XREAD share of the cost is missing.
    if (read < part.units * 0.95) part.note = `the reader read ${read} of ${part.units} entries`;
    return part;
  } finally {
    await child.close();
    await ctx.env.redis.del(stream);
  }
}

async function floorSocket(seconds: number, warmup: number): Promise<FloorPart> {
  // 10,000 packets/s across 200 rooms: well below saturation, so the cost is not inflated by queueing.
  const { child, ready } = await FloorChild.start('socketio-server.ts', { ratePerSec: 10_000 });
  const sockets: Socket[] = [];
  let received = 0;
  try {
    for (let i = 0; i < SOCKETS; i++) {
      const socket = io(`http://127.0.0.1:${ready.port}`, {
        transports: ['websocket'],
        query: { room: `r${i}` },
        reconnection: false,
        forceNew: true,
      });
      socket.on('chat.delta', () => received++);
      sockets.push(socket);
    }
    await Promise.all(
      sockets.map((s) => (s.connected ? Promise.resolve() : new Promise<void>((resolve) => s.once('connect', () => resolve())))),
    );
    await sleep(200); // the server's join of the last room
    let before = 0;
    let delivered = 0;
    const part = await measure(null, child, null, seconds, warmup, 'event', (c) => c.emitted, {
      start: () => (before = received),
      stop: () => (delivered = received - before),
    });
    // Below saturation every packet arrives within the window; if not, counting emitted packets would flatter the cost.
    if (delivered < part.units * 0.95) part.note = `${delivered} of ${part.units} packets arrived in the window`;
    return part;
  } finally {
    for (const s of sockets) s.disconnect();
    await child.close();
  }
}

async function floorOllama(
  ctx: PhaseContext,
  seconds: number,
  warmup: number,
  shape: { streams: number; tokens: number; delayMs: number; transport: 'node-http' | 'fetch' },
  unit: 'token' | 'reply',
): Promise<FloorPart> {
  const { child } = await FloorChild.start('ollama-streams.ts', { host: ctx.env.fake.url, model: MODEL, ...shape });
  try {
    // The fake Ollama lives in the bench process: its CPU is the bench column.
    return await measure(null, child, null, seconds, warmup, unit, (c) => (unit === 'token' ? c.tokens : c.replies));
  } finally {
    await child.close();
  }
}

/** What the app itself measured in the same run, to set beside the floors. */
export interface MeasuredBeside {
  /** CPU µs of one complete message at the highest sustained step (api + worker + redis + bench) */
  perMessageUs?: { us: number; atPerSec: number };
  /** CPU µs of one delivered token event with one event per token, at the highest offered step */
  perEventUs?: { us: number; atPerSec: number };
}

export function renderFloors(
  f: FloorsResult,
  measured: MeasuredBeside,
  targets: { messagesPerSec: number; eventsPerSec: number },
): string[] {
  const lines: string[] = [];
  lines.push(
    `FLOORS — the stack's parts alone on this machine, each in a process of its own, none of the app's logic: CPU µs per unit (part + Redis + the bench's clients / fake Ollama)`,
  );
  const rows = [['part', 'unit', 'n', 'part µs', 'redis µs', 'bench µs', 'total µs', 'note']];
  const row = (name: string, p: FloorPart) =>
    rows.push([name, p.unit, fmtCount(p.units), String(p.partUs), String(p.redisUs), String(p.benchUs), String(p.totalUs), p.note ?? '']);
  row('HTTP POST → 202 JSON, bare node:http, 16 keep-alive clients', f.http);
  row('  the same through NestJS + Express + helmet + ValidationPipe (no app logic)', f.nestHttp);
  row('event XADD (auto-pipelined) + blocking XREAD, ioredis', f.redisEvent);
  row('Socket.IO packet to a one-socket room, 200 sockets', f.socketEvent);
  row('streamed chunk through the ollama client (NodeHttpFetch), 200 streams', f.ollamaToken);
  row(`${f.tokensPerReply}-token reply through the ollama client, 64 streams`, f.ollamaReply);
  row(`  the same with the client's default transport (global fetch)`, f.ollamaReplyFetch);
  lines.push(table(rows));
  const sum = (what: string, x: FloorSum, target: number, beside?: { us: number; atPerSec: number }) => {
    const budget = round((f.cores * 1e6) / target, 1);
    lines.push(
      `  least CPU ${what}: ${x.totalUs} µs (server side alone ${x.serverUs} µs) → at most ${fmtCount(x.maxPerSec)}/s on ${f.cores} cores ` +
        `(${fmtCount(x.maxPerSecServerOnly)}/s if the clients and Ollama cost nothing here); ${fmtCount(target)}/s needs ≤ ${budget} µs` +
        (beside ? `; the app measured ${fmtCount(beside.us)} µs at ${fmtCount(beside.atPerSec)}/s` : ''),
    );
  };
  sum('per token event (1 chunk + XADD/XREAD + packet)', f.perEvent, targets.eventsPerSec, measured.perEventUs);
  sum(
    `per message (POST + ${f.tokensPerReply}-token reply + ${f.eventsPerMessage} × (XADD/XREAD + packet))`,
    f.perMessage,
    targets.messagesPerSec,
    measured.perMessageUs,
  );
  if (f.bareLatency?.length) {
    lines.push(
      '  a bare pipeline of the same parts (HTTP → XADD → XREADGROUP → ollama client → XADD per chunk → XREAD → Socket.IO; nothing else), latency phase settings:',
    );
    const rows2 = [
      [
        'load',
        'floor p50',
        'bare pipeline p50',
        'p99',
        'added p50',
        'p95',
        'p99',
        'HTTP 202 p50',
        'send→fake request p50',
        'fake write→socket p50',
        'lost',
        'api',
        'worker',
        'redis',
        'bench',
      ],
    ];
    for (const l of f.bareLatency) {
      const p = l.pipeline;
      rows2.push([
        `${l.offeredPerSec}/s`,
        `${l.floor.firstToken.p50.toFixed(2)} ms`,
        `${p.firstDelta.p50.toFixed(2)} ms`,
        p.firstDelta.p99.toFixed(2),
        `${l.added.p50.toFixed(2)} ms`,
        l.added.p95.toFixed(2),
        l.added.p99.toFixed(2),
        `${p.accept.p50.toFixed(2)} ms`,
        `${p.beforeModel.p50.toFixed(2)} ms`,
        `${p.afterModel.p50.toFixed(2)} ms`,
        String(p.lost + p.failed + p.wrongContent),
        `${Math.round(p.cpu.apiPct)}%`,
        `${Math.round(p.cpu.workerPct)}%`,
        `${Math.round(p.cpu.redisPct)}%`,
        `${Math.round(p.cpu.benchPct)}%`,
      ]);
    }
    lines.push(table(rows2, '    '));
  }
  return lines;
}

function fmtCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
