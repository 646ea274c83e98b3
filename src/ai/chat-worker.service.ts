import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import type { RedisClient } from '../event-bus/redis-client';
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { hostname } from 'node:os';
import { AppConfig } from '../config/app-config';
import { RedisConnections, whenReady } from '../event-bus/redis-connections';
import { ABORTED, pause, sleep, untilAborted } from '../event-bus/stream-tail';
import { KeyLayout, PartitionKeys } from '../event-bus/stream-names';
import { PartitionEntry, WorkerGroup } from '../event-bus/worker-group';
import { WorkerRegistry } from '../event-bus/worker-registry';
import { ABORT_CANCELLED, ABORT_SHUTDOWN } from './abort-reasons';
import { CancelListener } from './cancel-listener';
import { GenerationSlots } from './generation-slots';
import { RedisRewoundError } from '../history/message-store';
import { MessageRunner } from './message-runner';
import { isRedisError } from '../event-bus/redis-errors';

const BLOCK_MS = 2000;
/** A run that failed on an error (Redis away) is tried again after this pause. */
const REDO_PAUSE_MS = 1000;
/**
 * After the grace period, how long aborted generations get to settle. They only have Redis calls
 * left, each bounded by the command timeout; a Redis that hangs must not hold the shutdown longer.
 */
const ABANDON_WAIT_MS = 1000;
/** Redis calls of the shutdown path (mark dead, leave the groups) get this long each. */
const SHUTDOWN_CALL_MS = 1000;

/** What a read brought: new entries, or this worker's own to run again (never handed back). */
interface Read {
  entries: PartitionEntry[];
  own: boolean;
}
const NOTHING: Read = { entries: [], own: false };

/**
 * One blocking reader: its own connection and the partitions it reads. One lane reads every
 * partition on a single Redis; on a Redis Cluster each partition has a lane (a read cannot span
 * slots). Its recovery state is its own: a failed read re-reads this lane's pending entries.
 */
interface Lane {
  connection: RedisClient;
  partitions: readonly PartitionKeys[];
  /** Set after a read failed: the next read first runs this consumer's own pending entries. */
  recoverOwn: boolean;
  /** Bumped when a read is given up on: that read issues nothing more. */
  readToken: number;
  rotation: number;
  loop: Promise<void>;
}

interface InFlight {
  entry: PartitionEntry;
  controller: AbortController;
  done: Promise<void>;
  /** Known once the command is decoded. */
  messageId: string | null;
}

/**
 * Reads head messages from every partition through the `ai-workers` groups and runs up to
 * WORKER_CONCURRENCY of them at once; reads only while a slot is free and hands back what it read
 * beyond its free slots. Heartbeats on a timer of its own and takes over the messages of workers
 * that went silent (docs/design.md, "Workers").
 */
