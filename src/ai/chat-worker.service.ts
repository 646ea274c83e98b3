import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { AppConfig } from '../config/app-config';
import { decodeCommand } from '../event-bus/envelopes';
import { EventBus } from '../event-bus/event-bus.service';
import { RedisConnections } from '../event-bus/redis-connections';
import { STREAMS, WORKER_GROUP } from '../event-bus/stream-names';
import { sleep } from '../event-bus/stream-tail';
import { parseReadReply, StreamEntry } from '../event-bus/stream-reply';
import { GenerationRunner } from './generation.runner';

const BLOCK_MS = 2000;

interface InFlight {
  controller: AbortController;
  done: Promise<void>;
}

/**
 * Consumes chat:incoming through the `ai-workers` group and runs up to WORKER_CONCURRENCY
 * generations at once. It only asks Redis for as many commands as it has free slots, so work it
 * cannot start stays in the stream for other workers. A command is acknowledged only after its
 * outcome is published and stored.
 */
@Injectable()
export class ChatWorker implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(ChatWorker.name);
  readonly consumer = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private readonly inFlight = new Map<string, InFlight>();
  private connection: Redis | null = null;
  private loop: Promise<void> | null = null;
  private stopping = false;
  private slotFreed: (() => void) | null = null;

  constructor(
    private readonly config: AppConfig,
    private readonly redis: RedisConnections,
    private readonly bus: EventBus,
    private readonly runner: GenerationRunner,
  ) {}

  onApplicationBootstrap(): void {
    if (this.config.worker.enabled) this.start();
  }

  start(): void {
    if (this.loop) return;
    this.stopping = false;
    this.connection = this.redis.openBlocking(`worker:${this.consumer}`);
    this.loop = this.readLoop(this.connection);
    this.logger.log(`worker ${this.consumer} consuming ${STREAMS.incoming} (concurrency ${this.config.worker.concurrency})`);
  }

  get activeGenerations(): number {
    return this.inFlight.size;
  }

  /**
   * Stop reading, give in-flight generations SHUTDOWN_GRACE_MS to finish, then abort the rest
   * without acknowledging them: they stay pending in the group for another worker.
   */
  async beforeApplicationShutdown(): Promise<void> {
    await this.stop();
  }

  async stop(): Promise<void> {
    if (!this.loop) return;
    this.stopping = true;
    this.slotFreed?.();
    if (this.connection) this.redis.release(this.connection);
    this.connection = null;
    await this.loop;
    this.loop = null;
    if (this.inFlight.size > 0) {
      this.logger.log(`waiting up to ${this.config.worker.shutdownGraceMs} ms for ${this.inFlight.size} generation(s)`);
      const all = Promise.all([...this.inFlight.values()].map((f) => f.done));
      const graceOver = await Promise.race([all.then(() => false), sleep(this.config.worker.shutdownGraceMs).then(() => true)]);
      if (graceOver) {
        this.logger.warn(`leaving ${this.inFlight.size} unfinished generation(s) to other workers`);
        for (const f of this.inFlight.values()) f.controller.abort();
        await all;
      }
    }
  }

  private async readLoop(connection: Redis): Promise<void> {
    let groupReady = false;
    let backoffMs = 100;
    while (!this.stopping) {
      const free = this.config.worker.concurrency - this.inFlight.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        this.slotFreed = null;
        continue;
      }
      let entries: StreamEntry[];
      try {
        if (!groupReady) {
          // On the reader's own connection: it queues while Redis (re)connects instead of failing.
          await this.bus.ensureWorkerGroup(connection);
          groupReady = true;
        }
        const reply: unknown = await connection.xreadgroup(
          'GROUP', WORKER_GROUP, this.consumer, 'COUNT', free, 'BLOCK', BLOCK_MS, 'STREAMS', STREAMS.incoming, '>',
        );
        entries = parseReadReply(reply);
        backoffMs = 100;
      } catch (err) {
        if (this.stopping) break;
        const message = (err as Error).message;
        // The stream or group vanished (Redis restarted without persistence, or FLUSHALL): recreate it.
        if (message.includes('NOGROUP')) groupReady = false;
        this.logger.warn(`reading ${STREAMS.incoming} failed, retrying in ${backoffMs} ms: ${message}`);
        await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 2000);
        continue;
      }
      for (const entry of entries) this.dispatch(entry, 1);
    }
  }

  private dispatch(entry: StreamEntry, attempt: number): void {
    const controller = new AbortController();
    const done = this.process(entry, attempt, controller.signal)
      .catch((err: unknown) => {
        // Not acknowledged: the entry stays pending and is not lost.
        this.logger.error(`processing ${entry.id} failed, left pending: ${(err as Error).message}`);
      })
      .finally(() => {
        this.inFlight.delete(entry.id);
        this.slotFreed?.();
      });
    this.inFlight.set(entry.id, { controller, done });
  }

  private async process(entry: StreamEntry, attempt: number, signal: AbortSignal): Promise<void> {
    const decoded = decodeCommand(entry.fields);
    if (!decoded.ok) {
      await this.bus.deadLetter({ stream: STREAMS.incoming, entryId: entry.id, reason: `malformed command: ${decoded.reason}`, fields: entry.fields });
      await this.bus.ack(entry);
      return;
    }
    const result = await this.runner.run(decoded.value.payload, { entryId: entry.id, attempt }, signal);
    if (result === 'finished') await this.bus.ack(entry);
  }
}
