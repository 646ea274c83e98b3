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
  Validate,
  validateSync,
  ValidatorConstraint,
  ValidatorConstraintInterface,
} from 'class-validator';
import { compileTrustProxy } from './trust-proxy';

@ValidatorConstraint({ name: 'trustProxy' })
class TrustProxyRule implements ValidatorConstraintInterface {
  validate(value: unknown): boolean {
    if (typeof value !== 'string') return false;
    try {
      compileTrustProxy(value);
      return true;
    } catch {
      return false;
    }
  }

  defaultMessage(): string {
    return 'TRUST_PROXY must be true, false, a hop count (0, 1, ...) or comma-separated addresses/subnets (loopback, linklocal, uniquelocal, 10.0.0.0/8, ...)';
  }
}

@ValidatorConstraint({ name: 'previousSecrets' })
class PreviousSecretsRule implements ValidatorConstraintInterface {
  validate(value: unknown): boolean {
    return typeof value === 'string' && value.split(',').every((secret) => secret.trim().length >= 16);
  }

  defaultMessage(): string {
    return 'SESSION_SECRET_PREVIOUS must be comma-separated secrets of at least 16 characters each';
  }
}

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
  'You are a helpful, concise assistant. Answer in the language of the user. ' + 'Use Markdown for lists and code.';

/**
 * Every variable the service reads, with its default (optional ones `= undefined`, so that they are
 * own properties too). This class is the only place that knows environment variable names; the rest
 * of the code receives the typed AppConfig.
 */
export class Environment {
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(65535)
  PORT = 3000;

  @Matches(/^rediss?:\/\/\S+$/, { message: 'REDIS_URL must look like redis://host:6379 or rediss://...' })
  REDIS_URL = 'redis://localhost:6379';

  /**
   * Seed nodes of a Redis Cluster (`host:port,host:port`). Set, the service runs on the cluster and
   * REDIS_URL only lends it its user, password and TLS (`rediss://`); its host and database are unused.
   */
  @IsOptional()
  @Matches(/^\s*[^\s,:]+:\d{1,5}\s*(,\s*[^\s,:]+:\d{1,5}\s*)*$/, {
    message: 'REDIS_CLUSTER_NODES must be a comma-separated list of host:port, such as 10.0.0.1:7000,10.0.0.2:7000',
  })
  REDIS_CLUSTER_NODES?: string = undefined;

  @IsUrl(
    { require_tld: false, require_protocol: true, protocols: ['http', 'https'] },
    {
      message: 'OLLAMA_HOST must be an http(s) URL such as http://localhost:11434',
    },
  )
  OLLAMA_HOST = 'http://localhost:11434';

  @IsString()
  @IsNotEmpty()
  OLLAMA_MODEL = 'gpt-oss:20b';

  @IsIn(['ollama', 'openai', 'mock'])
  AI_PROVIDER: 'ollama' | 'openai' | 'mock' = 'ollama';

  /** An OpenAI-compatible server's API root (vLLM, llama.cpp's llama-server, LM Studio, OpenAI): AI_PROVIDER=openai. */
  @IsUrl(
    { require_tld: false, require_protocol: true, protocols: ['http', 'https'] },
    { message: 'OPENAI_BASE_URL must be an http(s) URL such as http://localhost:8000/v1' },
  )
  OPENAI_BASE_URL = 'http://localhost:8000/v1';

  /** Sent as a bearer token; optional for local servers. Never logged. */
  @IsOptional()
  @IsString()
  OPENAI_API_KEY?: string = undefined;

  /** The model name the server exposes (vLLM: the Hugging Face id it was started with). */
  @IsString()
  @IsNotEmpty()
  OPENAI_MODEL = 'openai/gpt-oss-20b';

  @Transform(toBoolean)
  @IsBoolean()
  WORKER_ENABLED = true;

  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(256)
  WORKER_CONCURRENCY = 4;

  @IsIn(['token', 'none'])
  AUTH_MODE: 'token' | 'none' = 'token';

  @IsOptional()
  @IsString()
  @MinLength(16, { message: 'SESSION_SECRET must be at least 16 characters' })
  SESSION_SECRET?: string = undefined;

  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(1_000_000)
  MAX_MESSAGE_CHARS = 16000;

  @IsString()
  SYSTEM_PROMPT = DEFAULT_SYSTEM_PROMPT;

  @Transform(toInt)
  @IsInt()
  @Min(0)
  RATE_LIMIT_SESSION_PER_MINUTE = 30;

  @Transform(toInt)
  @IsInt()
  @Min(0)
  RATE_LIMIT_IP_PER_MINUTE = 120;

  @Transform(toInt)
  @IsInt()
  @Min(1)
  MAX_BACKLOG = 10000;

  @IsOptional()
  @IsString()
  CORS_ORIGINS?: string = undefined;

  @IsIn(['debug', 'info', 'warn', 'error'])
  LOG_LEVEL: 'debug' | 'info' | 'warn' | 'error' = 'info';

