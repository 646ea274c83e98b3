/**
 * Everything the bench runs against, started by the bench itself: Redis (its own redis-server on a
 * free port unless REDIS_URL is given; with `--cluster` its own 3-master cluster instead), the fake
 * Ollama (in this process), one API process (WORKER_ENABLED=false) and one standalone worker
 * process. Stopped in reverse order, always.
 */
import { Cluster, Redis } from 'ioredis';
import { freePort, hasRedisServerBinary, NO_REDIS_MESSAGE, RedisServer } from '../../test/support/redis-server';
import { RedisCluster } from '../../test/support/redis-cluster';
import { BenchFake } from './fake';
import { BenchProcess } from './procs';
import { describeMasters, Master } from './shards';

export interface EnvOptions {
  /** Environment of both app processes (without REDIS_URL / OLLAMA_HOST / PORT). */
  appEnv: Record<string, string>;
  /** Extra env of the worker only. */
  workerEnv: Record<string, string>;
  externalRedisUrl?: string;
  /** Start a local cluster of this many masters and run the app on it (REDIS_CLUSTER_NODES). */
  clusterMasters?: number;
  /** PARTITIONS the app runs with (to say which master owns how many). */
  partitions: number;
}

export class BenchEnv {
  redisServer: RedisServer | null = null;
  cluster: RedisCluster | null = null;
  /** Set on a single Redis only. */
  redisUrl = '';
  /** For key commands (XLEN, MEMORY USAGE, DEL): a Cluster client routes each key to its master. */
  redis!: Redis | Cluster;
  /** One plain connection per server (the single Redis, or each master) for INFO, CLIENT LIST, FLUSHDB. */
  nodes: Redis[] = [];
  /** On a cluster: its masters and what they own. */
  masters: Master[] | null = null;
  readonly fake = new BenchFake();
  api!: BenchProcess;
  worker!: BenchProcess;
  apiUrl = '';
  private workerEnv: Record<string, string> = {};

  constructor(private readonly options: EnvOptions) {}

  async start(log: (line: string) => void): Promise<void> {
    if (this.options.clusterMasters) await this.startCluster(this.options.clusterMasters, log);
    else await this.startSingle(log);

    const fakeUrl = await this.fake.start();
    log(`fake Ollama: ${fakeUrl} (in the bench process)`);

    const port = await freePort();
    this.apiUrl = `http://127.0.0.1:${port}`;
    this.api = await BenchProcess.startApi('api', port, this.appEnv({ WORKER_ENABLED: 'false' }));
    log(`api: ${this.apiUrl} (pid ${this.api.pid})`);
    await this.startWorker(this.options.workerEnv);
    log(`worker: pid ${this.worker.pid}`);
  }

  private async startSingle(log: (line: string) => void): Promise<void> {
    if (this.options.externalRedisUrl) {
      this.redisUrl = withDatabase(this.options.externalRedisUrl);
      log(`redis: using REDIS_URL ${this.redisUrl.replace(/\/\/[^@]*@/, '//***@')} (database flushed first)`);
    } else {
      if (!hasRedisServerBinary()) throw new Error(NO_REDIS_MESSAGE);
      this.redisServer = await RedisServer.start();
      this.redisUrl = this.redisServer.url;
      log(`redis: own redis-server on ${this.redisUrl} (pid ${this.redisServer.pid})`);
    }
    const redis = new Redis(this.redisUrl, { protocol: 2, lazyConnect: true, maxRetriesPerRequest: 1 });
    this.redis = redis;
    this.nodes = [redis];
    await redis.connect();
    await redis.flushdb();
  }

  /** Never an external cluster: the bench empties every node it runs on, and owns these. */
  private async startCluster(masters: number, log: (line: string) => void): Promise<void> {
    if (!hasRedisServerBinary()) throw new Error(NO_REDIS_MESSAGE);
    if (this.options.externalRedisUrl) log('redis: --cluster starts its own cluster; REDIS_URL is ignored');
    log(`redis cluster: ${masters} masters, no replicas (test/support/redis-cluster.ts)`);
    this.cluster = await RedisCluster.start({ masters, replicas: 0 });
    this.nodes = this.cluster.ports.map((port) => new Redis({ host: '127.0.0.1', port, protocol: 2, maxRetriesPerRequest: 1 }));
    this.redis = new Cluster(
      this.cluster.ports.map((port) => ({ host: '127.0.0.1', port })),
      { redisOptions: { protocol: 2, maxRetriesPerRequest: 1 }, lazyConnect: true },
    );
    await this.redis.connect();
    await Promise.all(this.nodes.map((n) => n.flushdb()));
    this.masters = await describeMasters(this.nodes, this.options.partitions);
    log(
      `redis cluster ready (pids ${this.cluster.pids.join(', ')}): ${this.masters
        .map((m) => `${m.node} ${m.slots} slots, ${m.partitions} partitions${m.globalKeys.length ? ` + ${m.globalKeys.join(', ')}` : ''}`)
        .join('; ')}`,
    );
  }

  get currentWorkerEnv(): Record<string, string> {
    return this.workerEnv;
  }

  /** Starts the worker with `extra` on top of the app env (replacing a running one). */
  async startWorker(extra: Record<string, string>): Promise<void> {
    if (this.worker?.running) await this.worker.stop();
    this.workerEnv = { ...this.options.workerEnv, ...extra };
    this.worker = await BenchProcess.startWorker('worker', this.appEnv(this.workerEnv), this.nodes);
  }

  appEnv(extra: Record<string, string> = {}): Record<string, string> {
    const redis: Record<string, string> = this.cluster ? { REDIS_CLUSTER_NODES: this.cluster.seeds } : { REDIS_URL: this.redisUrl };
    return { ...this.options.appEnv, ...redis, OLLAMA_HOST: this.fake.url, ...extra };
  }

  async stop(log: (line: string) => void): Promise<void> {
    const steps: [string, () => Promise<unknown>][] = [
      ['worker', async () => this.worker && log(`worker: ${await this.worker.stop()}`)],
      ['api', async () => this.api && log(`api: ${await this.api.stop()}`)],
      ['fake Ollama', () => this.fake.stop()],
      ['redis clients', () => Promise.all([...new Set([this.redis, ...this.nodes])].filter(Boolean).map(quit))],
      ['redis-server', async () => this.redisServer && (await this.redisServer.dispose())],
      ['redis cluster', async () => this.cluster && (await this.cluster.dispose())],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        log(`stopping ${name} failed: ${(err as Error).message}`);
      }
    }
  }
}

async function quit(client: Redis | Cluster): Promise<void> {
  await client.quit().catch(() => client.disconnect());
}

/** A given REDIS_URL without a database number gets database 15 (which the bench flushes). */
function withDatabase(url: string): string {
  const u = new URL(url);
  if (!u.pathname || u.pathname === '/') u.pathname = '/15';
  return u.toString();
}
