import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { AppConfig } from '../config/app-config';
import { decodeCommand } from '../event-bus/envelopes';
import { EventBus } from '../event-bus/event-bus.service';
import { RedisConnections } from '../event-bus/redis-connections';
import { STREAMS } from '../event-bus/stream-names';
import { StreamEntry } from '../event-bus/stream-reply';
import { ABORTED, sleep, untilAborted } from '../event-bus/stream-tail';
import { WorkerGroup } from '../event-bus/worker-group';
import { ABORT_CANCELLED, ABORT_SHUTDOWN } from './abort-reasons';
import { CancelListener } from './cancel-listener';
import { Metrics } from '../observability/metrics.service';
import { GenerationSlots } from './generation-slots';
import { GenerationRunner } from './generation.runner';

const BLOCK_MS = 2000;
/**
 * After the grace period, how long aborted generations get to settle. They only have Redis calls
 * left, each bounded by the command timeout; a Redis that hangs must not hold the shutdown longer.
 */
const ABANDON_WAIT_MS = 1000;

interface InFlight {
  controller: AbortController;
  done: Promise<void>;
  /** Known once the command is decoded. */
  messageId?: string;
}

/**
 * Consumes chat:incoming through the `ai-workers` group and runs up to WORKER_CONCURRENCY
 * generations at once. It asks Redis only for as many commands as it has free slots, so work it
 * cannot start stays available to other workers. A command is acknowledged only after its outcome
 * is published and stored. Live work has its claim refreshed; work of dead workers is taken over.
 */
