import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { RedisConnections } from '../event-bus/redis-connections';
import { KeyLayout, PartitionKeys, WORKER_GROUP } from '../event-bus/stream-names';
import { replyField } from '../event-bus/stream-reply';

/**
 * The process's Prometheus metrics. API processes serve them at /metrics (their in-process worker's
 * included); a standalone worker serves its own on WORKER_METRICS_PORT. Counters count what this
 * process did; the queue gauges are read from Redis at scrape time (summed over the partitions, one
 * pipelined command per partition) and are the same everywhere.
 */
@Injectable()
export class Metrics {
  readonly registry = new Registry();

  readonly accepted = new Counter({
    name: 'ai_assistant_messages_accepted_total',
    help: 'Messages accepted (202) by this process',
    registers: [this.registry],
  });
  readonly finished = new Counter({
    name: 'ai_assistant_messages_finished_total',
    help: 'Messages ended by this process, by outcome (completed, failed, cancelled) and failure code',
    labelNames: ['outcome', 'code'] as const,
    registers: [this.registry],
  });
  readonly deadLetters = new Counter({
    name: 'ai_assistant_dead_letters_total',
    help: 'Entries this process wrote to the chat:dead streams',
    registers: [this.registry],
  });
  readonly timeToFirstToken = new Histogram({
    name: 'ai_assistant_time_to_first_token_seconds',
    help: 'From the request to the model until its first token, per attempt',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });
  readonly generationTime = new Histogram({
    name: 'ai_assistant_generation_seconds',
    help: 'Duration of completed generations (last attempt)',
    buckets: [0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320, 600],
    registers: [this.registry],
  });
  readonly tokensPerSecond = new Histogram({
    name: 'ai_assistant_tokens_per_second',
    help: 'Completion tokens per second of completed generations, after the first token',
    buckets: [1, 2, 5, 10, 20, 40, 80, 160, 320],
    registers: [this.registry],
  });
  readonly connectedClients = new Gauge({
    name: 'ai_assistant_connected_clients',
    help: 'Clients connected to this process, by transport (socket.io, sse, websocket)',
    labelNames: ['transport'] as const,
    registers: [this.registry],
  });
  readonly redisErrors = new Counter({
    name: 'ai_assistant_redis_errors_total',
    help: 'Errors reported by the Redis connections of this process, by connection',
    labelNames: ['connection'] as const,
    registers: [this.registry],
  });

  constructor(
    private readonly redis: RedisConnections,
    private readonly keys: KeyLayout,
  ) {
    collectDefaultMetrics({ register: this.registry });
    redis.onError = (name) => this.redisErrors.inc({ connection: name.replace(/:.*/, '') });
    const group = new Gauge({
      name: 'ai_assistant_queue',
      help:
        'The ai-workers group on the chat:incoming streams, summed over the partitions: lag (queued, not yet read) and ' +
        "pending (read, not yet acknowledged). Only sessions' head messages are there; the others wait in their session",
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect: async () => {
        const info = await this.groupInfo();
        if (info) {
          group.set({ state: 'lag' }, info.lag);
          group.set({ state: 'pending' }, info.pending);
        }
      },
    });
    const backlog = new Gauge({
      name: 'ai_assistant_backlog',
      help: 'Messages accepted and not ended yet (queued, waiting or streaming), summed over the partitions (chat:backlog)',
      registers: [this.registry],
      collect: async () => {
        const total = await this.sum((p) => this.redis.commands.zcard(p.backlog));
        if (total !== null) backlog.set(total);
      },
    });
    const dead = new Gauge({
      name: 'ai_assistant_dead_letter_stream_length',
      help: 'Entries in the chat:dead streams, summed over the partitions',
      registers: [this.registry],
      collect: async () => {
        const total = await this.sum((p) => this.redis.commands.xlen(p.dead));
        if (total !== null) dead.set(total);
      },
    });
  }

  /** A count summed over every partition, or null when Redis did not answer (the gauge keeps its value). */
  private async sum(count: (partition: PartitionKeys) => Promise<number>): Promise<number | null> {
    try {
      const counts = await Promise.all(this.keys.partitions.map(count));
      return counts.reduce((a, b) => a + b, 0);
    } catch {
      return null;
    }
  }

  private async groupInfo(): Promise<{ lag: number; pending: number } | null> {
    try {
      const replies = await Promise.all(
        // A stream (or group) not created yet is nothing queued.
        this.keys.partitions.map((p) =>
          this.redis.commands.xinfo('GROUPS', p.incoming).catch((err: Error): unknown => {
            if (/no such key/i.test(err.message)) return [];
            throw err;
          }),
        ),
      );
      let lag = 0;
      let pending = 0;
      for (const groups of replies) {
        if (!Array.isArray(groups)) continue;
        for (const raw of groups) {
          if (!Array.isArray(raw)) continue;
          const field = (name: string): unknown => replyField(raw, name);
          if (field('name') !== WORKER_GROUP) continue;
          const groupLag = Number(field('lag'));
          lag += Number.isFinite(groupLag) ? groupLag : 0;
          pending += Number(field('pending')) || 0;
        }
      }
      return { lag, pending };
    } catch {
      return null; // Redis away: keep the last values
    }
  }
}
