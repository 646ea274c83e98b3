import { AppConfig } from './app-config';
import { maskUrlPassword, printableValue, validateEnvironment } from './environment';

describe('validateEnvironment', () => {
  it('applies the contract defaults when nothing is set', () => {
    const config = new AppConfig(validateEnvironment({}));
    expect(config.http.port).toBe(3000);
    expect(config.redis.url).toBe('redis://localhost:6379');
    expect(config.ai).toMatchObject({ provider: 'ollama', ollamaHost: 'http://localhost:11434', model: 'gpt-oss:20b' });
    expect(config.worker).toMatchObject({ enabled: true, concurrency: 4 });
    expect(config.auth).toMatchObject({ mode: 'token', sessionSecret: null, previousSecrets: [] });
    expect(config.limits).toMatchObject({ maxMessageChars: 16000, sessionPerMinute: 30, ipPerMinute: 120, maxBacklog: 10000 });
    expect(config.http.trustProxy('127.0.0.1', 0)).toBe(false);
    expect(config.logLevel).toBe('info');
  });

  it('converts strings to typed values', () => {
    const config = new AppConfig(
      validateEnvironment({ PORT: '8080', WORKER_ENABLED: 'false', WORKER_CONCURRENCY: '2', CORS_ORIGINS: 'http://a, http://b' }),
    );
    expect(config.http).toMatchObject({ port: 8080, corsOrigins: ['http://a', 'http://b'] });
    expect(config.worker.enabled).toBe(false);
    expect(config.worker.concurrency).toBe(2);
  });

  it.each([
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['REDIS_URL', 'localhost:6379'],
    ['OLLAMA_HOST', 'localhost:11434'],
    ['AI_PROVIDER', 'vllm'],
    ['OPENAI_BASE_URL', 'localhost:8000/v1'],
    ['WORKER_ENABLED', 'maybe'],
    ['WORKER_CONCURRENCY', '0'],
    ['AUTH_MODE', 'basic'],
    ['SESSION_SECRET', 'short'],
    ['LOG_LEVEL', 'verbose'],
    ['MAX_MESSAGE_CHARS', '1.5'],
    ['TRUST_PROXY', 'proxy.example'],
    ['TRUST_PROXY', '10.0.0.0/33'],
    ['SESSION_SECRET_PREVIOUS', 'long-enough-secret-1,short'],
  ])('rejects %s=%s with a message naming it', (name, value) => {
    expect(() => validateEnvironment({ [name]: value })).toThrow(new RegExp(`${name}=`));
  });

  it('treats empty strings as unset', () => {
    expect(validateEnvironment({ PORT: '', SESSION_SECRET: '' }).PORT).toBe(3000);
  });

  it.each([
    ['true', '203.0.113.9', 5, true],
    ['false', '127.0.0.1', 0, false],
    ['0', '127.0.0.1', 0, false],
    ['1', '127.0.0.1', 0, true],
    ['1', '10.0.0.1', 1, false],
    ['loopback', '127.0.0.1', 0, true],
    ['loopback', '10.0.0.1', 0, false],
    ['loopback, 10.0.0.0/8', '10.1.2.3', 1, true],
  ] as const)('TRUST_PROXY=%s trusts %s at hop %d: %s (as Express compiles it)', (value, address, hop, trusted) => {
    const config = new AppConfig(validateEnvironment({ TRUST_PROXY: value }));
    expect(config.http.trustProxy(address, hop)).toBe(trusted);
  });

  it('never prints a secret, and masks URL passwords', () => {
    expect(() => validateEnvironment({ SESSION_SECRET: 'tiny-secret' })).toThrow(
      /SESSION_SECRET=\(hidden\): SESSION_SECRET must be at least 16/,
    );
    expect(() => validateEnvironment({ SESSION_SECRET: 'tiny-secret' })).not.toThrow(/tiny-secret/);
    expect(printableValue('METRICS_TOKEN', 'abc')).toBe('(hidden)');
    expect(maskUrlPassword('redis://user:pa55@host:6379/0')).toBe('redis://user:***@host:6379/0');
    expect(maskUrlPassword('rediss://:pa55@host')).toBe('rediss://:***@host');
    expect(maskUrlPassword('redis://pa55@host')).toBe('redis://***@host');
    expect(maskUrlPassword('redis://host:6379')).toBe('redis://host:6379');
  });

  it('switches to a Redis Cluster with REDIS_CLUSTER_NODES, and names a malformed list', () => {
    expect(new AppConfig(validateEnvironment({})).redis.clusterNodes).toBeNull();
    const config = new AppConfig(validateEnvironment({ REDIS_CLUSTER_NODES: '10.0.0.1:7000, redis-2:7001' }));
    expect(config.redis.clusterNodes).toEqual([
      { host: '10.0.0.1', port: 7000 },
      { host: 'redis-2', port: 7001 },
    ]);
    for (const bad of ['10.0.0.1', 'redis://10.0.0.1:7000', '10.0.0.1:7000;10.0.0.2:7000', 'a:1,,b:2'])
      expect(() => validateEnvironment({ REDIS_CLUSTER_NODES: bad })).toThrow(
        /REDIS_CLUSTER_NODES must be a comma-separated list of host:port/,
      );
  });
});
