/**
 * What an ioredis error means, for the API (503 + Retry-After instead of 500) and for the worker
 * (run the message again once Redis answers, instead of failing it). One list for both, so a new
 * way of saying "Redis is not there right now" reaches both at once.
 */

/** Client-side: the connection is gone or not ready, or a cluster cannot route the command. */
const CLIENT_UNAVAILABLE =
  /Stream isn't writeable|Connection is closed|Command timed out|ECONNREFUSED|Redis not ready|Reached the max retries|Too many Cluster redirections|Failed to refresh slots cache|Cluster isn't ready|None of startup nodes is available/i;
/**
 * Server replies of a Redis that cannot serve right now: a cluster failover in progress, a slot map
 * still settling (MOVED and ASK are followed by the client; one that reaches us anyway), a replica
 * still loading or not yet promoted.
 */
const SERVER_UNAVAILABLE = /^(CLUSTERDOWN|TRYAGAIN|MOVED|ASK|LOADING|MASTERDOWN|READONLY)\b/i;

/** Redis is not reachable right now: a lost connection or a timeout, or a cluster failing over. */
export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'MaxRetriesPerRequestError') return true;
  return CLIENT_UNAVAILABLE.test(err.message) || SERVER_UNAVAILABLE.test(err.message);
}

/**
 * An error of Redis rather than of the model provider: it is unavailable, it answered an error
 * (ReplyError), or it lost a start it had acknowledged (RedisRewoundError, message-store.ts).
 */
export function isRedisError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return err.name === 'ReplyError' || err.name === 'RedisRewoundError' || isRedisUnavailable(err);
}