@Injectable()
export class ChatWorker implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(ChatWorker.name);
  readonly consumer = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private readonly inFlight = new Map<string, InFlight>();
  private lanes: Lane[] = [];
  private running = false;
  private heartbeat: NodeJS.Timeout | null = null;
  private beating = false;
  /** The heartbeat in progress (or the last one). */
  private lastBeat: Promise<void> = Promise.resolve();
  private stopping = false;
  /** Aborted by `stop`: ends a read or a backoff the read loop is waiting on. */
  private halt = new AbortController();
  /** Lanes waiting for a free slot. */
  private readonly slotWaiters = new Set<() => void>();
  private readonly slots: GenerationSlots;
  /**
   * A worker's last read started at most a heartbeat period after its last heartbeat and blocks at
   * most BLOCK_MS: silent for longer than both (and a margin), it can be handed nothing more.
   */
  private readonly forgetAfterMs: number;
  /** Entries whose run met a Redis error, or own entries without a slot yet: run at the next read of their lane. */
  private readonly redo = new Map<string, PartitionEntry>();
  /** Own entries are run again no earlier than this (after a run failed). */
  private redoAfter = 0;

  constructor(
    private readonly config: AppConfig,
    private readonly redis: RedisConnections,
    private readonly group: WorkerGroup,
    private readonly registry: WorkerRegistry,
    private readonly runner: MessageRunner,
    private readonly cancels: CancelListener,
    private readonly keys: KeyLayout,
  ) {
    this.slots = new GenerationSlots(config.worker.concurrency);
    this.forgetAfterMs = BLOCK_MS + Math.floor(config.worker.livenessMs / 4) + 500;
    this.slots.onRelease(() => this.wakeLanes());
  }

  onApplicationBootstrap(): void {
    if (this.config.worker.enabled) this.start();
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopping = false;
    this.halt = new AbortController();
    // Every lane's read and backoff listen to it: 64 on a cluster, more than Node's default warning at 10.
    setMaxListeners(Math.max(10, 4 * this.keys.partitions.length), this.halt.signal);
    this.cancels.start(({ messageId }) => this.cancel(messageId));
    this.lastBeat = this.beat();
    this.heartbeat = setInterval(
      () => {
        if (!this.beating) this.lastBeat = this.beat();
      },
      Math.max(100, Math.floor(this.config.worker.livenessMs / 4)),
    );
    const groups = this.redis.isCluster ? this.keys.partitions.map((p) => [p]) : [this.keys.partitions];
    this.lanes = groups.map((partitions, i) => {
      const lane: Lane = {
        connection: this.redis.openBlocking(`worker:${this.consumer}${groups.length > 1 ? `:${i}` : ''}`),
        partitions,
        recoverOwn: false,
        readToken: 0,
        rotation: 0,
        loop: Promise.resolve(),
      };
      lane.loop = this.readLoop(lane);
      return lane;
    });
    this.logger.log(
      `worker ${this.consumer} reading ${this.config.redis.partitions} partition(s) in ${this.lanes.length} blocking read(s) (concurrency ${this.config.worker.concurrency})`,
    );
  }

  private wakeLanes(): void {
    const waiting = [...this.slotWaiters];
    this.slotWaiters.clear();
    for (const wake of waiting) wake();
  }

  private laneOf(entry: PartitionEntry): Lane | undefined {
    return this.lanes.find((lane) => reads(lane, entry.partition));
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.stop();
  }

  /**
   * Stop reading, give in-flight generations SHUTDOWN_GRACE_MS, then abort the rest without
   * acknowledging them and mark this worker dead, so another worker takes them over at its next
   * heartbeat. A worker with nothing pending leaves the groups. Every wait is bounded, whatever Redis does.
   */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.stopping = true;
    this.halt.abort();
    this.wakeLanes();
    const lanes = this.lanes;
    this.lanes = [];
    for (const lane of lanes) this.redis.release(lane.connection);
    await Promise.all(lanes.map((lane) => lane.loop));
    this.running = false;
    let handedBack = false;
    if (this.inFlight.size > 0) {
      this.logger.log(`waiting up to ${this.config.worker.shutdownGraceMs} ms for ${this.inFlight.size} generation(s)`);
      const all = Promise.all([...this.inFlight.values()].map((f) => f.done));
      const graceOver = await Promise.race([all.then(() => false), sleep(this.config.worker.shutdownGraceMs).then(() => true)]);
      if (graceOver) {
        this.logger.warn(`handing ${this.inFlight.size} unfinished generation(s) over to other workers`);
        // Marked dead first (heartbeats stopped, so nothing marks it alive again): aborted
        // generations write nothing more, and another worker may start on them right away.
        this.stopHeartbeat();
        // a heartbeat already on its way would mark it alive again after this
        await bounded(this.lastBeat, SHUTDOWN_CALL_MS).catch(() => undefined);
        await bounded(this.registry.heartbeat(this.consumer, false), SHUTDOWN_CALL_MS).catch((err: unknown) => {
          this.logger.warn(`marking this worker dead failed: ${(err as Error).message}`);
        });
        for (const f of this.inFlight.values()) f.controller.abort(ABORT_SHUTDOWN);
        handedBack = true;
        const settled = await Promise.race([all.then(() => true), sleep(ABANDON_WAIT_MS).then(() => false)]);
        if (!settled) this.logger.warn(`${this.inFlight.size} aborted generation(s) still waiting on Redis; not waiting for them`);
      }
    }
    // Heartbeats ran until every generation settled (or was handed over); stop only now.
    this.stopHeartbeat();
    this.cancels.stop();
    await bounded(this.leave(handedBack), SHUTDOWN_CALL_MS).catch((err: unknown) => {
      this.logger.warn(`leaving the worker groups failed: ${(err as Error).message}`);
    });
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  /** Marks this worker dead at once (others take over what it still holds), or leaves the groups when it holds nothing. */
  private async leave(handedBack: boolean): Promise<void> {
    if (handedBack || this.inFlight.size > 0) {
      await this.registry.heartbeat(this.consumer, false);
      return;
    }
    const pending = await this.group.pendingOf(this.consumer, 1);
    if (pending.length > 0) {
      await this.registry.heartbeat(this.consumer, false);
      return;
    }
    // Its read loop is over: no entry can reach it any more.
    await this.registry.heartbeat(this.consumer, false);
    if (await this.group.deleteConsumer(this.consumer)) await this.registry.forget(this.consumer, 0);
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

  private async readLoop(lane: Lane): Promise<void> {
    const { connection } = lane;
    const halt = this.halt.signal;
    let groupReady = false;
    let backoffMs = 100;
    while (!this.stopping) {
      if (this.slots.free <= 0) {
        await new Promise<void>((resolve) => this.slotWaiters.add(resolve));
        continue;
      }
      if (connection.status !== 'ready') {
        // No read is queued while Redis is away: each would run after the reconnect, unawaited.
        await untilAborted(
          whenReady(connection, BLOCK_MS).catch(() => undefined),
          halt,
        );
        lane.recoverOwn = true;
        continue;
      }
      let entries: Read | typeof ABORTED;
      // Not awaited past `stop`, nor past a dropped connection: a read in flight then is neither
      // answered nor resent (autoResendUnfulfilledCommands is off) and would hang until its
      // blocking timeout; the next read first runs this worker's own pending entries. A read given
      // up on issues nothing more (its token is stale).
      const dropped = new AbortController();
      const onClose = () => dropped.abort();
      connection.once('close', onClose);
      const token = ++lane.readToken;
      try {
        entries = await untilAborted(this.read(lane, groupReady, token), AbortSignal.any([halt, dropped.signal]));
        if (entries === ABORTED && !halt.aborted) throw new Error('connection closed during the read');
        groupReady = true;
        backoffMs = 100;
      } catch (err) {
        lane.readToken++;
        if (this.stopping) break;
        const message = (err as Error).message;
        // The streams or groups vanished (Redis restarted without persistence, or FLUSHALL): recreate them.
        if (message.includes('NOGROUP')) groupReady = false;
        // The read may have been delivered without its reply reaching us: run our own pending entries next.
        lane.recoverOwn = true;
        this.logger.warn(`reading the incoming streams failed, retrying in ${backoffMs} ms: ${message}`);
        await pause(backoffMs, halt);
        backoffMs = Math.min(backoffMs * 2, 2000);
        continue;
      } finally {
        connection.off('close', onClose);
      }
      if (entries === ABORTED) break;
      await this.take(lane, entries.entries, entries.own);
    }
  }

  private async read(lane: Lane, groupReady: boolean, token: number): Promise<Read> {
    const { connection, partitions } = lane;
    const current = () => token === lane.readToken;
    if (!groupReady) await this.group.ensure(connection, partitions);
    if (lane.recoverOwn && Date.now() >= this.redoAfter && current()) {
      const pending = await this.group.readOwnPending(connection, partitions, this.consumer);
      if (!current()) return NOTHING;
      lane.recoverOwn = false;
      // Messages whose run met a Redis error, run again when their entry is gone from Redis (it
      // lost its data: `start` finds them gone and they fail visibly as message_lost). One still in
      // its stream but not pending here any more was taken over by a live worker: not ours.
      const byKey = new Map(pending.map((e) => [inFlightKey(e), e]));
      const redo = [...this.redo].filter(([, entry]) => reads(lane, entry.partition));
      for (const [key, entry] of redo) {
        const own = byKey.get(key);
        // still ours: run with what the failed run learned (an attempt Redis lost)
        if (own) byKey.set(key, { ...own, attemptFloor: entry.attemptFloor });
        else if (!(await this.group.exists(entry))) byKey.set(key, entry);
      }
      if (!current()) return NOTHING;
      for (const [key] of redo) this.redo.delete(key);
      const own = [...byKey.values()].filter((e) => !this.inFlight.has(inFlightKey(e)));
      if (own.length > 0) {
        this.logger.log(`running ${own.length} pending command(s) of this worker again`);
        return { entries: own, own: true };
      }
    }
    if (!current()) return NOTHING;
    return { entries: await this.group.readNew(connection, partitions, this.consumer, BLOCK_MS, lane.rotation), own: false };
  }

  /**
   * Runs what fits in the free slots and hands the rest back at once. The next read starts after
   * the partition of the last entry taken: round-robin, so a busy partition cannot keep another's
   * messages waiting while the worker has one slot.
   */
  private async take(lane: Lane, entries: PartitionEntry[], own: boolean): Promise<void> {
    const extra: PartitionEntry[] = [];
    for (const entry of entries) {
      if (this.inFlight.has(inFlightKey(entry))) continue;
      const release = this.slots.tryAcquire();
      if (release) {
        this.dispatch(entry, release);
        lane.rotation = lane.partitions.findIndex((p) => p.index === entry.partition.index) + 1;
      } else extra.push(entry);
    }
    if (extra.length === 0) return;
    if (own) {
      // This worker's own: kept for the next read, when slots are free.
      for (const e of extra) this.redo.set(inFlightKey(e), e);
      lane.recoverOwn = true;
      return;
    }
    await Promise.all(extra.map((e) => this.group.release(e))).catch((err: unknown) => {
      // Still pending with us: run them later from our own pending entries.
      lane.recoverOwn = true;
      this.logger.warn(`handing back ${extra.length} command(s) failed: ${(err as Error).message}`);
    });
  }

  private dispatch(entry: PartitionEntry, release: () => void): void {
    const task: InFlight = { entry, controller: new AbortController(), done: Promise.resolve(), messageId: messageIdOf(entry) };
    // Registered before it starts, so a cancel or shutdown can reach it from the first moment.
    this.inFlight.set(inFlightKey(entry), task);
    task.done = this.runner
      .run(entry, this.consumer, task.controller.signal)
      .then(
        () => undefined,
        (err: unknown) => {
          // Still pending with this consumer (or lost with Redis's data): run it again once Redis
          // answers, after a pause (an error that repeats must not become a tight loop).
          this.redo.set(inFlightKey(entry), err instanceof RedisRewoundError ? { ...entry, attemptFloor: err.attempt } : entry);
          const lane = this.laneOf(entry);
          if (lane) lane.recoverOwn = true;
          this.redoAfter = Date.now() + REDO_PAUSE_MS;
          const what = isRedisError(err) ? 'Redis failed' : 'failed';
          this.logger.error(`processing ${entry.id} ${what}, will run it again: ${(err as Error).message}`);
        },
      )
      .finally(() => {
        this.inFlight.delete(inFlightKey(entry));
        release();
      });
  }

  /**
   * Every quarter of WORKER_LIVENESS_MS: says this worker is alive and, with free slots, takes
   * over the messages of workers silent for longer than that; dead workers holding nothing leave
   * the groups.
   */
  private async beat(): Promise<void> {
    if (this.beating) return;
    this.beating = true;
    try {
      const dead = await this.registry.heartbeat(this.consumer, true);
      for (const consumer of dead) {
        const free = this.slots.free;
        if (this.stopping || free <= 0) break;
        const pending = await this.group.pendingOf(consumer, free);
        if (pending.length === 0) {
          // Forgotten only once no read it had open can still hand it an entry (forgetAfterMs).
          if ((await this.group.deleteConsumer(consumer)) && (await this.registry.forget(consumer, this.forgetAfterMs))) {
            this.logger.log(`removed dead worker ${consumer} from the groups`);
          }
          continue;
        }
        const claimed = await this.group.claim(pending, this.consumer, Math.floor(this.config.worker.livenessMs / 2));
        for (const entry of claimed) {
          if (entry.fields.length === 0) {
            await this.group.ack(entry); // ended and deleted while its worker was dead
            continue;
          }
          // Already running here: a lane that re-read its own pending entries meanwhile got it first
          // (the claim made it ours). Running it twice would fence the first run (seen on a cluster).
          if (this.inFlight.has(inFlightKey(entry))) continue;
          this.logger.warn(`taking over ${entry.id} (delivery ${entry.deliveries}) from silent worker ${consumer}`);
          const release = this.slots.tryAcquire();
          if (release) this.dispatch(entry, release);
          else await this.group.release(entry);
        }
      }
    } catch (err) {
      this.logger.warn(`heartbeat failed: ${(err as Error).message}`);
    } finally {
      this.beating = false;
    }
  }
}

/** Whether `lane` reads `partition` (by index: entries and lanes need not share one KeyLayout object). */
function reads(lane: Lane, partition: PartitionKeys): boolean {
  return lane.partitions.some((p) => p.index === partition.index);
}

/** Entry ids are per stream: two partitions' streams may hand out the same id in the same millisecond. */
function inFlightKey(entry: PartitionEntry): string {
  return `${entry.partition.index}/${entry.id}`;
}

function messageIdOf(entry: PartitionEntry): string | null {
  const at = entry.fields.indexOf('data');
  if (at < 0 || at + 1 >= entry.fields.length) return null;
  try {
    const data: unknown = JSON.parse(entry.fields[at + 1]);
    const id = typeof data === 'object' && data !== null ? (data as { messageId?: unknown }).messageId : undefined;
    return typeof id === 'string' ? id : null;
  } catch {
    return null;
  }
}

function bounded<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)));
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
