import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { NO_REDIS_MESSAGE, RedisServer, hasRedisServerBinary } from './redis-server';

declare global {
  // Shared with global-teardown (same process).
  var __TEST_REDIS__: RedisServer | undefined;
}

/**
 * Finds Redis for the whole run: REDIS_URL when given, else a redis-server of our own on a free
 * port. Tests read TEST_REDIS_URL (a base URL; each jest worker uses its own database index). Jest
 * runs a global setup module once per run, with the config of the first project naming it (unit
 * and e2e share this one; e2e-cluster has global-setup-cluster.ts). The e2e project also needs the
 * built app.
 */
export default async function globalSetup(_global: unknown, project: { displayName?: string | { name: string } }): Promise<void> {
  const name = typeof project.displayName === 'string' ? project.displayName : project.displayName?.name;
  if (name === 'e2e' && !existsSync(join(process.env.APP_DIST ?? join(process.cwd(), 'dist'), 'main.js'))) {
    throw new Error('dist/ is missing: run `npm test` or `npm run test:e2e` (they build first), or `npm run build` before jest.');
  }
  if (process.env.TEST_REDIS_URL) return;
  if (process.env.REDIS_URL) {
    process.env.TEST_REDIS_URL = process.env.REDIS_URL.replace(/\/\d+$/, '');
    return;
  }
  if (!hasRedisServerBinary()) throw new Error(NO_REDIS_MESSAGE);
  const server = await RedisServer.start();
  globalThis.__TEST_REDIS__ = server;
  process.env.TEST_REDIS_URL = server.url;
}
