/**
 * `npm run bench` (full, ~5 min on 2 cores) and `npm run bench -- --quick` (~40 s).
 *
 * Starts what it needs (redis-server on a free port unless REDIS_URL is given, or with --cluster a
 * local 3-master Redis Cluster; the fake Ollama of the test tree inside this process; the API and a
 * worker as child processes built like dist/), drives them with real socket.io-client connections
 * and HTTP sends, prints a table and writes the whole result as JSON to
 * bench/results/<timestamp>.json. See bench/NOTES.md for what the numbers mean and what they found.
 *
 * Options (all optional):
 *   --quick                     short run (5,000 messages for memory, short phases)
 *   --loads 50,200,500          offered loads (msg/s) of the latency phase
 *   --messages N                messages of the memory phase (full: 100000, quick: 5000)
 *   --concurrency N             WORKER_CONCURRENCY (default 256, the maximum; fan-out needs ≥ sessions)
 *   --coalesce N                DELTA_COALESCE_MS for latency/throughput/memory (default 30, the app default)
 *   --fanout-coalesce 30,0      DELTA_COALESCE_MS values of the fan-out phase (full: 30,0; quick: 0)
 *   --fanout-sessions N         concurrent generations in the fan-out (default 200)
 *   --fanout-delays-ms 20,8,4   delays between fan-out tokens, one step each (full: 20,8,4 → 200 sessions
 *                               × 50/125/250 tokens/s = 10,000/25,000/50,000 tokens/s offered; quick: 4)
 *   --fanout-message-ms N       how long each fan-out reply streams (full 1600, quick 400)
 *   --phases floors,latency,throughput,memory,fanout   run only some phases
 *   --cluster                   run the app on the bench's own 3-master Redis Cluster (REDIS_CLUSTER_NODES)
 *                               and report each master's share of the commands and Redis CPU per phase;
 *                               the floors phase still runs on a single redis-server of its own
 *   --no-build                  never compile src/ (default: compile it into bench/.dist when it is newer than dist/)
 *   --profile                   CPU-profile the API and worker (inspector protocol) around each phase and
 *                               print where their CPU went; the .cpuprofile files go to bench/results/
 *                               (profiling slows them down: numbers of such a run are not comparable)
 *   --wait-idle S               first wait up to S seconds for other processes to use < 15% of a core
 *   --out FILE                  JSON result path (default bench/results/<ISO timestamp>.json)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisServer } from '../test/support/redis-server';
import { BenchEnv } from './lib/env';
import { Monitor } from './lib/monitor';
import { killAllSync, machineBusySeconds, useDist, useNodeArgs } from './lib/procs';
import { CpuProfile, ProfileSummary, renderProfile, summarizeProfileData } from './profile-summary';
import { InspectorSession } from './lib/profiler';
import type { BenchProcess } from './lib/procs';
import { redisVersion } from './lib/redis-info';
import { Master, MAX_MASTER_SHARE_PCT, renderSpread, shardSpread, ShardSpread } from './lib/shards';
import { fmt, fmtInt, mb, table } from './lib/stats';
import type { BenchConfig, PhaseContext } from './phases/context';
import { FanoutResult, MAX_P99_MS, runFanout } from './phases/fanout';
import { FloorsResult, MeasuredBeside, renderFloors, runFloors } from './phases/floors';
import { LatencyLoad, runLatency } from './phases/latency';
import { MemoryResult, runMemory } from './phases/memory';
import { runThroughput, ThroughputResult } from './phases/throughput';

const ROOT = process.cwd();
const started = Date.now();
const log = (line: string) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${line}\n`);

// ------------------------------------------------------------------------------------------------
// Configuration
// ------------------------------------------------------------------------------------------------

const { values: args } = parseArgs({
  args: process.argv.slice(2),
  strict: true,
  options: {
    quick: { type: 'boolean', default: false },
    loads: { type: 'string' },
    messages: { type: 'string' },
    concurrency: { type: 'string' },
    coalesce: { type: 'string' },
    'fanout-coalesce': { type: 'string' },
    'fanout-sessions': { type: 'string' },
    'fanout-delays-ms': { type: 'string' },
    'fanout-message-ms': { type: 'string' },
    phases: { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    'wait-idle': { type: 'string' },
    profile: { type: 'boolean', default: false },
    cluster: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});

const quick = args.quick ?? false;
const int = (v: string | undefined, fallback: number) => (v === undefined ? fallback : Number.parseInt(v, 10));
const ints = (v: string | undefined, fallback: number[]) => (v === undefined ? fallback : v.split(',').map((x) => Number.parseInt(x, 10)));
const phases = new Set((args.phases ?? 'floors,latency,throughput,memory,fanout').split(','));

const concurrency = int(args.concurrency, 256);
/** Masters of the --cluster run: issue 18's figure is for 3. */
const CLUSTER_MASTERS = 3;
const clusterMode = args.cluster ?? false;
const coalesce = int(args.coalesce, 30);

