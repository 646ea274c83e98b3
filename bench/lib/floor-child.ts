/**
 * The bench side of a floor child (bench/floors/*.ts): starts it with ts-node, waits for its
 * `ready` line, and brackets a measuring window with `start` / `stop` (see child-protocol.ts).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { track } from './procs';

export type FloorCounters = Record<string, number> & { cpuSeconds: number };

export class FloorChild {
  private readonly replies: ((line: string) => void)[] = [];
  private readonly tail: string[] = [];

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const waiter = this.replies.shift();
      if (waiter) waiter(line);
      else this.tail.push(line);
    });
    child.stderr!.on('data', (chunk: Buffer) => this.tail.push(chunk.toString()));
    track(child);
  }

  static async start(
    file: string,
    params: Record<string, unknown>,
    timeoutMs = 30_000,
  ): Promise<{ child: FloorChild; ready: Record<string, number> }> {
    const child = spawn(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', join(__dirname, '..', 'floors', file), JSON.stringify(params)],
      {
        env: { PATH: process.env.PATH ?? '', NO_COLOR: '1' },
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    const floor = new FloorChild(file, child);
    const line = await floor.next(timeoutMs);
    if (!line.startsWith('ready ')) throw new Error(`${file}: expected "ready", got: ${line}\n${floor.tail.join('\n')}`);
    return { child: floor, ready: JSON.parse(line.slice('ready '.length)) as Record<string, number> };
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  begin(): void {
    this.child.stdin!.write('start\n');
  }

  async end(timeoutMs = 30_000): Promise<FloorCounters> {
    this.child.stdin!.write('stop\n');
    const line = await this.next(timeoutMs);
    if (!line.startsWith('result ')) throw new Error(`${this.name}: ${line}\n${this.tail.join('\n')}`);
    return JSON.parse(line.slice('result '.length)) as FloorCounters;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }

  private next(timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.name}: no answer within ${timeoutMs} ms\n${this.tail.join('\n')}`)),
        timeoutMs,
      );
      const onExit = () =>
        reject(new Error(`${this.name} exited (${this.child.exitCode ?? this.child.signalCode})\n${this.tail.join('\n')}`));
      this.child.once('exit', onExit);
      this.replies.push((line) => {
        clearTimeout(timer);
        this.child.off('exit', onExit);
        resolve(line);
      });
    });
  }
}
