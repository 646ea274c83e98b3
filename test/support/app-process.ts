import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

/** npm runs the tests from the project root. */
const ROOT = process.cwd();
/** The built service: dist/ (what `npm test` builds), or APP_DIST to run a build kept elsewhere. */
const DIST = process.env.APP_DIST ?? join(ROOT, 'dist');

/**
 * How a process ended. Nest's shutdown hooks re-raise the signal after cleaning up, so a graceful
 * stop shows as `signal: 'SIGTERM'` (not code 0); `escalated` means it had to be SIGKILLed.
 */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  escalated: boolean;
}

export function exitedGracefully(status: ExitStatus): boolean {
  return !status.escalated && (status.code === 0 || status.signal === 'SIGTERM');
}

export interface AppProcessOptions {
  /** `main` is the API (+ in-process worker unless WORKER_ENABLED=false); `worker` the standalone worker. */
  entry?: 'main' | 'worker';
  env: Record<string, string>;
  /** How long to wait for the ready line. */
  startTimeoutMs?: number;
}

/**
 * The built service (dist/) running as a real child process, the way `npm start` and
 * `npm run start:worker` run it. Output is kept for assertions and for failure messages.
 */
export class AppProcess {
  readonly output: string[] = [];
  private exited: Promise<ExitStatus>;
  private escalated = false;
  url = '';

  private constructor(private readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, escalated: this.escalated })));
  }

  static async start(options: AppProcessOptions): Promise<AppProcess> {
    const entry = options.entry ?? 'main';
    const child = spawn(process.execPath, [join(DIST, `${entry}.js`)], {
      cwd: ROOT,
      // Every test client connects from 127.0.0.1, and a suite makes far more sessions a minute than
      // a person: the new-session rate is off unless a test sets it.
      env: {
        PATH: process.env.PATH ?? '',
        NO_COLOR: '1',
        PORT: '0',
        LOG_LEVEL: 'info',
        RATE_LIMIT_NEW_SESSIONS_PER_MINUTE: '0',
        // Titles are extra model requests after a chat's first answer: off unless a test is about them.
        TITLES: 'false',
        ...options.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const app = new AppProcess(child).collect();
    const ready = entry === 'main' ? /listening on (http:\/\/\S+)/ : /AI worker ready/;
    await app.waitForOutput(ready, options.startTimeoutMs ?? 20_000).then((match) => {
      if (entry === 'main') app.url = match[1].replace('[::1]', 'localhost').replace('[::]', 'localhost');
    });
    return app;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get log(): string {
    return this.output.join('');
  }

  /** Resolves with the match once a line of output matches. */
  waitForOutput(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = this.log.match(pattern);
        if (match) {
          cleanup();
          resolve(match);
        }
      };
      const onExit = (code: number | null) => {
        cleanup();
        reject(new Error(`process exited (${code}) before printing ${pattern}:\n${this.log}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${pattern}:\n${this.log}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.child.stdout?.off('data', check);
        this.child.stderr?.off('data', check);
        this.child.off('exit', onExit);
      };
      this.child.stdout?.on('data', check);
      this.child.stderr?.on('data', check);
      this.child.once('exit', onExit);
      check();
    });
  }

  waitForExit(): Promise<ExitStatus> {
    return this.exited;
  }

  /** Graceful stop (SIGTERM), escalating to SIGKILL after `timeoutMs`. */
  async stop(timeoutMs = 15_000): Promise<ExitStatus> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => {
        this.escalated = true;
        this.child.kill('SIGKILL');
      }, timeoutMs);
      await this.exited;
      clearTimeout(timer);
    }
    return this.exited;
  }

  /** kill -9: no shutdown hooks run. */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** Collects output; called right after spawn. */
  collect(): this {
    this.child.stdout?.on('data', (c: Buffer) => this.output.push(c.toString()));
    this.child.stderr?.on('data', (c: Buffer) => this.output.push(c.toString()));
    return this;
  }
}
