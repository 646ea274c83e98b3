import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { RedisConnections } from './redis-connections';
import { runScript } from './scripts';
import { GLOBAL_KEYS } from './stream-names';

/**
 * Which workers are alive: each heartbeats into `chat:workers` (consumer -> Redis time), and one
 * silent for WORKER_LIVENESS_MS is dead (docs/design.md, "Liveness"). Only the Redis clock is compared.
 */
@Injectable()
export class WorkerRegistry {
  constructor(
    private readonly redis: RedisConnections,
    private readonly config: AppConfig,
  ) {}

  /**
   * Records that `consumer` is alive (or, with `alive` false, that it stops now and its unfinished
   * work is to be taken over at once). Returns consumers silent for longer than the liveness.
   */
  async heartbeat(consumer: string, alive = true): Promise<string[]> {
    const { values } = await runScript(
      this.redis.commands,
      'heartbeat',
      [GLOBAL_KEYS.workers],
      [consumer, this.config.worker.livenessMs, alive ? '1' : '0'],
    );
    return values.map(String).filter((c) => c !== consumer);
  }

  async isAlive(consumer: string): Promise<boolean> {
    if (!consumer) return false;
    const { result } = await runScript(this.redis.commands, 'alive', [GLOBAL_KEYS.workers], [consumer, this.config.worker.livenessMs]);
    return result === 'alive';
  }

  /**
   * Forgets a dead consumer with nothing left pending, once it has been silent for `silentMs`: until
   * then a read it still had open may hand it an entry, which must be taken over.
   */
  async forget(consumer: string, silentMs: number): Promise<boolean> {
    const { result } = await runScript(this.redis.commands, 'forget', [GLOBAL_KEYS.workers], [consumer, silentMs]);
    return result === 'forgotten';
  }
}
