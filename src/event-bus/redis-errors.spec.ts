import { isRedisError, isRedisUnavailable } from './redis-errors';
import { credentialsOf } from './redis-connections';

describe('Redis errors on a single Redis and on a cluster', () => {
  it.each([
    'CLUSTERDOWN The cluster is down',
    'MOVED 16347 127.0.0.1:44703',
    'TRYAGAIN Multiple keys request during rehashing of slot',
    'Too many Cluster redirections. Last error: Error: Connection is closed.',
    'Failed to refresh slots cache.',
    'Connection is closed.',
    'Command timed out',
  ])('%s means Redis is unavailable (503, not 500)', (message) => {
    expect(isRedisUnavailable(new Error(message))).toBe(true);
  });

  it('a script error or a wrong command is not an outage', () => {
    expect(isRedisUnavailable(new Error('ERR Error running script'))).toBe(false);
    expect(isRedisUnavailable(new Error("CROSSSLOT Keys in request don't hash to the same slot"))).toBe(false);
  });

  it('a worker treats a cluster that cannot route its command as a Redis error (the run is redone)', () => {
    expect(isRedisError(new Error('Too many Cluster redirections. Last error: Error: Connection is closed.'))).toBe(true);
  });

  it.each([
    'CLUSTERDOWN The cluster is down',
    'LOADING Redis is loading the dataset in memory',
    'Failed to refresh slots cache.',
    'ECONNREFUSED',
  ])('whatever the API answers 503 for, the worker redoes: %s', (message) => {
    expect(isRedisUnavailable(new Error(message))).toBe(true);
    expect(isRedisError(new Error(message))).toBe(true);
  });

  it('a reply error is a Redis error but not an outage; a provider error is neither', () => {
    const reply = Object.assign(new Error('ERR Error running script'), { name: 'ReplyError' });
    expect(isRedisError(reply)).toBe(true);
    expect(isRedisUnavailable(reply)).toBe(false);
    expect(isRedisError(new Error('fetch failed'))).toBe(false);
    expect(isRedisUnavailable(new Error('ASKED the model'))).toBe(false);
  });
});

describe('credentialsOf', () => {
  it('lends REDIS_URL user, password and TLS to every cluster node', () => {
    expect(credentialsOf('rediss://app:s%40cret@ignored:6379/0')).toEqual({ username: 'app', password: 's@cret', tls: {} });
    expect(credentialsOf('redis://:pw@localhost:6379')).toEqual({ password: 'pw' });
    expect(credentialsOf('redis://localhost:6379')).toEqual({});
  });
});
