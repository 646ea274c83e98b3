/**
 * A local Redis Cluster for `npm run bench -- --cluster`: N masters (no replicas, no persistence)
 * started by the bench in a temporary directory, joined with `redis-cli --cluster create` (which
 * splits the 16384 slots into N contiguous ranges), stopped and deleted again afterwards.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort } from '../../test/support/redis-server';
import { track } from './procs';
import { sleep } from './stats';

const run = promisify(execFile);

export class LocalCluster {
  private constructor(
    private readonly dir: string,
    readonly ports: number[],
    private readonly children: ChildProcess[],
  ) {}

  static async start(masters: number, log: (line: string) => void): Promise<LocalCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'ai-assistant-bench-cluster-'));
    const children: ChildProcess[] = [];
    const ports: number[] = [];
    const cluster = new LocalCluster(dir, ports, children);
    try {
      for (let i = 0; i < masters; i++) {
        const port = await freePort();
        ports.push(port);
        children.push(await startNode(dir, port, await freePort()));
      }
      const nodes = ports.map((p) => `127.0.0.1:${p}`);
      log(`redis cluster: ${masters} masters on ${nodes.join(', ')}; joining them (redis-cli --cluster create)`);
      await run('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 });
      await cluster.waitUntilOk(30_000);
      return cluster;
    } catch (err) {
      await cluster.dispose();
      throw err;
    }
  }

  /** REDIS_CLUSTER_NODES for the app. */
  get seeds(): string {
    return this.ports.map((p) => `127.0.0.1:${p}`).join(',');
  }

  get pids(): number[] {
    return this.children.map((c) => c.pid).filter((pid): pid is number => pid !== undefined);
  }

  /**
   * `create` returns once the slots are assigned, but the other nodes learn of that through the
   * cluster bus a moment later; until every node says cluster_state:ok, a client may still be told
   * CLUSTERDOWN.
   */
  private async waitUntilOk(timeoutMs: number): Promise<void> {
    const clients = this.ports.map((port) => new Redis({ host: '127.0.0.1', port, protocol: 2, lazyConnect: true }));
    try {
      await Promise.all(clients.map((c) => c.connect()));
      const deadline = Date.now() + timeoutMs;
      let states: string[] = [];
      while (Date.now() < deadline) {
        const infos = await Promise.all(clients.map((c) => c.cluster('INFO')));
        states = infos.map((i) => /^cluster_state:(\w+)/m.exec(String(i))?.[1] ?? 'unknown');
        const known = infos.map((i) => Number(/^cluster_known_nodes:(\d+)/m.exec(String(i))?.[1] ?? 0));
        if (states.every((s) => s === 'ok') && known.every((k) => k === this.ports.length)) return;
        await sleep(100);
      }
      throw new Error(`redis cluster not ok after ${timeoutMs} ms (cluster_state per node: ${states.join(', ')})`);
    } finally {
      for (const c of clients) c.disconnect();
    }
  }

  async dispose(): Promise<void> {
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      ),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * One cluster node. The bus port is given explicitly (`--cluster-port`, Redis 7+): by default it is
 * the client port + 10000, which for a free ephemeral port can be taken or above 65535.
 */
async function startNode(dir: string, port: number, busPort: number): Promise<ChildProcess> {
  const nodeDir = join(dir, String(port));
  mkdirSync(nodeDir);
  const args = [
    '--port',
    String(port),
    '--cluster-port',
    String(busPort),
    '--bind',
    '127.0.0.1',
    '--dir',
    nodeDir,
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    'nodes.conf',
    '--save',
    '',
    '--appendonly',
    'no',
    '--daemonize',
    'no',
  ];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  await new Promise<void>((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`redis-server (cluster node :${port}) did not start:\n${output}`)), 10_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        child.stdout?.resume();
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server (cluster node :${port}) exited with ${code}:\n${output}`));
    });
  });
  return child;
}
