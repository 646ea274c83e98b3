import type { Cluster, Redis } from 'ioredis';

/**
 * A connection to Redis: one server (REDIS_URL) or a Redis Cluster (REDIS_CLUSTER_NODES). The one
 * place that says so; both run the same commands and scripts, routed by key on a cluster, where a
 * command's keys must share a slot (every key of a partition does, docs/design.md).
 */
export type RedisClient = Redis | Cluster;

export function isCluster(client: RedisClient): client is Cluster {
  return client.isCluster;
}
