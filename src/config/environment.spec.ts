import { AppConfig } from './app-config';
import { validateEnvironment } from './environment';

describe('validateEnvironment', () => {
  it('applies the contract defaults when nothing is set', () => {
    const config = new AppConfig(validateEnvironment({}));
    expect(config.http.port).toBe(3000);
    expect(config.redis.url).toBe('redis://localhost:6379');
    expect(config.ai).toMatchObject({ provider: 'ollama', ollamaHost: 'http://localhost:11434', model: 'gpt-oss:20b' });
    expect(config.worker).toMatchObject({ enabled: true, concurrency: 4 });
    expect(config.auth).toEqual({ mode: 'token', sessionSecret: null });
    expect(config.limits).toEqual({ maxMessageChars: 16000, sessionPerMinute: 30, ipPerMinute: 120, maxBacklog: 10000 });
    expect(config.logLevel).toBe('info');
  });

  it('converts strings to typed values', () => {
    const config = new AppConfig(
      validateEnvironment({ PORT: '8080', WORKER_ENABLED: 'false', WORKER_CONCURRENCY: '2', CORS_ORIGINS: 'http://a, http://b' }),
    );
    expect(config.http).toEqual({ port: 8080, corsOrigins: ['http://a', 'http://b'], trustProxy: null });
    expect(config.worker.enabled).toBe(false);
    expect(config.worker.concurrency).toBe(2);
  });

  it.each([
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['REDIS_URL', 'localhost:6379'],
    ['OLLAMA_HOST', 'localhost:11434'],
    ['AI_PROVIDER', 'openai'],
    ['WORKER_ENABLED', 'maybe'],
    ['WORKER_CONCURRENCY', '0'],
    ['AUTH_MODE', 'basic'],
    ['SESSION_SECRET', 'short'],
    ['LOG_LEVEL', 'verbose'],
    ['MAX_MESSAGE_CHARS', '1.5'],
  ])('rejects %s=%s with a message naming it', (name, value) => {
    expect(() => validateEnvironment({ [name]: value })).toThrow(new RegExp(`${name}=`));
  });

  it('treats empty strings as unset', () => {
    expect(validateEnvironment({ PORT: '', SESSION_SECRET: '' }).PORT).toBe(3000);
  });
});