const config: BenchConfig = {
  mode: quick ? 'quick' : 'full',
  cores: os.cpus().length,
  tries: quick ? 1 : 3,
  runTag: `b${randomBytes(3).toString('hex')}`,
  latency: {
    loads: ints(args.loads, [50, 200, 500]),
    sessions: quick ? 128 : 256,
    warmupSeconds: quick ? 0.5 : 2,
    floorSeconds: quick ? 0.5 : 3,
    seconds: quick ? 1 : 6,
    reply: { tokens: 8, delayMs: 5 },
  },
  throughput: {
    sessions: quick ? 256 : 512,
    reply: { tokens: 4, delayMs: 0 },
    probeSeconds: quick ? 1 : 5,
    stepSeconds: quick ? 1.5 : 5,
    fractions: quick ? [0.8] : [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1],
  },
  fanout: {
    sessions: int(args['fanout-sessions'], 200),
    delaysMs: ints(args['fanout-delays-ms'], quick ? [4] : [20, 8, 4]),
    messageMs: int(args['fanout-message-ms'], quick ? 400 : 1600),
    warmupSeconds: quick ? 0.5 : 1,
    seconds: quick ? 1.5 : 6,
    coalesce: ints(args['fanout-coalesce'], quick ? [0] : [30, 0]),
  },
  memory: {
    messages: int(args.messages, quick ? 5000 : 100_000),
    sessions: 64,
    reply: { tokens: 4, delayMs: 0 },
    checkpoints: 50,
    idleSeconds: quick ? 1 : 3,
    maxSeconds: quick ? 30 : 450,
  },
  appEnv: {
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    AUTH_MODE: 'none',
    RATE_LIMIT_SESSION_PER_MINUTE: '0',
    RATE_LIMIT_IP_PER_MINUTE: '0',
    // Every bench client connects from this machine's one address.
    MAX_CONNECTIONS_PER_ADDRESS: '0',
    RATE_LIMIT_NEW_SESSIONS_PER_MINUTE: '0',
    MAX_BACKLOG: '1000000',
    WORKER_CONCURRENCY: String(concurrency),
    DELTA_COALESCE_MS: String(coalesce),
    AI_PROVIDER: 'ollama',
    OLLAMA_MODEL: 'gpt-oss:20b',
    SHUTDOWN_GRACE_MS: '3000',
  },
};
if (config.fanout.sessions > concurrency) {
  log(`note: fan-out sessions (${config.fanout.sessions}) > WORKER_CONCURRENCY (${concurrency}): not all generations can run at once`);
}

// ------------------------------------------------------------------------------------------------
// Build, machine
// ------------------------------------------------------------------------------------------------

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path));
    else newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * The app runs from bench/.dist (git-ignored), never from the shared dist/: other people rebuild
 * dist/ while a bench runs (`nest build` deletes it first), and the worker is restarted mid-run.
 * When dist/ is at least as new as src/ it is copied; otherwise src/ is compiled into bench/.dist
 * with the same compiler settings as `nest build` (tsconfig.build.json, plus src/public), which
 * leaves dist/ alone. Returns how the code was obtained.
 */
function prepareApp(): string {
  const copy = join(ROOT, 'bench', '.dist');
  const main = join(ROOT, 'dist', 'main.js');
  const worker = join(ROOT, 'dist', 'worker.js');
  const missing = !existsSync(main) || !existsSync(worker);
  const stale = !missing && newestMtime(join(ROOT, 'src')) > Math.min(statSync(main).mtimeMs, statSync(worker).mtimeMs);
  rmSync(copy, { recursive: true, force: true });
  let how: string;
  if ((missing || stale) && !args['no-build']) {
    log(
      `dist/ is ${missing ? 'missing' : 'older than src/'}: compiling src/ into bench/.dist (tsc -p tsconfig.build.json, like nest build; dist/ is left alone)`,
    );
    const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', copy], { cwd: ROOT, stdio: ['ignore', 2, 2] });
    if (build.status === 0) {
      // nest build's assets (nest-cli.json): the page and the Lua scripts
      if (existsSync(join(ROOT, 'src', 'public'))) cpSync(join(ROOT, 'src', 'public'), join(copy, 'public'), { recursive: true });
      cpSync(join(ROOT, 'src', 'event-bus', 'scripts'), join(copy, 'event-bus', 'scripts'), { recursive: true });
      how = 'compiled from src/ by the bench';
    } else if (!missing) {
      log('WARNING: compiling src/ failed (someone may be mid-edit); running a copy of the existing, older dist/');
      rmSync(copy, { recursive: true, force: true });
      cpSync(join(ROOT, 'dist'), copy, { recursive: true });
      how = 'stale dist/ (compiling src/ failed)';
    } else {
      throw new Error('compiling src/ failed and there is no dist/ to run');
    }
  } else {
    if (missing) throw new Error('dist/ is missing and --no-build was given');
    cpSync(join(ROOT, 'dist'), copy, { recursive: true });
    how = stale ? 'stale dist/ (--no-build)' : 'dist/ (up to date with src/)';
  }
  if (!existsSync(join(copy, 'main.js')) || !existsSync(join(copy, 'worker.js')))
    throw new Error('no main.js / worker.js to run; run again');
  useDist(copy);
  return how;
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  } catch {
    return 'unknown';
  }
}

function pkgVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

// ------------------------------------------------------------------------------------------------
// Main
// ------------------------------------------------------------------------------------------------

interface Results {
  startedAt: string;
  durationSeconds: number;
  command: string;
  machine: Record<string, unknown>;
  settings: Record<string, unknown>;
  latency?: LatencyLoad[];
  throughput?: ThroughputResult;
  memory?: MemoryResult;
  fanout?: FanoutResult[];
  floors?: FloorsResult;
  targets?: { name: string; target: string; measured: string; met: boolean | null }[];
  profiles?: Record<string, Record<string, ProfileSummary>>;
  /** --cluster: the masters, and per phase how its Redis work spread over them */
  cluster?: { seeds: string; masters: Master[]; floors: string; phases: Record<string, ShardSpread> };
  errors: string[];
}

let env: BenchEnv | null = null;
/** --cluster: the single redis-server the floors phase runs on. */
let floorsRedis: RedisServer | null = null;
let floorsClient: Redis | null = null;
let cleaning: Promise<void> | null = null;

async function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    if (env) await env.stop(log);
    floorsClient?.disconnect();
    if (floorsRedis) await floorsRedis.dispose().catch(() => undefined);
    killAllSync();
    rmSync(join(ROOT, 'bench', '.dist'), { recursive: true, force: true });
  })();
  await cleaning;
}

