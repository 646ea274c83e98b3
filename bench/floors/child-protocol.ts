/**
 * The child side of a floor measurement (bench/phases/floors.ts). A floor child runs one part of the
 * stack on its own: it prints `ready <json>` once it can be measured, counts its work between the
 * bench's `start` and `stop` lines on stdin, and answers `stop` with `result <json>`: its counters
 * and the CPU seconds it used in between (process.cpuUsage, so no /proc parsing is needed here).
 */
import { createInterface } from 'node:readline';

export interface FloorChildHooks {
  /** called on `start` (load-generating children begin here) */
  start?: () => void;
  /** called on `stop`; returns the counters of the window */
  stop: () => Promise<Record<string, number>> | Record<string, number>;
}

export function floorParams<T>(): T {
  return JSON.parse(process.argv[2] ?? '{}') as T;
}

export function runFloorChild(ready: Record<string, unknown>, hooks: FloorChildHooks): void {
  let cpuAtStart: NodeJS.CpuUsage | null = null;
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line === 'start') {
      cpuAtStart = process.cpuUsage();
      hooks.start?.();
    } else if (line === 'stop') {
      const cpu = process.cpuUsage(cpuAtStart ?? undefined);
      void Promise.resolve(hooks.stop()).then(
        (counters) => process.stdout.write(`result ${JSON.stringify({ ...counters, cpuSeconds: (cpu.user + cpu.system) / 1e6 })}\n`),
        (err: Error) => process.stdout.write(`error ${JSON.stringify(String(err.stack ?? err))}\n`),
      );
    }
  });
  // The bench closing our stdin (or dying) ends us.
  lines.on('close', () => process.exit(0));
  process.stdout.write(`ready ${JSON.stringify(ready)}\n`);
}
