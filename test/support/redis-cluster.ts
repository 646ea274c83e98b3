import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { RedisServer, freePort } from './redis-server';

export type ClusterRole = 'master' | 'replica';

/** One node as the cluster sees it now (CLUSTER NODES), with the process behind it. */
export interface ClusterNodeInfo {
  port: number;
  /** The redis-server's process id; undefined once killed. */
  pid: number | undefined;
  role: ClusterRole;
  /** Its cluster node id. */
  id: string;
  /** A replica's master (node id). */
  masterId?: string;
  /** Up as far as the node asked knows (not `fail`/`fail?`, process alive). */
  alive: boolean;
}

export interface RedisClusterOptions {
  /** Masters; each gets `replicas` replicas. Redis needs 3 masters at least. */
  masters?: number;
  replicas?: number;
  /**
   * cluster-node-timeout: how long a master may be unreachable before its replica is promoted. The
   * default suits the shared cluster (a node busy for a moment is never failed over); a suite that
   * kills masters wants it short.
   */
  nodeTimeoutMs?: number;
}

/** Slots of a Redis Cluster (keys hash into 0..16383). */
const SLOTS = 16384;

/**
 * A Redis Cluster of real redis-servers owned by a test run: `masters` masters with `replicas`
 * replicas each, on free ports, no persistence, each node in its own directory (its nodes.conf
 * there) under one temporary directory. Nodes can be killed (kill -9), restarted (they rejoin from
 * their nodes.conf, a killed master as a replica of the one promoted in its place) and failed over.
 */
export class RedisCluster {
  private constructor(
    private readonly dir: string,
    private readonly servers: RedisServer[],
  ) {}

