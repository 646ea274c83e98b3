import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const NO_REDIS_MESSAGE =
  'The tests need Redis. Either set REDIS_URL (e.g. redis://127.0.0.1:6379; tests use and FLUSH databases 1-15 of it) ' +
  'or install redis-server so the tests can start their own (Debian/Ubuntu: `sudo apt-get install redis-server`, ' +
  'macOS: `brew install redis`).';

export function hasRedisServerBinary(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * A real redis-server owned by a test: started on a free port in a temporary directory, and
 * stoppable/killable/restartable on the same port (with or without its append-only file).
 */
export interface RedisServerOptions {
  /** Append-only file on (fsync always), so a restart finds the data. */
  persistent?: boolean;
  /** Its working directory (a new temporary one unless given); dispose removes it. */
  dir?: string;
  /** More redis-server arguments, e.g. a cluster node's. */
  args?: string[];
}

export class RedisServer {
  private process: ChildProcess | null = null;
  private readonly dir: string;
  private readonly persistent: boolean;
  private readonly args: string[];

  private constructor(
    readonly port: number,
    opts: RedisServerOptions,
  ) {
    this.dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'ai-assistant-redis-'));
    this.persistent = opts.persistent ?? false;
    this.args = opts.args ?? [];
  }

  static async start(opts: RedisServerOptions = {}, port?: number): Promise<RedisServer> {
    if (!hasRedisServerBinary()) throw new Error(NO_REDIS_MESSAGE);
    const server = new RedisServer(port ?? (await freePort()), opts);
    await server.startProcess();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.process?.pid;
  }

  async startProcess(): Promise<void> {
    const args = [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--dir',
      this.dir,
      '--save',
      '',
      '--appendonly',
      this.persistent ? 'yes' : 'no',
      '--appendfsync',
      'always',
      '--daemonize',
      'no',
      ...this.args,
    ];
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.process = child;
    await new Promise<void>((resolve, reject) => {
      let output = '';
      const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${output}`)), 10_000);
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
        reject(new Error(`redis-server exited with ${code}:\n${output}`));
      });
    });
  }

  /** SIGKILL: Redis vanishes without saving. */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }

  async stop(): Promise<void> {
    await this.signal('SIGTERM');
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.startProcess();
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.process;
    this.process = null;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  }
}
