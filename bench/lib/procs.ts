/**
 * The app's processes as the benchmark runs them: `node dist/main.js` (API) and `node dist/worker.js`
 * (worker), each a child process with its own environment, exactly like test/support/app-process.ts
 * starts them. Unlike AppProcess, readiness is not read from the log: the bench runs with
 * LOG_LEVEL=warn (logging every message would be measured too), and at that level the app prints
 * neither "listening on" nor "AI worker ready". So the API is ready when GET /health/live answers
 * 200 on the port we gave it, and a worker when its blocking Redis connection (named
 * `ai-assistant:worker:<host>:<pid>:...`) shows up in CLIENT LIST (of any master, on a cluster).
 *
 * Also: CPU time and RSS of any pid from /proc, and a registry that kills every child we started
 * when the bench exits for any reason.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { sleep } from './stats';

const ROOT = process.cwd();
/** Where main.js / worker.js are taken from; run.ts points it at a private copy of dist/. */
let distDir = join(ROOT, 'dist');
export function useDist(dir: string): void {
  distDir = dir;
}
/** Extra node flags for the app processes (`--inspect=127.0.0.1:0` for `npm run bench -- --profile`). */
let nodeArgs: string[] = [];
export function useNodeArgs(args: string[]): void {
  nodeArgs = args;
}
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Every child started by the bench, so an exit path can never leave one behind. */
const live = new Set<ChildProcess>();

export function killAllSync(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
}

export function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
}

export class BenchProcess {
  private readonly tail: string[] = [];
  private readonly exited: Promise<void>;

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly port: number | null,
  ) {
    const keep = (chunk: Buffer) => {
      this.tail.push(chunk.toString());
      if (this.tail.length > 200) this.tail.shift();
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    track(child);
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.name} has no pid`);
    return this.child.pid;
  }

  get log(): string {
    return this.tail.join('');
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  static async startApi(name: string, port: number, env: Record<string, string>, timeoutMs = 30_000): Promise<BenchProcess> {
    const proc = BenchProcess.spawn(name, 'main', { ...env, PORT: String(port) }, port);
    await proc.waitUntil(async () => {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/health/live`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        return res.status === 200;
      } catch {
        return false;
      }
    }, timeoutMs);
    return proc;
  }

  /** `nodes`: every Redis server (on a cluster the worker's reads go to the masters of their partitions). */
  static async startWorker(name: string, env: Record<string, string>, nodes: Redis[], timeoutMs = 30_000): Promise<BenchProcess> {
    const proc = BenchProcess.spawn(name, 'worker', env, null);
    const marker = `:${proc.pid}:`;
    await proc.waitUntil(async () => {
      const lists = await Promise.all(nodes.map(async (redis) => String(await redis.call('CLIENT', 'LIST'))));
      return lists.some((list) => list.split('\n').some((line) => line.includes('name=ai-assistant:worker:') && line.includes(marker)));
    }, timeoutMs);
    return proc;
  }

  private static spawn(name: string, entry: 'main' | 'worker', env: Record<string, string>, port: number | null): BenchProcess {
    const child = spawn(process.execPath, [...nodeArgs, join(distDir, `${entry}.js`)], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new BenchProcess(name, child, port);
  }

  private async waitUntil(ready: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.running)
        throw new Error(`${this.name} exited (${this.child.exitCode ?? this.child.signalCode}) before it was ready:\n${this.log}`);
      if (await ready().catch(() => false)) return;
      await sleep(50);
    }
    throw new Error(`${this.name} not ready after ${timeoutMs} ms:\n${this.log}`);
  }

  /** SIGTERM, then SIGKILL after `timeoutMs`. Returns how it ended. */
  async stop(timeoutMs = 8000): Promise<string> {
    if (!this.running) return `already exited (${this.child.exitCode ?? this.child.signalCode})`;
    this.child.kill('SIGTERM');
    let escalated = false;
    const timer = setTimeout(() => {
      escalated = true;
      this.child.kill('SIGKILL');
    }, timeoutMs);
    await this.exited;
    clearTimeout(timer);
    return escalated ? 'SIGKILL after timeout' : `exited (${this.child.exitCode ?? this.child.signalCode})`;
  }
}

/** CPU seconds (user + system, all threads) of a live process, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** Resident set size in bytes, from /proc/<pid>/status (VmRSS). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = status.match(/^VmRSS:\s+(\d+)\s+kB/m);
  return match ? Number(match[1]) * 1024 : NaN;
}

/** CPU seconds all cores spent busy since boot (from the first line of /proc/stat). */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return (user + nice + system + irq + softirq + steal) / CLK_TCK;
}