  static async start(opts: RedisClusterOptions = {}): Promise<RedisCluster> {
    const masters = opts.masters ?? 3;
    const replicas = opts.replicas ?? 1;
    const dir = mkdtempSync(join(tmpdir(), 'ai-assistant-redis-cluster-'));
    const count = masters * (1 + replicas);
    // Two ports per node: clients' and the cluster bus (by default port + 10000, which may be taken
    // or past 65535 for a port from the ephemeral range).
    const ports = await distinctFreePorts(count * 2);
    const servers: RedisServer[] = [];
    const cluster = new RedisCluster(dir, servers);
    try {
      await Promise.all(
        Array.from({ length: count }, async (_, i) => {
          const port = ports[i];
          const nodeDir = join(dir, String(port));
          mkdirSync(nodeDir);
          const args = [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(nodeDir, 'nodes.conf'),
            '--cluster-port',
            String(ports[count + i]),
            '--cluster-node-timeout',
            String(opts.nodeTimeoutMs ?? 5000),
            // A replica takes over however long its link was down: a test's cluster never stays
            // without a master because of data age.
            '--cluster-replica-validity-factor',
            '0',
          ];
          servers[i] = await RedisServer.start({ dir: nodeDir, args }, port);
        }),
      );
      await redisCli([
        '--cluster',
        'create',
        ...ports.slice(0, count).map((p) => `127.0.0.1:${p}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ]);
      await cluster.waitUntilHealthy();
      return cluster;
    } catch (err) {
      await cluster.dispose();
      throw err;
    }
  }

  /** Seed nodes for REDIS_CLUSTER_NODES: every node, `127.0.0.1:port,...`. */
  get seeds(): string {
    return this.servers.map((s) => `127.0.0.1:${s.port}`).join(',');
  }

  get ports(): number[] {
    return this.servers.map((s) => s.port);
  }

  /** Process ids of the nodes still running. */
  get pids(): number[] {
    return this.servers.map((s) => s.pid).filter((pid): pid is number => pid !== undefined);
  }

  /** The nodes and their roles as the cluster sees them now (asked of a live node). */
  async nodes(): Promise<ClusterNodeInfo[]> {
    let lastError: unknown;
    for (const server of this.servers.filter((s) => s.pid !== undefined)) {
      try {
        const text = String(await command(server.port, ['CLUSTER', 'NODES']));
        return parseClusterNodes(text).map((n) => {
          const owner = this.servers.find((s) => s.port === n.port);
          return { ...n, pid: owner?.pid, alive: n.alive && owner?.pid !== undefined };
        });
      } catch (err) {
        lastError = err;
      }
    }
    throw new Error(`no cluster node answers: ${String(lastError)}`);
  }

  async masters(): Promise<ClusterNodeInfo[]> {
    return (await this.nodes()).filter((n) => n.role === 'master' && n.alive);
  }

  /** A live replica of the given master (by port). */
  async replicaOf(masterPort: number): Promise<ClusterNodeInfo> {
    const nodes = await this.nodes();
    const master = nodes.find((n) => n.port === masterPort);
    const replica = nodes.find((n) => n.role === 'replica' && n.alive && n.masterId === master?.id);
    if (!replica) throw new Error(`no live replica of 127.0.0.1:${masterPort}`);
    return replica;
  }

  /** kill -9 of one node: it vanishes without a word; its replica is promoted after the node timeout. */
  async kill(port: number): Promise<void> {
    await this.server(port).kill();
  }

  /** Starts a killed/stopped node again on its port; it rejoins from its nodes.conf. */
  async restart(port: number): Promise<void> {
    await this.server(port).startProcess();
  }

  /**
   * CLUSTER FAILOVER on a replica: a coordinated switch (the master stops taking writes until the
   * replica has caught up, then the replica takes over), resolved once the replica is a master.
   */
  async failover(replicaPort: number, timeoutMs = 10_000): Promise<void> {
    await command(replicaPort, ['CLUSTER', 'FAILOVER']);
    await until(timeoutMs, `127.0.0.1:${replicaPort} to become a master`, async () =>
      /^role:master/m.test(String(await command(replicaPort, ['INFO', 'replication']))),
    );
  }

  /**
   * Every live node says cluster_state:ok, knows every live node and sees all slots served; every
   * live replica has its master link up and no sync in progress.
   */
  async waitUntilHealthy(timeoutMs = 30_000): Promise<void> {
    await until(timeoutMs, 'the cluster to be healthy', () => this.isHealthy());
  }

  /** One look at what waitUntilHealthy waits for; a node not answering counts as unhealthy. */
  async isHealthy(): Promise<boolean> {
    const live = this.servers.filter((s) => s.pid !== undefined);
    try {
      const checks = await Promise.all(
        live.map(async (s) => {
          const info = String(await command(s.port, ['CLUSTER', 'INFO']));
          const replication = String(await command(s.port, ['INFO', 'replication']));
          const ok =
            /^cluster_state:ok/m.test(info) &&
            new RegExp(`^cluster_slots_ok:${SLOTS}\\b`, 'm').test(info) &&
            Number(/^cluster_known_nodes:(\d+)/m.exec(info)?.[1]) >= live.length;
          const synced =
            /^role:master/m.test(replication) ||
            (/^master_link_status:up/m.test(replication) && /^master_sync_in_progress:0/m.test(replication));
          return ok && synced;
        }),
      );
      return checks.every(Boolean);
    } catch {
      return false;
    }
  }

  /** Stops every node and removes the directory. */
  async dispose(): Promise<void> {
    await Promise.all(this.servers.filter(Boolean).map((s) => s.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  private server(port: number): RedisServer {
    const server = this.servers.find((s) => s.port === port);
    if (!server) throw new Error(`no node on port ${port}`);
    return server;
  }
}

/** CLUSTER NODES, parsed: `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slots...>`. */
export function parseClusterNodes(text: string): Omit<ClusterNodeInfo, 'pid'>[] {
  return text
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => {
      const [id, address, flags, master] = line.split(' ');
      const port = Number(/:(\d+)/.exec(address)?.[1]);
      const flagList = flags.split(',');
      const role: ClusterRole = flagList.includes('master') ? 'master' : 'replica';
      return {
        id,
        port,
        role,
        ...(role === 'replica' && master !== '-' ? { masterId: master } : {}),
        alive: !flagList.some((f) => f === 'fail' || f === 'fail?' || f === 'noaddr'),
      };
    });
}

/** One command on one node, on a connection of its own. */
async function command(port: number, args: [string, ...string[]]): Promise<unknown> {
  const client = new Redis({
    port,
    host: '127.0.0.1',
    protocol: 2,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await client.call(...args);
  } finally {
    client.disconnect();
  }
}

function redisCli(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`redis-cli ${args.join(' ')} exited with ${code}:\n${output}`)),
    );
  });
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

async function until(timeoutMs: number, what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