process.on('exit', () => {
  killAllSync();
  for (const pid of [env?.redisServer?.pid, floorsRedis?.pid]) {
    if (!pid) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping everything`);
    void cleanup().finally(() => process.exit(130));
  });
}

/**
 * --cluster: the floors measure the stack's parts alone (an XADD + XREAD on one stream, ...), which
 * a cluster does not change; their child processes and bookkeeping take a REDIS_URL. So they get a
 * redis-server of their own, and the rest of the context as it is.
 */
async function singleRedisContext(ctx: PhaseContext): Promise<PhaseContext> {
  floorsRedis ??= await RedisServer.start();
  const redis = new Redis(floorsRedis.url, { protocol: 2, maxRetriesPerRequest: 1 });
  floorsClient = redis;
  log(`floors: on a single redis-server of their own (${floorsRedis.url}), not on the cluster`);
  const single = Object.create(ctx.env) as BenchEnv;
  single.redisUrl = floorsRedis.url;
  single.redis = redis;
  single.nodes = [redis];
  return { ...ctx, env: single };
}

/** CPU other processes use before we start anything (% of one core, over 1 s). */
async function idleCheck(): Promise<number> {
  const a = machineBusySeconds();
  const t = performance.now();
  const c = process.cpuUsage();
  await new Promise((r) => setTimeout(r, 1000));
  const own = process.cpuUsage(c);
  const busy = machineBusySeconds() - a - (own.user + own.system) / 1e6;
  return Math.max(0, Math.round((busy / ((performance.now() - t) / 1000)) * 100));
}

async function main(): Promise<number> {
  const dist = prepareApp();
  const profileDir = args.profile ? join(ROOT, 'bench', 'results', `profiles-${new Date(started).toISOString().replace(/:/g, '-')}`) : null;
  if (profileDir) {
    mkdirSync(profileDir, { recursive: true });
    useNodeArgs(['--inspect=127.0.0.1:0']);
  }
  let othersBeforePct = await idleCheck();
  const waitIdle = int(args['wait-idle'], 0);
  for (const deadline = Date.now() + waitIdle * 1000; othersBeforePct >= 15 && Date.now() < deadline;) {
    log(`machine busy (${othersBeforePct}% of a core used by other processes): waiting`);
    await new Promise((r) => setTimeout(r, 4000));
    othersBeforePct = await idleCheck();
  }
  log(`other processes used ${othersBeforePct}% of one core during the idle check`);
  const results: Results = {
    startedAt: new Date(started).toISOString(),
    durationSeconds: 0,
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    machine: {},
    settings: {},
    errors: [],
  };

  env = new BenchEnv({
    appEnv: config.appEnv,
    workerEnv: {},
    externalRedisUrl: process.env.REDIS_URL || undefined,
    clusterMasters: clusterMode ? CLUSTER_MASTERS : undefined,
    partitions: int(config.appEnv.PARTITIONS, 64),
  });
  await env.start(log);
  const monitor = new Monitor(env.nodes, { api: env.api.pid, worker: env.worker.pid }, env.masters);
  if (env.cluster && env.masters)
    results.cluster = {
      seeds: env.cluster.seeds,
      masters: env.masters,
      floors: phases.has('floors') ? 'on a separate single redis-server (the floors measure the parts alone, not the cluster)' : 'not run',
      phases: {},
    };
  const cpus = os.cpus();
  results.machine = {
    cores: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    redis: await redisVersion(env.nodes[0]),
    redisSource: env.cluster
      ? `own Redis Cluster, ${CLUSTER_MASTERS} masters, no replicas (no persistence: --save "" --appendonly no)`
      : env.redisServer
        ? 'own redis-server (no persistence: --save "" --appendonly no)'
        : 'REDIS_URL',
    socketIoClient: pkgVersion('socket.io-client'),
    ollamaClient: pkgVersion('ollama'),
    gitCommit: git(['rev-parse', '--short', 'HEAD']),
    gitDirtyFiles: git(['status', '--porcelain']).split('\n').filter(Boolean).length,
    dist,
    othersBeforePct,
  };
  results.settings = {
    mode: config.mode,
    provider: 'fake Ollama (test/support/fake-ollama.ts, in the bench process) via the official ollama client in the worker',
    processes: `1 API (WORKER_ENABLED=false) + 1 standalone worker + ${clusterMode ? `${CLUSTER_MASTERS} redis-server cluster masters (REDIS_CLUSTER_NODES)` : 'redis-server'} + the bench process (clients + fake Ollama)`,
    appEnv: config.appEnv,
    latency: config.latency,
    throughput: config.throughput,
    fanout: config.fanout,
    memory: config.memory,
    arrivals: 'open loop: uniform arrivals on a 1 ms timer tick; one message in flight per session',
  };
  log(
    `machine: ${cpus.length} cores ${String(results.machine.cpuModel)}, node ${process.version}, redis ${String(results.machine.redis)}; mode ${config.mode}`,
  );

  const ctx: PhaseContext = { env, monitor, config, log };
  const inspectors = new Map<number, InspectorSession>();
  const inspector = async (proc: BenchProcess) => {
    let session = inspectors.get(proc.pid);
    if (!session) {
      session = await InspectorSession.attach(proc);
      inspectors.set(proc.pid, session);
    }
    return session;
  };
  const profiled = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    if (!profileDir || !env) return fn();
    const procs = [env.api, env.worker];
    const sessions = await Promise.all(procs.map(inspector));
    await Promise.all(sessions.map((s) => s.start()));
    try {
      return await fn();
    } finally {
      results.profiles ??= {};
      results.profiles[name] = {};
      for (let i = 0; i < procs.length; i++) {
        const profile = (await sessions[i].stop()) as CpuProfile;
        const file = join(profileDir, `${name.replace(/[^\w-]+/g, '_')}-${procs[i].name}.cpuprofile`);
        writeFileSync(file, JSON.stringify(profile));
        results.profiles[name][procs[i].name] = summarizeProfileData(profile, file.slice(ROOT.length + 1), 12);
      }
    }
  };
  // On a cluster: how each phase's Redis work spread over the masters, from its first to its last
  // command (whatever the phase measures itself, e.g. only the sending windows of throughput steps).
  const spread = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    if (!results.cluster || !env?.masters) return fn();
    const masters = env.masters;
    const before = await monitor.redisNodes();
    const out = await fn();
    const after = await monitor.redisNodes();
    results.cluster.phases[name] = shardSpread(before.nodes, after.nodes, (after.at - before.at) / 1000, masters);
    return out;
  };
  const attempt = async <T>(name: string, fn: () => Promise<T>, perMaster = true): Promise<T | undefined> => {
    try {
      return await profiled(name, perMaster ? () => spread(name, fn) : fn);
    } catch (err) {
      const message = `${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
      results.errors.push(message);
      log(`ERROR in ${message}`);
      return undefined;
    }
  };

  if (phases.has('floors'))
    results.floors = await attempt('floors', async () => runFloors(env?.cluster ? await singleRedisContext(ctx) : ctx), !env.cluster);
  if (phases.has('latency')) results.latency = await attempt('latency', () => runLatency(ctx));
  if (phases.has('throughput')) results.throughput = await attempt('throughput', () => runThroughput(ctx));
  if (phases.has('memory')) results.memory = await attempt('memory', () => runMemory(ctx));
  if (phases.has('fanout')) {
    results.fanout = [];
    for (const c of config.fanout.coalesce) {
      if (
        String(c) !== env.currentWorkerEnv.DELTA_COALESCE_MS &&
        !(c === coalesce && env.currentWorkerEnv.DELTA_COALESCE_MS === undefined)
      ) {
        log(`restarting the worker with DELTA_COALESCE_MS=${c}`);
        await env.startWorker({ DELTA_COALESCE_MS: String(c) });
        monitor.pids = { api: env.api.pid, worker: env.worker.pid };
      }
      const r = await attempt(`fan-out (coalesce ${c})`, () => runFanout(ctx, c));
      if (r) results.fanout.push(...r);
    }
  }
  monitor.stop();
  for (const session of inspectors.values()) session.close();
  results.targets = targets(results);
  results.durationSeconds = Math.round((Date.now() - started) / 100) / 10;

  await cleanup();
  env = null;

  let text = render(results);
  if (results.profiles) {
    const parts: string[] = [];
    for (const [phase, procs] of Object.entries(results.profiles)) {
      for (const [proc, summary] of Object.entries(procs)) parts.push(renderProfile(summary, `${phase} — ${proc}`));
    }
    text += `\n\nCPU PROFILES (--profile: the profiler slows the processes, so the timings above are not comparable)\n${parts.join('\n\n')}`;
  }
  process.stdout.write(`${text}\n`);
  const out = args.out ?? join(ROOT, 'bench', 'results', `${results.startedAt.replace(/:/g, '-')}.json`);
  mkdirSync(join(out, '..'), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ ...results, table: text }, null, 2)}\n`);
  log(`results written to ${out}`);
  return results.errors.length ? 1 : 0;
}

// ------------------------------------------------------------------------------------------------
// Targets and the table
// ------------------------------------------------------------------------------------------------

function targets(r: Results): NonNullable<Results['targets']> {
  const out: NonNullable<Results['targets']> = [];
  if (r.latency?.length) {
    const at200 = r.latency.reduce((best, l) => (Math.abs(l.offeredPerSec - 200) < Math.abs(best.offeredPerSec - 200) ? l : best));
    out.push({
      name: `added latency p50 @${at200.offeredPerSec} msg/s`,
      target: '≤ 2 ms',
      measured: `${fmt(at200.added.p50, 2)} ms`,
      met: at200.added.p50 <= 2,
    });
    out.push({
      name: `added latency p99 @${at200.offeredPerSec} msg/s`,
      target: '≤ 10 ms',
      measured: `${fmt(at200.added.p99, 2)} ms`,
      met: at200.added.p99 <= 10,
    });
  }
  if (r.throughput) {
    const m = r.throughput.maxSustainedPerSec;
    out.push({
      name: 'sustained complete messages/s, zero lost',
      target: '≥ 2,000/s',
      measured: m === null ? 'none sustained' : `${fmtInt(m)}/s`,
      met: m !== null && m >= 2000,
    });
  }
  if (r.fanout?.length) {
    const perToken = r.fanout.filter((f) => f.coalesceMs === 0);
    if (perToken.length) {
      const kept = perToken.filter((f) => f.keptUp).map((f) => f.deliveredEventsPerSec);
      const best = Math.max(...perToken.map((f) => f.deliveredEventsPerSec));
      out.push({
        name: 'token events/s fanned out (1 event per token)',
        target: '≥ 50,000/s',
        measured: `${fmtInt(best)}/s at most; ${kept.length ? `${fmtInt(Math.max(...kept))}/s kept up` : 'no step kept up'}`,
        met: best >= 50_000,
      });
    }
    for (const coalesceMs of [...new Set(r.fanout.filter((x) => x.coalesceMs !== 0).map((x) => x.coalesceMs))]) {
      const steps = r.fanout.filter((x) => x.coalesceMs === coalesceMs);
      const best = steps.reduce((a, b) => (b.deliveredTokensPerSec > a.deliveredTokensPerSec ? b : a));
      out.push({
        name: `tokens/s fanned out (DELTA_COALESCE_MS=${coalesceMs})`,
        target: '≥ 50,000/s',
        measured: `${fmtInt(best.deliveredTokensPerSec)}/s in ${fmtInt(best.deliveredEventsPerSec)} events/s`,
        met: best.deliveredTokensPerSec >= 50_000,
      });
    }
  }
  const spread = r.cluster?.phases.throughput;
  if (spread) {
    out.push({
      name: `max share of one master (${spread.masters.length} masters, throughput phase)`,
      target: `≤ ${MAX_MASTER_SHARE_PCT}% of commands and CPU`,
      measured: `${fmt(spread.maxCommandsPct, 1)}% of commands, ${fmt(spread.maxCpuPct, 1)}% of CPU`,
      met: spread.even,
    });
  }
  if (r.memory) {
    const v = r.memory.verdict;
    const flat = (s: string) => s.startsWith('flat');
    out.push({
      name: `memory flat across ${fmtInt(r.memory.messages)} messages`,
      target: 'flat',
      measured: `api ${flat(v.apiRss) ? 'flat' : 'growing'}, worker ${flat(v.workerRss) ? 'flat' : 'growing'}, redis ${flat(v.redis) ? 'flat' : 'growing'}`,
      met: flat(v.apiRss) && flat(v.workerRss) && flat(v.redis),
    });
  }
  return out;
}

function render(r: Results): string {
  const m = r.machine;
  const lines: string[] = [];
  lines.push(`ai-assistant benchmark — ${r.command} — ${r.startedAt} — ${r.durationSeconds} s`);
  lines.push(
    `machine: ${String(m.cores)} cores (${String(m.cpuModel)}), ${String(m.memoryGB)} GB, ${String(m.kernel)}; node ${String(m.node)}; redis ${String(m.redis)} (${String(m.redisSource)}); git ${String(m.gitCommit)} (+${String(m.gitDirtyFiles)} uncommitted files); app code: ${String(m.dist)}`,
  );
  const e = config.appEnv;
  lines.push(
    `app: 1 API (WORKER_ENABLED=false) + 1 worker${r.cluster ? ` on a ${r.cluster.masters.length}-master Redis Cluster` : ''}; WORKER_CONCURRENCY=${e.WORKER_CONCURRENCY} DELTA_COALESCE_MS=${e.DELTA_COALESCE_MS} LOG_LEVEL=${e.LOG_LEVEL} AUTH_MODE=${e.AUTH_MODE} rate limits off, MAX_BACKLOG=${e.MAX_BACKLOG}, other settings default`,
  );
  lines.push(
    'provider: fake Ollama (test/support/fake-ollama.ts) in the bench process, reached by the worker through the official ollama client',
  );
  lines.push(
    'CPU columns: % of one core over the measuring window (a Node process tops out near 100%, the machine at ' +
      `${Number(m.cores) * 100}%); "others" = CPU of processes outside the bench`,
  );
  lines.push(
    `machine before the run: ${String(m.othersBeforePct)}% of one core busy with other processes${Number(m.othersBeforePct) >= 10 ? ' — WARNING: the machine was not idle, numbers are disturbed' : ''}`,
  );

  if (r.latency?.length) {
    const c = config.latency;
    lines.push('');
    lines.push(
      `OVERHEAD LATENCY — send (HTTP POST /chat/send) → first chat.delta on the socket; floor = same fake straight through the ollama client`,
    );
    lines.push(
      `  reply ${c.reply.tokens} tokens, ${c.reply.delayMs} ms before each; ${c.sessions} sessions; ${c.seconds} s per load (floor ${c.floorSeconds} s); added = pipeline pX − floor pX`,
    );
    const rows = [
      [
        'load',
        'floor p50',
        'p95',
        'p99',
        'pipeline p50',
        'p95',
        'p99',
        'added p50',
        'p95',
        'p99',
        'n',
        'lost',
        'api',
        'worker',
        'redis',
        'bench',
        'others',
      ],
    ];
    for (const l of r.latency) {
      const p = l.pipeline;
      rows.push([
        `${l.offeredPerSec}/s`,
        `${fmt(l.floor.firstToken.p50, 2)} ms`,
        fmt(l.floor.firstToken.p95, 2),
        fmt(l.floor.firstToken.p99, 2),
        `${fmt(p.firstDelta.p50, 2)} ms`,
        fmt(p.firstDelta.p95, 2),
        fmt(p.firstDelta.p99, 2),
        `${fmt(l.added.p50, 2)} ms`,
        fmt(l.added.p95, 2),
        fmt(l.added.p99, 2),
        String(p.firstDelta.n),
        String(p.lost + p.failed + p.wrongContent),
        `${fmt(p.cpu.apiPct, 0)}%`,
        `${fmt(p.cpu.workerPct, 0)}%`,
        `${fmt(p.cpu.redisPct, 0)}%`,
        `${fmt(p.cpu.benchPct, 0)}%`,
        `${fmt(p.cpu.othersPct, 0)}%`,
      ]);
    }
    lines.push(table(rows));
    const rows2 = [
      ['load', 'HTTP 202 p50', 'p99', 'send→fake request p50', 'p99', 'fake 1st token p50', 'fake write→socket p50', 'p99', 'skipped'],
    ];
    for (const l of r.latency) {
      const p = l.pipeline;
      rows2.push([
        `${l.offeredPerSec}/s`,
        `${fmt(p.accept.p50, 2)} ms`,
        fmt(p.accept.p99, 2),
        `${fmt(p.beforeModel.p50, 2)} ms`,
        fmt(p.beforeModel.p99, 2),
        `${fmt(p.model.p50, 2)} ms`,
        `${fmt(p.afterModel.p50, 2)} ms`,
        fmt(p.afterModel.p99, 2),
        String(p.skippedNoFreeSession),
      ]);
    }
    lines.push('  where the time goes:');
    lines.push(table(rows2));
  }

  if (r.throughput) {
    const t = r.throughput;
    const c = config.throughput;
    lines.push('');
    lines.push(
      `THROUGHPUT — complete messages (reply ${c.reply.tokens} tokens, no delay), ${c.sessions} sessions, one message in flight each`,
    );
    lines.push(
      `  closed-loop probe: ${fmt(t.probe.completedPerSec, 0)} msg/s, send→completed p50 ${fmt(t.probe.endToEnd.p50, 1)} ms p99 ${fmt(t.probe.endToEnd.p99, 1)} ms; CPU api ${t.probe.cpu.apiPct}% worker ${t.probe.cpu.workerPct}% redis ${t.probe.cpu.redisPct}% bench ${t.probe.cpu.benchPct}%`,
    );
    const rows = [
      [
        'offered',
        'completed/s',
        'e2e p50',
        'e2e p99',
        'lost',
        'skipped',
        'api',
        'worker',
        'redis',
        'bench',
        'others',
        'redis cmd/msg',
        'worker µs/msg',
        'api µs/msg',
        'sustained',
      ],
    ];
    for (const s of t.steps) {
      rows.push([
        `${s.offeredPerSec}/s`,
        fmt(s.completedPerSec, 0),
        `${fmt(s.endToEnd.p50, 1)} ms`,
        `${fmt(s.endToEnd.p99, 1)} ms`,
        String(s.lost + s.failed + s.wrongContent),
        String(s.skippedNoFreeSession),
        `${fmt(s.cpu.apiPct, 0)}%`,
        `${fmt(s.cpu.workerPct, 0)}%`,
        `${fmt(s.cpu.redisPct, 0)}%`,
        `${fmt(s.cpu.benchPct, 0)}%`,
        `${fmt(s.cpu.othersPct, 0)}%`,
        fmt(s.perMessage.redisCommands, 1),
        fmtInt(s.perMessage.workerCpuUs),
        fmtInt(s.perMessage.apiCpuUs),
        s.sustained ? 'yes' : `no: ${s.why.length > 110 ? `${s.why.slice(0, 107)}...` : s.why}`,
      ]);
    }
    lines.push(table(rows));
    lines.push(
      `  max sustained: ${t.maxSustainedPerSec === null ? 'none of the steps' : `${fmtInt(t.maxSustainedPerSec)} complete msg/s, zero lost`}; bottleneck there: ${t.bottleneckAtMax ?? 'n/a'}`,
    );
    const last = t.steps[t.steps.length - 1];
    if (last && !last.sustained) lines.push(`  first step not sustained (${last.offeredPerSec}/s): ${last.bottleneck}`);
    const top = (last ?? t.steps[0])?.cpu.redisTopCommands.slice(0, 8) ?? [];
    const n = Math.max(1, (last ?? t.steps[0])?.completed ?? 1);
    if (top.length)
      lines.push(
        `  redis commands per message at ${last?.offeredPerSec}/s: ${top.map(([k, v]) => `${k} ${(v / n).toFixed(1)}`).join(', ')}`,
      );
  }

  if (r.fanout?.length) {
    const c = config.fanout;
    lines.push('');
    lines.push(
      `FAN-OUT — ${c.sessions} generations streaming at once (each reply ~${c.messageMs} ms, then the next), one socket per session, ${c.seconds} s per step; ` +
        `delay = fake Ollama wrote the token → it arrived on the socket; kept up = ≥ 95% of written tokens delivered, delay p99 ≤ ${MAX_P99_MS} ms`,
    );
    const rows = [
      [
        'coalesce',
        'offered tok/s',
        'fake wrote',
        'events/s',
        'tokens/s',
        'tok/event',
        'delay p50',
        'p95',
        'p99',
        'lost',
        'api',
        'worker',
        'redis',
        'bench',
        'others',
        'kept up',
      ],
    ];
    for (const f of r.fanout) {
      rows.push([
        `${f.coalesceMs} ms`,
        fmtInt(f.offeredTokensPerSec),
        fmtInt(f.fakeWrittenTokensPerSec),
        fmtInt(f.deliveredEventsPerSec),
        fmtInt(f.deliveredTokensPerSec),
        fmt(f.tokensPerEvent, 1),
        `${fmt(f.deliveryDelay.p50, 1)} ms`,
        fmt(f.deliveryDelay.p95, 1),
        fmt(f.deliveryDelay.p99, 1),
        String(f.lost + f.failed + f.wrongContent),
        `${fmt(f.cpu.apiPct, 0)}%`,
        `${fmt(f.cpu.workerPct, 0)}%`,
        `${fmt(f.cpu.redisPct, 0)}%`,
        `${fmt(f.cpu.benchPct, 0)}%`,
        `${fmt(f.cpu.othersPct, 0)}%`,
        f.keptUp ? 'yes' : 'no',
      ]);
    }
    lines.push(table(rows));
    lines.push('  CPU per delivered event, at the highest offered rate:');
    for (const coalesceMs of [...new Set(r.fanout.map((f) => f.coalesceMs))]) {
      const f = r.fanout.filter((x) => x.coalesceMs === coalesceMs).slice(-1)[0];
      lines.push(
        `    coalesce ${f.coalesceMs} ms: api ${f.perEvent.apiCpuUs} µs, worker ${f.perEvent.workerCpuUs} µs, redis ${f.perEvent.redisCpuUs} µs (${f.perEvent.redisCommands} commands), bench ${f.perEvent.benchCpuUs} µs; ${f.bottleneck}`,
      );
    }
  }

  if (r.memory) {
    const mm = r.memory;
    lines.push('');
    if (mm.stoppedAtTimeLimit)
      lines.push('', `  (memory phase stopped at its time limit: ${fmtInt(mm.messages)} of ${fmtInt(mm.target)} messages)`);
    lines.push(
      `MEMORY — ${fmtInt(mm.messages)} messages (reply ${config.memory.reply.tokens} tokens) over ${mm.sessions} sessions, closed loop: ${fmt(mm.messagesPerSec, 0)} msg/s, ${mm.seconds} s; lost ${mm.lost + mm.failed + mm.wrongContent}`,
    );
    const pick = mm.samples.filter((s, i) => i === 0 || /^\d*0%$/.test(s.label) || s.label.startsWith('after'));
    const rows = [['point', 'messages', 'api RSS', 'worker RSS', 'redis used_memory', 'redis RSS', 'keys', 'XLEN outgoing']];
    for (const s of pick)
      rows.push([
        s.label,
        fmtInt(s.messages),
        mb(s.apiRss),
        mb(s.workerRss),
        mb(s.redisUsedMemory),
        mb(s.redisRss),
        fmtInt(s.redisKeys),
        fmtInt(s.outgoingLen),
      ]);
    lines.push(table(rows));
    lines.push(
      `  CPU: api ${mm.cpu.apiPct}% worker ${mm.cpu.workerPct}% redis ${mm.cpu.redisPct}% bench ${mm.cpu.benchPct}% others ${mm.cpu.othersPct}%; per message: ` +
        `api ${fmtInt(mm.perMessage.apiCpuUs)} µs, worker ${fmtInt(mm.perMessage.workerCpuUs)} µs, redis ${fmtInt(mm.perMessage.redisCpuUs)} µs, ${mm.perMessage.redisCommands} redis commands`,
    );
    lines.push(`  api RSS: ${mm.verdict.apiRss}`);
    lines.push(`  worker RSS: ${mm.verdict.workerRss}`);
    lines.push(`  redis used_memory: ${mm.verdict.redis}`);
    const ps = mm.perSession;
    lines.push(
      `  one session after ${fmtInt(mm.messages / mm.sessions)} messages: event log ${fmtInt(ps.eventsLen)} entries ${mb(ps.eventsBytes)}, history hash ${mb(ps.messagesBytes)} (${ps.orderLen} messages kept); chat:outgoing:{*} (all partitions) ${mb(mm.outgoingBytes)}`,
    );
  }

  if (r.cluster) {
    const c = r.cluster;
    lines.push('');
    lines.push(
      `REDIS CLUSTER — ${c.masters.length} masters (REDIS_CLUSTER_NODES=${c.seeds}); per phase, each master's share of the commands ` +
        '(INFO commandstats, commands run by scripts included) and of the Redis CPU (used_cpu_user + used_cpu_sys), over the whole phase',
    );
    lines.push(
      `  masters: ${c.masters.map((m) => `${m.node} ${m.slots} slots, ${m.partitions} partitions${m.globalKeys.length ? ` + ${m.globalKeys.join(', ')}` : ''}`).join('; ')}`,
    );
    for (const [phase, spread] of Object.entries(c.phases)) lines.push(...renderSpread(phase, spread));
    lines.push(`  floors: ${c.floors}`);
  }

  if (r.floors) {
    lines.push('');
    if (r.cluster) lines.push('(--cluster: the floors ran on a separate single redis-server, not on the cluster)');
    lines.push(...renderFloors(r.floors, measuredBeside(r), { messagesPerSec: 2000, eventsPerSec: 50_000 }));
  }

  if (r.targets?.length) {
    lines.push('');
    lines.push('TARGETS (reported, not asserted)');
    const rows = [['target', 'wanted', 'measured', 'met']];
    for (const t of r.targets) rows.push([t.name, t.target, t.measured, t.met === null ? '?' : t.met ? 'yes' : 'NO']);
    lines.push(table(rows));
  }
  if (r.errors.length) {
    lines.push('');
    lines.push('ERRORS');
    for (const e of r.errors) lines.push(`  ${e.split('\n')[0]}`);
  }
  return lines.join('\n');
}

/** The app's own CPU per message and per token event in this run, for the floors table. */
function measuredBeside(r: Results): MeasuredBeside {
  const out: MeasuredBeside = {};
  const t = r.throughput;
  const best = t?.steps.filter((s) => s.sustained).sort((a, b) => b.completedPerSec - a.completedPerSec)[0];
  if (best && best.completed > 0) {
    const c = best.cpu;
    out.perMessageUs = {
      us: Math.round(((c.apiCpu + c.workerCpu + c.redisCpu + c.benchCpu) * 1e6) / best.completed),
      atPerSec: best.completedPerSec,
    };
  }
  const perToken = r.fanout?.filter((f) => f.coalesceMs === 0).slice(-1)[0];
  if (perToken) {
    const e = perToken.perEvent;
    out.perEventUs = { us: Math.round(e.apiCpuUs + e.workerCpuUs + e.redisCpuUs + e.benchCpuUs), atPerSec: perToken.deliveredEventsPerSec };
  }
  return out;
}

main().then(
  async (code) => {
    await cleanup();
    process.exit(code);
  },
  async (err: unknown) => {
    log(`FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await cleanup();
    process.exit(1);
  },
);