@Injectable()
export class ChatWorker implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(ChatWorker.name);
  readonly consumer = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private readonly inFlight = new Map<string, InFlight>();
  private connection: Redis | null = null;
  private loop: Promise<void> | null = null;
  private maintenance: NodeJS.Timeout | null = null;
  private maintaining = false;
  private stopping = false;
  /** Aborted by `stop`: ends a read or a backoff the read loop is waiting on. */
  private halt = new AbortController();
  private slotFreed: (() => void) | null = null;
  private readonly slots: GenerationSlots;

  constructor(
    private readonly config: AppConfig,
    private readonly redis: RedisConnections,
    private readonly bus: EventBus,
    private readonly group: WorkerGroup,
    private readonly runner: GenerationRunner,
    private readonly cancels: CancelListener,
    private readonly metrics: Metrics,
  ) {
    this.slots = new GenerationSlots(config.worker.concurrency);
    this.slots.onRelease(() => this.slotFreed?.());
  }

  onApplicationBootstrap(): void {
    if (this.config.worker.enabled) this.start();
  }

  start(): void {
    if (this.loop) return;
    this.stopping = false;
    this.halt = new AbortController();
    this.connection = this.redis.openBlocking(`worker:${this.consumer}`);
    this.loop = this.readLoop(this.connection);
    this.cancels.start(({ messageId }) => this.cancel(messageId));
    this.maintenance = setInterval(() => void this.maintain(), Math.max(100, Math.floor(this.config.worker.claimIdleMs / 3)));
    this.logger.log(`worker ${this.consumer} consuming ${STREAMS.incoming} (concurrency ${this.config.worker.concurrency})`);
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.stop();
  }

  /**
   * Stop reading, give in-flight generations SHUTDOWN_GRACE_MS to finish, then abort the rest
   * without acknowledging them: they stay pending and another worker takes them over. Every wait
   * here is bounded, whatever Redis does (refusing connections or hanging with them open).
   */
  async stop(): Promise<void> {
    if (!this.loop) return;
    this.stopping = true;
    this.halt.abort();
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
        for (const f of this.inFlight.values()) f.controller.abort(ABORT_SHUTDOWN);
        const settled = await Promise.race([all.then(() => true), sleep(ABANDON_WAIT_MS).then(() => false)]);
        // Still unacknowledged, so another worker takes them over; a late ack from here is harmless.
        if (!settled) this.logger.warn(`${this.inFlight.size} aborted generation(s) still waiting on Redis; not waiting for them`);
      }
    }
    this.cancels.stop();
    // Claims were kept fresh until every generation settled; stop only now.
    if (this.maintenance) clearInterval(this.maintenance);
    this.maintenance = null;
  }

  /** Stops the generation of `messageId` if this process runs it. */
  private cancel(messageId: string): void {
    for (const f of this.inFlight.values()) {
      if (f.messageId === messageId) {
        this.logger.log({ msg: 'cancelling', messageId });
        f.controller.abort(ABORT_CANCELLED);
      }
    }
  }

  private async readLoop(connection: Redis): Promise<void> {
    const halt = this.halt.signal;
    let groupReady = false;
    let backoffMs = 100;
    while (!this.stopping) {
      const free = this.freeSlots();
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        this.slotFreed = null;
        continue;
      }
      let entries: StreamEntry[] | typeof ABORTED;
      try {
        // Not awaited past `stop`: a command queued while Redis is down may never settle once
        // the connection is released (see untilAborted).
        entries = await untilAborted(this.readNew(connection, free, groupReady), halt);
        groupReady = true;
        backoffMs = 100;
      } catch (err) {
        if (this.stopping || connection.status === 'end') break;
        const message = (err as Error).message;
        // The stream or group vanished (Redis restarted without persistence, or FLUSHALL): recreate it.
        if (message.includes('NOGROUP')) groupReady = false;
        this.logger.warn(`reading ${STREAMS.incoming} failed, retrying in ${backoffMs} ms: ${message}`);
        await untilAborted(sleep(backoffMs), halt);
        backoffMs = Math.min(backoffMs * 2, 2000);
        continue;
      }
      if (entries === ABORTED) break;
      for (const entry of entries) this.dispatch(entry, 1);
    }
  }

  /** Creates the group first unless it is known to exist, then reads up to `count` new commands. */
  private async readNew(connection: Redis, count: number, groupReady: boolean): Promise<StreamEntry[]> {
    if (!groupReady) await this.group.ensure(connection);
    return this.group.readNew(connection, this.consumer, count, BLOCK_MS);
  }

  /**
   * How many commands to take now: no more than free generation slots, and no more held in all
   * (running + waiting for an earlier message of their session) than four times the concurrency.
   */
  private freeSlots(): number {
    const maxHeld = this.config.worker.concurrency * 4;
    return Math.min(this.slots.free, maxHeld - this.inFlight.size);
  }

  /** Refreshes the claims of live work, then takes over stalled work if there is room. */
  private async maintain(): Promise<void> {
    if (this.maintaining) return;
    this.maintaining = true;
    try {
      const lost = await this.group.keepAlive(this.consumer, [...this.inFlight.keys()]);
      for (const id of lost) {
        // Another worker took it over while this process was stalled: two must never answer one message.
        this.logger.warn(`lost the claim on ${id} to another worker; stopping it here`);
        this.inFlight.get(id)?.controller.abort(ABORT_SHUTDOWN);
      }
      // Claims only need a generation slot: the claimed message may be the one others wait for.
      const free = this.slots.free;
      if (this.stopping || free <= 0) return;
      const { claimed, lost: trimmed } = await this.group.claimStalled(this.consumer, this.config.worker.claimIdleMs, free);
      for (const id of trimmed) {
        // Trimmed while pending: nothing left to answer. STREAM_MAX_LEN is far above MAX_BACKLOG to make this rare.
        this.logger.error(`pending command ${id} was trimmed from ${STREAMS.incoming} before it was answered`);
      }
      for (const entry of claimed) {
        if (this.inFlight.has(entry.id)) continue;
        this.logger.warn(`taking over ${entry.id} (delivery ${entry.deliveries}) from a silent worker`);
        this.dispatch(entry, entry.deliveries);
      }
    } catch (err) {
      this.logger.warn(`claim maintenance failed: ${(err as Error).message}`);
    } finally {
      this.maintaining = false;
    }
  }

  private dispatch(entry: StreamEntry, attempt: number): void {
    const task: InFlight = { controller: new AbortController(), done: Promise.resolve() };
    // Registered before it starts, so a cancel or shutdown can reach it from the first moment.
    this.inFlight.set(entry.id, task);
    task.done = this.process(entry, attempt, task)
      .catch((err: unknown) => {
        // Not acknowledged: the entry stays pending and another worker takes it over.
        this.logger.error(`processing ${entry.id} failed, left pending: ${(err as Error).message}`);
      })
      .finally(() => {
        this.inFlight.delete(entry.id);
        this.slotFreed?.();
      });
  }

  private async process(entry: StreamEntry, attempt: number, task: InFlight): Promise<void> {
    const signal = task.controller.signal;
    const decoded = decodeCommand(entry.fields);
    if (!decoded.ok) {
      await this.bus.deadLetter({
        stream: STREAMS.incoming,
        entryId: entry.id,
        reason: `malformed command: ${decoded.reason}`,
        fields: entry.fields,
      });
      this.metrics.deadLetters.inc();
      await this.group.ack(entry.id);
      return;
    }
    task.messageId = decoded.value.payload.messageId;
    const delivery = { entryId: entry.id, attempt };
    const result =
      attempt > this.config.worker.maxDeliveries
        ? await this.runner.giveUp(decoded.value.payload, delivery)
        : await this.runner.run(decoded.value.payload, delivery, signal, this.slots);
    if (result === 'finished') await this.group.ack(entry.id);
  }
}
