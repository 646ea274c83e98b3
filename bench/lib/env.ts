/**
 * Everything the bench runs against, started by the bench itself: Redis (its own redis-server on a
 * free port unless REDIS_URL is given), the fake Ollama (in this process), one API process
 * (WORKER_ENABLED=false) and one standalone worker process. Stopped in reverse order, always.
 */
import { Redis } from 'ioredis';
import { freePort, hasRedisServerBinary, NO_REDIS_MESSAGE, RedisServer } from '../../test/support/redis-server';
import { BenchFake } from './fake';
import { BenchProcess } from './procs';

export interface EnvOptions {
  /** Environment of both app processes (without REDIS_URL / OLLAMA_HOST / PORT). */
  appEnv: Record<string, string>;
  /** Extra env of the worker only. */
  workerEnv: Record<string, string>;
  externalRedisUrl?: string;
}

export class BenchEnv {
  redisServer: RedisServer | null = null;
  redisUrl = '';
  redis!: Redis;
  readonly fake = new BenchFake();
  api!: BenchProcess;
  worker!: BenchProcess;
  apiUrl = '';
  private workerEnv: Record<string, string> = {};

  constructor(private readonly options: EnvOptions) {}

  async start(log: (line: string) => void): Promise<void> {
    if (this.options.externalRedisUrl) {
      this.redisUrl = withDatabase(this.options.externalRedisUrl);
      log(`redis: using REDIS_URL ${this.redisUrl.replace(/\/\/[^@]*@/, '//***@')} (database flushed first)`);
    } else {
      if (!hasRedisServerBinary()) throw new Error(NO_REDIS_MESSAGE);
      this.redisServer = await RedisServer.start();
      this.redisUrl = this.redisServer.url;
      log(`redis: own redis-server on ${this.redisUrl} (pid ${this.redisServer.pid})`);
    }
    this.redis = new Redis(this.redisUrl, { protocol: 2, lazyConnect: true, maxRetriesPerRequest: 1 });
    await this.redis.connect();
    await this.redis.flushdb();

    const fakeUrl = await this.fake.start();
    log(`fake Ollama: ${fakeUrl} (in the bench process)`);

    const port = await freePort();
    this.apiUrl = `http://127.0.0.1:${port}`;
    this.api = await BenchProcess.startApi('api', port, this.appEnv({ WORKER_ENABLED: 'false' }));
    log(`api: ${this.apiUrl} (pid ${this.api.pid})`);
    await this.startWorker(this.options.workerEnv);
    log(`worker: pid ${this.worker.pid}`);
  }

  get currentWorkerEnv(): Record<string, string> {
    return this.workerEnv;
  }

  /** Starts the worker with `extra` on top of the app env (replacing a running one). */
  async startWorker(extra: Record<string, string>): Promise<void> {
    if (this.worker?.running) await this.worker.stop();
    this.workerEnv = { ...this.options.workerEnv, ...extra };
    this.worker = await BenchProcess.startWorker('worker', this.appEnv(this.workerEnv), this.redis);
  }

  appEnv(extra: Record<string, string> = {}): Record<string, string> {
    return { ...this.options.appEnv, REDIS_URL: this.redisUrl, OLLAMA_HOST: this.fake.url, ...extra };
  }

  async stop(log: (line: string) => void): Promise<void> {
    const steps: [string, () => Promise<unknown>][] = [
      ['worker', async () => this.worker && log(`worker: ${await this.worker.stop()}`)],
      ['api', async () => this.api && log(`api: ${await this.api.stop()}`)],
      ['fake Ollama', () => this.fake.stop()],
      ['redis client', async () => this.redis && (await this.redis.quit().catch(() => this.redis.disconnect()))],
      ['redis-server', async () => this.redisServer && (await this.redisServer.dispose())],
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

/** A given REDIS_URL without a database number gets database 15 (which the bench flushes). */
function withDatabase(url: string): string {
  const u = new URL(url);
  if (!u.pathname || u.pathname === '/') u.pathname = '/15';
  return u.toString();
}