  // ---- extensions beyond the contract ----

  @IsOptional()
  @IsString()
  NODE_ENV?: string = undefined;

  /**
   * Behind a reverse proxy: Express's `trust proxy` value (`true`, a hop count, or addresses and
   * subnets such as `loopback, 10.0.0.0/8`), so per-address limits see the client, not the proxy.
   * Unset or `false`: the connecting peer. Checked by compiling it (see client-address.ts).
   */
  @IsOptional()
  @IsString()
  @Validate(TrustProxyRule)
  TRUST_PROXY?: string = undefined;

  /**
   * Earlier values of SESSION_SECRET, comma-separated: tokens they signed are still accepted (until
   * they expire), new tokens are signed with SESSION_SECRET. For rotating the secret without
   * logging everyone out.
   */
  @IsOptional()
  @IsString()
  @Validate(PreviousSecretsRule)
  SESSION_SECRET_PREVIOUS?: string = undefined;

  /** A session token is valid this long after it was issued; POST /sessions/:id/token issues a fresh one. */
  @Transform(toInt)
  @IsInt()
  @Min(60)
  TOKEN_TTL_SECONDS = 30 * 24 * 3600;

  /** Sessions one client address may create per minute (POST /sessions); 0 turns the limit off. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  RATE_LIMIT_NEW_SESSIONS_PER_MINUTE = 30;

  /** Open event connections (Socket.IO, SSE, plain WebSocket) of one session on one API process; 0 = no cap. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  MAX_CONNECTIONS_PER_SESSION = 20;

  /** Open connections (Socket.IO, SSE, plain WebSocket, authenticated or not) from one address on one API process; 0 = no cap. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  MAX_CONNECTIONS_PER_ADDRESS = 200;

  /** Events one socket may send per minute (Socket.IO and plain WebSocket; every event counts). */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  SOCKET_EVENTS_PER_MINUTE = 120;

  /** Events one socket may send in a burst before SOCKET_EVENTS_PER_MINUTE applies. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  SOCKET_EVENT_BURST = 20;

  /** When set, GET /metrics requires `Authorization: Bearer <METRICS_TOKEN>`. */
  @IsOptional()
  @IsString()
  @MinLength(16, { message: 'METRICS_TOKEN must be at least 16 characters' })
  METRICS_TOKEN?: string = undefined;

  /** Serve Swagger UI at /docs and the OpenAPI document at /docs-json. */
  @Transform(toBoolean)
  @IsBoolean()
  DOCS_ENABLED = true;

  /** GET /health names each dependency's details (Ollama address, model list): for operators on a private network. */
  @Transform(toBoolean)
  @IsBoolean()
  HEALTH_DETAILS = false;

  /** `json` (one object per line) or `pretty` (needs the pino-pretty dev dependency). Default: pretty on a terminal outside production. */
  @IsOptional()
  @IsIn(['json', 'pretty'])
  LOG_FORMAT?: 'json' | 'pretty' = undefined;

  /** A standalone worker serves Prometheus metrics on this port (0 = off); API processes serve /metrics. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(65535)
  WORKER_METRICS_PORT = 0;

  /** Messages (user + assistant) of a session kept in Redis; older ones are dropped. */
  @Transform(toInt)
  @IsInt()
  @Min(2)
  @Max(10_000)
  HISTORY_MAX_MESSAGES = 200;

  /** Messages of earlier turns sent to the model as context, at most (the window decides first). */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  // the start script reads a page of this many messages' fields in one HMGET (Lua unpacks ~8000 values at most)
  @Max(2000)
  CONTEXT_MAX_MESSAGES = 40;

  /**
   * The model's context window in tokens, sent to Ollama as options.num_ctx (on an OpenAI-compatible
   * server: set it to the server's window). 8192 suits gpt-oss:20b on a 16 GB GPU; each doubling
   * costs KV-cache memory (about 0.8 GB more per 8k tokens for gpt-oss:20b) and prompt time.
   */
  @Transform(toInt)
  @IsInt()
  @Min(512)
  @Max(1_048_576)
  OLLAMA_NUM_CTX = 8192;

  /** Tokens of the window kept free for the answer (reasoning included); the conversation fits in the rest. */
  @Transform(toInt)
  @IsInt()
  @Min(64)
  CONTEXT_RESERVE_TOKENS = 2048;

  /** Models a send may ask for (comma-separated); unset: every model the provider has. The default model is always allowed. */
  @IsOptional()
  @IsString()
  ALLOWED_MODELS?: string = undefined;

  /** After a chat's first answer, a worker with nothing else to do asks the model for a short title. */
  @Transform(toBoolean)
  @IsBoolean()
  TITLES = true;

  /** A session's history expires this long after its last write. */
  @Transform(toInt)
  @IsInt()
  @Min(60)
  HISTORY_TTL_SECONDS = 7 * 24 * 3600;

