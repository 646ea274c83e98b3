/**
 * CPU profiles of the app processes over chosen windows, through the inspector protocol: with
 * `--profile` the API and worker are started with `--inspect=127.0.0.1:0`, and the bench starts and
 * stops V8's sampling profiler around each phase, so start-up and idle time stay out of the numbers.
 */
import WebSocket from 'ws';
import type { BenchProcess } from './procs';
import { sleep } from './stats';

export class InspectorSession {
  private nextId = 1;
  private readonly pending = new Map<number, (result: unknown) => void>();

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const text = Array.isArray(data)
        ? Buffer.concat(data).toString()
        : data instanceof ArrayBuffer
          ? Buffer.from(data).toString()
          : data.toString();
      const msg = JSON.parse(text) as { id?: number; result?: unknown; error?: unknown };
      if (msg.id !== undefined) this.pending.get(msg.id)?.(msg.error ? { error: msg.error } : msg.result);
    });
  }

  static async attach(proc: BenchProcess): Promise<InspectorSession> {
    let url: string | undefined;
    for (let i = 0; i < 100 && !url; i++) {
      url = proc.log.match(/Debugger listening on (ws:\/\/\S+)/)?.[1];
      if (!url) await sleep(50);
    }
    if (!url) throw new Error(`no inspector URL in the output of ${proc.name}`);
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const session = new InspectorSession(ws);
    await session.call('Profiler.enable');
    await session.call('Profiler.setSamplingInterval', { interval: 200 });
    return session;
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, (r) => {
        this.pending.delete(id);
        resolve(r);
      });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  async start(): Promise<void> {
    await this.call('Profiler.start');
  }

  /** Stops the profiler and returns the .cpuprofile JSON. */
  async stop(): Promise<unknown> {
    const result = (await this.call('Profiler.stop')) as { profile?: unknown };
    return result.profile;
  }

  close(): void {
    this.ws.close();
  }
}
