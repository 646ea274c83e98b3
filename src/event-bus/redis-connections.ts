import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { AppConfig } from '../config/app-config';
import { isCluster, RedisClient } from './redis-client';
import { defineScripts } from './scripts';

/**
 * How long a command may wait on Redis before it fails. The API must answer 503 within 2 s, and on
 * the auto-pipelined connection a command issued while a batch hangs waits for that batch to time
 * out before its own batch is sent: up to two timeouts, 1.8 s.
 */
export const COMMAND_TIMEOUT_MS = 900;

/**
 * How long shutdown waits for Redis to answer QUIT before dropping the connection. A hung Redis
 * never answers, and a QUIT on a blocking connection queues behind its BLOCK.
 */
export const QUIT_TIMEOUT_MS = 1000;

/** What connecting to a plain REDIS_URL that turns out to be a cluster node says. */
export const CLUSTER_NODE_MESSAGE =
  'REDIS_URL points at a node of a Redis Cluster (cluster_enabled:1): set REDIS_CLUSTER_NODES=host:port,host:port to its nodes instead';

/**
 * Owns every Redis connection of the process. One shared connection runs ordinary commands and
 * fails fast while Redis is away (no offline queue); each blocking reader gets a connection of its
 * own, so a BLOCK never stalls anyone else's commands. All reconnect by themselves. On a Redis
 * Cluster (REDIS_CLUSTER_NODES) each is an ioredis `Cluster`, which follows MOVED and ASK and
 * refreshes its slot map after a failover; a blocking reader then reads one partition (one slot).
 */