  /**
   * Approximate length bound of all chat:incoming:{T} / chat:outgoing:{T} / chat:dead:{T} streams
   * together (XADD MAXLEN ~ on each partition's share, at least 500 entries per partition).
   */
  @Transform(toInt)
  @IsInt()
  @Min(100)
  STREAM_MAX_LEN = 100_000;

  /** Events kept per session for resuming (Last-Event-ID / lastEventId); older ones need a history reload. */
  @Transform(toInt)
  @IsInt()
  @Min(100)
  SESSION_EVENTS_MAX_LEN = 5000;

  /** After the first token, deltas are batched over this window to spare Redis. 0 = one event per chunk. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(1000)
  DELTA_COALESCE_MS = 30;

  /** No first token from the model within this time fails the generation (model load included). */
  @Transform(toInt)
  @IsInt()
  @Min(100)
  OLLAMA_FIRST_TOKEN_TIMEOUT_MS = 120_000;

  /** A whole generation longer than this fails. */
  @Transform(toInt)
  @IsInt()
  @Min(100)
  OLLAMA_TIMEOUT_MS = 600_000;

  /** Delay between tokens of the mock provider. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(10_000)
  MOCK_TOKEN_DELAY_MS = 25;

  /**
   * A worker not heard from for this long (killed, paused, cut off) is dead: its messages are taken
   * over by a live worker. Workers heartbeat every quarter of it, on a timer of their own, so a long
   * generation is never taken over; a worker that comes back later is fenced out (docs/design.md).
   */
  @Transform(toInt)
  @IsInt()
  @Min(400)
  @Max(600_000)
  WORKER_LIVENESS_MS = 2000;

  /**
   * Partitions the sessions are spread over (docs/design.md). Fixed for the life of a deployment's
   * data: a session's keys and queued messages live in its partition.
   */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(1024)
  PARTITIONS = 64;

  /** Messages one session may have waiting behind the one being answered; more are refused (429). */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(10_000)
  MAX_QUEUED_PER_SESSION = 100;

  /** A message delivered this many times without an outcome (it keeps killing workers) is dead-lettered. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(100)
  WORKER_MAX_DELIVERIES = 3;

  /** On SIGTERM, in-flight generations get this long to finish before they are left to another worker. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  SHUTDOWN_GRACE_MS = 10_000;
}

export type EnvironmentInput = Record<string, unknown>;

/** Variables whose values are never printed, not even when they are invalid. */
const SECRET_VARIABLES = new Set(['SESSION_SECRET', 'SESSION_SECRET_PREVIOUS', 'METRICS_TOKEN', 'OPENAI_API_KEY']);
/** Variables holding URLs that may carry a password: printed with the password masked. */
const URL_VARIABLES = new Set(['REDIS_URL', 'OLLAMA_HOST', 'OPENAI_BASE_URL']);

/** How an invalid value is shown in a start-up error: secrets never, URL passwords masked. */
export function printableValue(name: string, value: unknown): string {
  if (value === undefined || value === null) return '(unset)';
  if (SECRET_VARIABLES.has(name)) return '(hidden)';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return JSON.stringify(URL_VARIABLES.has(name) ? maskUrlPassword(text) : text);
}

/** `scheme://user:secret@host` → `scheme://user:***@host`; anything unparsable after `//…@` is masked too. */
export function maskUrlPassword(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/]*)@/i, (_all, scheme: string, credentials: string) => {
    const colon = credentials.indexOf(':');
    return colon < 0 ? `${scheme}***@` : `${scheme}${credentials.slice(0, colon)}:***@`;
  });
}

/**
 * Validates raw env into a typed Environment. Unknown variables are ignored; empty strings count as
 * unset so `FOO=` in a .env file falls back to the default. Throws one error naming every bad variable
 * and its rule, never a secret's value.
 */
export function validateEnvironment(raw: EnvironmentInput): Environment {
  // Every variable is a property of Environment, optional ones initialised to undefined: the list
  // of names comes from the class itself, so a new variable cannot be forgotten here.
  const known = Object.keys(new Environment());
  const picked: Record<string, unknown> = {};
  for (const key of known) {
    const value = raw[key];
    if (value !== undefined && value !== '') picked[key] = value;
  }
  const env = plainToInstance(Environment, picked, { exposeDefaultValues: true });
  const errors = validateSync(env, { skipMissingProperties: false });
  if (env.CONTEXT_RESERVE_TOKENS >= env.OLLAMA_NUM_CTX / 2 && errors.length === 0) {
    // a conversation needs at least half of the window, or every long message would be refused
    throw new Error(
      `Invalid configuration:\n  CONTEXT_RESERVE_TOKENS=${env.CONTEXT_RESERVE_TOKENS}: must be less than half of OLLAMA_NUM_CTX (${env.OLLAMA_NUM_CTX})`,
    );
  }
  if (errors.length > 0) {
    const lines = errors.map((e) => {
      const why = Object.values(e.constraints ?? {}).join('; ');
      return `  ${e.property}=${printableValue(e.property, picked[e.property])}: ${why}`;
    });
    throw new Error(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return env;
}
