import { plainToInstance, Transform } from 'class-transformer';
import {
  IsBoolean,
  IsIn,
  IsInt,
  IsNotEmpty,
  IsOptional,
  IsString,
  IsUrl,
  Matches,
  Max,
  Min,
  MinLength,
  validateSync,
} from 'class-validator';

/** Env values arrive as strings; only the exact words are accepted so a typo fails start-up. */
const toBoolean = ({ value }: { value: unknown }): unknown => {
  if (typeof value !== 'string') return value;
  const v = value.trim().toLowerCase();
  if (v === 'true' || v === '1' || v === 'yes') return true;
  if (v === 'false' || v === '0' || v === 'no') return false;
  return value;
};

const toInt = ({ value }: { value: unknown }): unknown => {
  if (typeof value !== 'string') return value;
  return /^-?\d+$/.test(value.trim()) ? Number(value.trim()) : value;
};

export const DEFAULT_SYSTEM_PROMPT =
  'You are a helpful, concise assistant. Answer in the language of the user. ' +
  'Use Markdown for lists and code.';

/**
 * Every variable the service reads, with its default. This class is the only place that knows
 * environment variable names; the rest of the code receives the typed AppConfig.
 */
export class Environment {
  @Transform(toInt) @IsInt() @Min(0) @Max(65535)
  PORT = 3000;

  @Matches(/^rediss?:\/\/\S+$/, { message: 'REDIS_URL must look like redis://host:6379 or rediss://...' })
  REDIS_URL = 'redis://localhost:6379';

  @IsUrl({ require_tld: false, require_protocol: true, protocols: ['http', 'https'] }, {
    message: 'OLLAMA_HOST must be an http(s) URL such as http://localhost:11434',
  })
  OLLAMA_HOST = 'http://localhost:11434';

  @IsString() @IsNotEmpty()
  OLLAMA_MODEL = 'gpt-oss:20b';

  @IsIn(['ollama', 'mock'])
  AI_PROVIDER: 'ollama' | 'mock' = 'ollama';

  @Transform(toBoolean) @IsBoolean()
  WORKER_ENABLED = true;

  @Transform(toInt) @IsInt() @Min(1) @Max(256)
  WORKER_CONCURRENCY = 4;

  @IsIn(['token', 'none'])
  AUTH_MODE: 'token' | 'none' = 'token';

  @IsOptional() @IsString() @MinLength(16, { message: 'SESSION_SECRET must be at least 16 characters' })
  SESSION_SECRET?: string;

  @Transform(toInt) @IsInt() @Min(1) @Max(1_000_000)
  MAX_MESSAGE_CHARS = 16000;

  @IsString()
  SYSTEM_PROMPT = DEFAULT_SYSTEM_PROMPT;

  @Transform(toInt) @IsInt() @Min(0)
  RATE_LIMIT_SESSION_PER_MINUTE = 30;

  @Transform(toInt) @IsInt() @Min(0)
  RATE_LIMIT_IP_PER_MINUTE = 120;

  @Transform(toInt) @IsInt() @Min(1)
  MAX_BACKLOG = 10000;

  @IsOptional() @IsString()
  CORS_ORIGINS?: string;

  @IsIn(['debug', 'info', 'warn', 'error'])
  LOG_LEVEL: 'debug' | 'info' | 'warn' | 'error' = 'info';

  // ---- extensions beyond the contract ----

  @IsOptional() @IsString()
  NODE_ENV?: string;

  /**
   * Behind a reverse proxy: Express's `trust proxy` value (`true`, a hop count, or addresses such as
   * `loopback`), so per-address rate limits see the client, not the proxy. Unset: the socket peer.
   */
  @IsOptional() @IsString()
  TRUST_PROXY?: string;

  /** `json` (one object per line) or `pretty` (needs the pino-pretty dev dependency). Default: pretty on a terminal outside production. */
  @IsOptional() @IsIn(['json', 'pretty'])
  LOG_FORMAT?: 'json' | 'pretty';