@Injectable()
export class RedisConnections implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('Redis');
  private readonly all = new Set<RedisClient>();
  private commandConnection: RedisClient | null = null;
  /** Told of every connection error (metrics); set by whoever counts them. */
  onError: (connection: string) => void = () => undefined;

  constructor(private readonly config: AppConfig) {}

  /**
   * Connects at start-up so the first request does not meet a connection still being opened (it
   * would fail fast, having no offline queue). Start-up goes on if Redis is away: /health reports
   * it and requests answer 503 until it is back.
   */
  async onModuleInit(): Promise<void> {
    try {
      await whenReady(this.commands, 5000);
    } catch (err) {
      this.logger.warn(`starting without Redis (${(err as Error).message}); will keep reconnecting`);
      return;
    }
    // A cluster node answers a single-node client until the first key of another node: MOVED on
    // most requests. Refused at start, with what to set instead.
    if (!this.isCluster && (await this.clusterEnabled())) throw new Error(CLUSTER_NODE_MESSAGE);
    // A cluster client opens each node's connection at its first command, and without an offline
    // queue (fail fast) it refuses every other command for that node until the connection is up:
    // hundreds of requests in the first second failed with "Connection is closed." Opened now.
    // (A node added later, a promoted replica, is opened as soon as the client learns of it: '+node'.)
    const commands = this.commands;
    if (isCluster(commands)) await Promise.all(commands.nodes('master').map((node) => node.ping().catch(() => undefined)));
  }

  /** Whether the service runs on a Redis Cluster (REDIS_CLUSTER_NODES). */
  get isCluster(): boolean {
    return this.config.redis.clusterNodes !== null;
  }

  /** `cluster_state` of a cluster (`ok`, `fail`), or null on a single Redis. */
  async clusterState(): Promise<string | null> {
    if (!this.isCluster) return null;
    const info = String(await this.commands.cluster('INFO'));
    return /^cluster_state:(\w+)/m.exec(info)?.[1] ?? 'unknown';
  }

  private async clusterEnabled(): Promise<boolean> {
    const info = await this.commands.info('cluster');
    return /^cluster_enabled:1/m.test(info);
  }

  /** The shared, non-blocking connection. */
  get commands(): RedisClient {
    if (!this.commandConnection) {
      this.commandConnection = this.open('commands', {
        enableOfflineQueue: false,
        // Commands issued in one event-loop turn (hundreds of generations, relays, sends) go out
        // in one socket write and reach Redis as one read: the single largest CPU cost measured
        // (bench/NOTES.md) was writing each command on its own. MULTI is not auto-pipelined and is
        // written at once, so it may overtake commands issued before it but not yet awaited: steps
        // whose order matters are awaited one after the other.
        enableAutoPipelining: true,
        commandTimeout: COMMAND_TIMEOUT_MS,
        // A command in flight when the connection drops fails instead of being sent again after the
        // reconnect: its caller may already have given up on it (a send answered 503 and taken back
        // would otherwise be queued behind the client's back, and answered twice on its retry).
        autoResendUnfulfilledCommands: false,
        // A half-open socket (silent failover, NAT drop) is declared dead and reconnected.
        socketTimeout: 5000,
        maxRetriesPerRequest: 1,
      });
    }
    return this.commandConnection;
  }

  /**
   * A dedicated connection for blocking reads (XREAD/XREADGROUP BLOCK). Close it with `release`. On
   * a cluster a read may only name streams of one slot: one partition per reader.
   */
  openBlocking(name: string): RedisClient {
    // The offline queue stays on here: a read issued while reconnecting waits for the connection
    // instead of spinning on errors; the reader's own loop handles failures.
    return this.open(name, {
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      // A read in flight at a disconnect fails rather than being sent again after the reconnect: a
      // resent XREADGROUP may deliver entries whose reply nobody reads (they would sit pending). The
      // reader re-reads its own pending entries after any failure instead.
      autoResendUnfulfilledCommands: false,
      // A BLOCK that outlives its own timeout by 2 s is on a dead socket: fail it so the loop retries.
      blockingTimeout: 30_000,
      blockingTimeoutGrace: 2000,
    });
  }

  /**
   * A dedicated connection for (S)SUBSCRIBE; ioredis re-subscribes by itself after a reconnect (on a
   * cluster, to the node that owns each sharded channel's slot, after a failover too).
   */
  openSubscriber(name: string): RedisClient {
    return this.open(name, { enableOfflineQueue: true, maxRetriesPerRequest: null }, { shardedSubscribers: true });
  }

  release(connection: RedisClient): void {
    this.all.delete(connection);
    connection.disconnect(false);
  }

  /** Closes every connection still open, politely (QUIT) where Redis answers, within QUIT_TIMEOUT_MS. */
  async onApplicationShutdown(): Promise<void> {
    const connections = [...this.all];
    this.all.clear();
    this.commandConnection = null;
    await Promise.all(connections.map((c) => quitWithin(c, QUIT_TIMEOUT_MS)));
  }

  private open(name: string, extra: Partial<RedisOptions>, clusterExtra: Partial<ClusterOptions> = {}): RedisClient {
    const common: RedisOptions = {
      connectionName: `ai-assistant:${name}`,
      protocol: 2,
      connectTimeout: 2000,
      // Back off up to 2 s between attempts, forever: the service heals when Redis returns.
      retryStrategy: (attempt) => Math.min(100 * attempt, 2000),
      ...extra,
    };
    const connection = this.config.redis.clusterNodes
      ? this.openCluster(this.config.redis.clusterNodes, common, clusterExtra)
      : new Redis(this.config.redis.url, common);
    let wasDown = false;
    connection.on('error', (err: Error) => {
      this.onError(name);
      // ioredis emits an error per failed attempt; one warning per outage is enough.
      if (!wasDown) this.logger.warn(`${name}: ${err.message}`);
      wasDown = true;
    });
    connection.on('ready', () => {
      if (wasDown) this.logger.log(`${name}: reconnected`);
      wasDown = false;
    });
    defineScripts(connection);
    this.all.add(connection);
    return connection;
  }

  /**
   * A Cluster client with the same behaviour as a single connection: REDIS_URL lends user, password
   * and TLS to every node; the per-connection options apply to each node's connection; the
   * cluster's own retries are short, so that a request during a failover fails within the API's 2 s
   * (503) instead of waiting for the promotion.
   */
  private openCluster(nodes: { host: string; port: number }[], common: RedisOptions, clusterExtra: Partial<ClusterOptions>): Cluster {
    const { retryStrategy, enableOfflineQueue, ...nodeOptions } = common;
    delete nodeOptions.enableAutoPipelining;
    const cluster = new Cluster(nodes, {
      redisOptions: { ...nodeOptions, ...credentialsOf(this.config.redis.url) },
      clusterRetryStrategy: (attempt) => (retryStrategy ? retryStrategy(attempt) : null),
      enableOfflineQueue: enableOfflineQueue ?? true,
      // Not on a cluster: ioredis follows a MOVED inside an auto-pipelined batch only when every
      // command of the batch got the same reply, and a batch to one node spans several slots, so
      // right after a failover callers got the MOVED itself (a 500) instead of the answer.
      enableAutoPipelining: false,
      scaleReads: 'master',
      maxRedirections: 8,
      // A command in flight when its node's connection closed may have run there: it fails
      // (503, or the worker's redo) instead of being sent again to the promoted replica, as
      // autoResendUnfulfilledCommands: false does on a single Redis. CLUSTERDOWN and TRYAGAIN mean
      // the command did not run: those are retried.
      retryDelayOnFailover: 0,
      retryDelayOnClusterDown: 100,
      retryDelayOnTryAgain: 100,
      slotsRefreshTimeout: 1000,
      ...clusterExtra,
    });
    if (enableOfflineQueue === false) cluster.on('+node', (node: Redis) => void node.ping().catch(() => undefined));
    return cluster;
  }
}

/** User, password and TLS of a `redis(s)://user:password@host` URL, for every node of a cluster. */
export function credentialsOf(url: string): Pick<RedisOptions, 'username' | 'password' | 'tls'> {
  const parsed = new URL(url);
  return {
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** QUIT, so replies still due arrive first; dropped after `timeoutMs`, or at once if not ready. */
async function quitWithin(connection: RedisClient, timeoutMs: number): Promise<void> {
  if (connection.status !== 'ready') {
    connection.disconnect(false);
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
  try {
    await Promise.race([connection.quit().then(() => undefined), timedOut]);
  } catch {
    // Failed or timed out: dropped below all the same.
  } finally {
    clearTimeout(timer);
    // A no-op after a completed QUIT; otherwise it closes the socket, failing what it still holds.
    connection.disconnect(false);
  }
}

/** Waits until a connection is ready, or rejects after `timeoutMs`. */
export function whenReady(connection: RedisClient, timeoutMs: number): Promise<void> {
  if (connection.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      connection.off('ready', onReady);
      reject(new Error(`Redis not ready after ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    connection.once('ready', onReady);
  });
}
