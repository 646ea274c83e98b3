import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { AppConfig } from '../config/app-config';
import { validateEnvironment } from '../config/environment';
import { encodeCommand } from '../event-bus/envelopes';
import type { EventBus } from '../event-bus/event-bus.service';
import type { RedisConnections } from '../event-bus/redis-connections';
import type { StreamEntry } from '../event-bus/stream-reply';
import type { WorkerGroup } from '../event-bus/worker-group';
import type { Metrics } from '../observability/metrics.service';
import type { CancelListener } from './cancel-listener';
import { ChatWorker } from './chat-worker.service';
import type { GenerationRunner, RunResult } from './generation.runner';
import { within } from '../../test/support/within';

const GRACE_MS = 100;
const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

function command(): StreamEntry {
  const fields = encodeCommand({
    type: 'chat.generate',
    payload: { sessionId: randomUUID(), messageId: randomUUID(), content: 'hi', createdAt: new Date().toISOString() },
  });
  return { id: '1-0', fields };
}

/**
 * A worker whose Redis never answers once it is gone: `reads` are the replies of its successive
 * reads (after them, reads never settle, like a read queued on a connection released while Redis
 * is unreachable), and `run` is the generation.
 */
function worker(reads: StreamEntry[][], run: (signal: AbortSignal) => Promise<RunResult>): ChatWorker {
  const config = new AppConfig(validateEnvironment({ SHUTDOWN_GRACE_MS: String(GRACE_MS), WORKER_ENABLED: 'false' }));
  const connection = { status: 'ready' } as unknown as Redis;
  const redis = { openBlocking: () => connection, release: () => undefined } as unknown as RedisConnections;
  const group = {
    ensure: () => Promise.resolve(),
    readNew: async () => reads.shift() ?? never<StreamEntry[]>(),
    keepAlive: () => Promise.resolve([]),
    claimStalled: () => Promise.resolve({ claimed: [], lost: [] }),
    ack: () => Promise.resolve(),
  } as unknown as WorkerGroup;
  const runner = { run: (_c: unknown, _d: unknown, signal: AbortSignal) => run(signal) } as unknown as GenerationRunner;
  const cancels = { start: () => undefined, stop: () => undefined } as unknown as CancelListener;
  return new ChatWorker(config, redis, {} as EventBus, group, runner, cancels, {} as Metrics);
}

describe('ChatWorker.stop while Redis is unreachable', () => {
  it('returns though the read it waits on never settles', async () => {
    const subject = worker([], () => Promise.resolve('finished'));
    subject.start();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await within(subject.stop(), 500)).toBe('done');
  });

  it('returns shortly after the grace period though an aborted generation never settles', async () => {
    let aborted = false;
    const subject = worker([[command()]], (signal) => {
      signal.addEventListener('abort', () => (aborted = true));
      return never<RunResult>(); // stuck on a Redis that hangs, even once aborted
    });
    subject.start();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await within(subject.stop(), GRACE_MS + 2000)).toBe('done');
    expect(aborted).toBe(true);
  });
});