  /** A standalone worker serves Prometheus metrics on this port (0 = off); API processes serve /metrics. */
  @Transform(toInt) @IsInt() @Min(0) @Max(65535)
  WORKER_METRICS_PORT = 0;

  /** Messages (user + assistant) of a session kept in Redis; older ones are dropped. */
  @Transform(toInt) @IsInt() @Min(2) @Max(10_000)
  HISTORY_MAX_MESSAGES = 200;

  /** Messages of earlier turns sent to the model as context. */
  @Transform(toInt) @IsInt() @Min(0) @Max(10_000)
  CONTEXT_MAX_MESSAGES = 40;

  /** A session's history expires this long after its last write. */
  @Transform(toInt) @IsInt() @Min(60)
  HISTORY_TTL_SECONDS = 7 * 24 * 3600;

  /** Approximate length bound of chat:incoming / chat:outgoing / chat:dead (XADD MAXLEN ~). */
  @Transform(toInt) @IsInt() @Min(100)
  STREAM_MAX_LEN = 100_000;

  /** Events kept per session for resuming (Last-Event-ID / lastEventId); older ones need a history reload. */
  @Transform(toInt) @IsInt() @Min(100)
  SESSION_EVENTS_MAX_LEN = 5000;

  /** After the first token, deltas are batched over this window to spare Redis. 0 = one event per chunk. */
  @Transform(toInt) @IsInt() @Min(0) @Max(1000)
  DELTA_COALESCE_MS = 30;

  /** No first token from the model within this time fails the generation (model load included). */
  @Transform(toInt) @IsInt() @Min(100)
  OLLAMA_FIRST_TOKEN_TIMEOUT_MS = 120_000;

  /** A whole generation longer than this fails. */
  @Transform(toInt) @IsInt() @Min(100)
  OLLAMA_TIMEOUT_MS = 600_000;

  /** Delay between tokens of the mock provider. */
  @Transform(toInt) @IsInt() @Min(0) @Max(10_000)
  MOCK_TOKEN_DELAY_MS = 25;

  /**
   * A command whose worker has not shown life for this long (crashed, killed, partitioned) is
   * claimed by another worker. Live generations refresh their claim every third of it.
   */
  @Transform(toInt) @IsInt() @Min(200)
  WORKER_CLAIM_IDLE_MS = 30_000;

  /** A message delivered this many times without an outcome (it keeps killing workers) is dead-lettered. */
  @Transform(toInt) @IsInt() @Min(1) @Max(100)
  WORKER_MAX_DELIVERIES = 3;

  /** On SIGTERM, in-flight generations get this long to finish before they are left to another worker. */
  @Transform(toInt) @IsInt() @Min(0)
  SHUTDOWN_GRACE_MS = 10_000;
}

export type EnvironmentInput = Record<string, unknown>;

/**
 * Validates raw env into a typed Environment. Unknown variables are ignored; empty strings count as
 * unset so `FOO=` in a .env file falls back to the default. Throws one error naming every bad variable.
 */
export function validateEnvironment(raw: EnvironmentInput): Environment {
  const known = Object.keys(new Environment()).concat(['SESSION_SECRET', 'CORS_ORIGINS', 'LOG_FORMAT', 'NODE_ENV', 'TRUST_PROXY']);
  const picked: Record<string, unknown> = {};
  for (const key of known) {
    const value = raw[key];
    if (value !== undefined && value !== '') picked[key] = value;
  }
  const env = plainToInstance(Environment, picked, { exposeDefaultValues: true });
  const errors = validateSync(env, { skipMissingProperties: false });
  if (errors.length > 0) {
    const lines = errors.map((e) => {
      const why = Object.values(e.constraints ?? {}).join('; ');
      return `  ${e.property}=${JSON.stringify(picked[e.property] ?? null)}: ${why}`;
    });
    throw new Error(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return env;
}
