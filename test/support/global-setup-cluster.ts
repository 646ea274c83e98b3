import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { RedisCluster } from './redis-cluster';
import { NO_REDIS_MESSAGE, hasRedisServerBinary } from './redis-server';

declare global {
  // Shared with global-teardown-cluster (same process).
  var __TEST_REDIS_CLUSTERS__: RedisCluster[] | undefined;
}

/**
 * The e2e-cluster project's Redis: Clusters of our own, one per jest worker (a cluster has only
 * database 0 and the app's keys are fixed: files running in parallel must not share one), listed in
 * TEST_REDIS_CLUSTER_NODES (`;` between clusters). A module of its own, not global-setup.ts: jest
 * runs each global setup module once per run, with the first project's config.
 * REDIS_CLUSTER_NODES (or TEST_REDIS_CLUSTER_NODES) names a cluster of one's own instead, which the
 * tests FLUSHALL: one jest worker only then.
 */
export default async function globalSetupCluster(global: { maxWorkers: number }): Promise<void> {
  if (!existsSync(join(process.env.APP_DIST ?? join(process.cwd(), 'dist'), 'main.js'))) {
    throw new Error('dist/ is missing: run `npm test` (it builds first), or `npm run build` before jest.');
  }
  const given = process.env.TEST_REDIS_CLUSTER_NODES ?? process.env.REDIS_CLUSTER_NODES;
  if (given) {
    if (global.maxWorkers > 1 && !given.includes(';')) {
      throw new Error(
        `one cluster (${given}) cannot serve ${global.maxWorkers} jest workers: run with --maxWorkers=1, or list one cluster per worker separated by ";"`,
      );
    }
    process.env.TEST_REDIS_CLUSTER_NODES = given;
    return;
  }
  if (!hasRedisServerBinary()) throw new Error(NO_REDIS_MESSAGE);
  const clusters = await Promise.all(Array.from({ length: Math.max(1, global.maxWorkers) }, () => RedisCluster.start()));
  globalThis.__TEST_REDIS_CLUSTERS__ = clusters;
  process.env.TEST_REDIS_CLUSTER_NODES = clusters.map((c) => c.seeds).join(';');
}
