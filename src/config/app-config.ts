import { Environment } from './environment';
import { compileTrustProxy, TrustProxy } from './trust-proxy';

/** The service's settings, typed and grouped. Built once from the validated environment. */
export class AppConfig {
  readonly http: {
    port: number;
    corsOrigins: string[] | null;
    /** Compiled TRUST_PROXY: Express's `trust proxy` and the sockets' client address use this one function. */
    trustProxy: TrustProxy;
    docsEnabled: boolean;
    /** /health names each dependency's details only when set. */
    healthDetails: boolean;
    metricsToken: string | null;
  };
  readonly redis: {
    url: string;
    /** Seed nodes of a Redis Cluster, or null on a single Redis (REDIS_CLUSTER_NODES). */
    clusterNodes: { host: string; port: number }[] | null;
    /** Approximate bound of each partition's stream: STREAM_MAX_LEN shared by the partitions. */
    streamMaxLen: number;
    sessionEventsMaxLen: number;
    partitions: number;
  };
  readonly ai: {
    provider: 'ollama' | 'openai' | 'mock';
    /** AI_PROVIDER=openai: the OpenAI-compatible server. */
    openai: { baseUrl: string; apiKey: string | null; model: string };
    ollamaHost: string;
    model: string;
    systemPrompt: string;
    firstTokenTimeoutMs: number;
    totalTimeoutMs: number;
    mockTokenDelayMs: number;
    /** Models a send may name besides `model`; null: whatever the provider lists. */
    allowedModels: string[] | null;
    /** Short titles written by the model after a chat's first answer (never with the mock provider). */
    titles: boolean;
  };
  /** The model's context window (docs/design.md, "Context window"). */
  readonly context: { windowTokens: number; reserveTokens: number; maxMessages: number };
  readonly worker: {
    enabled: boolean;
    concurrency: number;
    deltaCoalesceMs: number;
    shutdownGraceMs: number;
    livenessMs: number;
    maxDeliveries: number;
  };
  readonly auth: {
    mode: 'token' | 'none';
    sessionSecret: string | null;
    /** Secrets that signed earlier tokens, still accepted for verification. */
    previousSecrets: string[];
    tokenTtlSeconds: number;
  };
  readonly limits: {
    maxMessageChars: number;
    sessionPerMinute: number;
    ipPerMinute: number;
    maxBacklog: number;
    maxQueuedPerSession: number;
    newSessionsPerMinute: number;
    connectionsPerSession: number;
    connectionsPerAddress: number;
    socketEventsPerMinute: number;
    socketEventBurst: number;
  };
  readonly history: { maxMessages: number; contextMessages: number; ttlSeconds: number };
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
  readonly logFormat: 'json' | 'pretty' | null;
  readonly workerMetricsPort: number;
  readonly production: boolean;

  constructor(env: Environment) {
    this.http = {
      port: env.PORT,
      corsOrigins: env.CORS_ORIGINS
        ? env.CORS_ORIGINS.split(',')
            .map((o) => o.trim())
            .filter(Boolean)
        : null,
      trustProxy: compileTrustProxy(env.TRUST_PROXY),
      docsEnabled: env.DOCS_ENABLED,
      healthDetails: env.HEALTH_DETAILS,
      metricsToken: env.METRICS_TOKEN ?? null,
    };
    this.redis = {
      url: env.REDIS_URL,
      clusterNodes: env.REDIS_CLUSTER_NODES
        ? env.REDIS_CLUSTER_NODES.split(',').map((node) => {
            const [host, port] = node.trim().split(':');
            return { host, port: Number(port) };
          })
        : null,
      // STREAM_MAX_LEN bounds each kind of stream in all: shared by the partitions, a few hundred
      // entries each at the least (a relay further behind than that misses events of a partition).
      streamMaxLen: Math.max(Math.min(env.STREAM_MAX_LEN, 500), Math.ceil(env.STREAM_MAX_LEN / env.PARTITIONS)),
      sessionEventsMaxLen: env.SESSION_EVENTS_MAX_LEN,
      partitions: env.PARTITIONS,
    };
    this.ai = {
      provider: env.AI_PROVIDER,
      openai: { baseUrl: env.OPENAI_BASE_URL.replace(/\/+$/, ''), apiKey: env.OPENAI_API_KEY ?? null, model: env.OPENAI_MODEL },
      ollamaHost: env.OLLAMA_HOST.replace(/\/+$/, ''),
      // the model that answers: OLLAMA_MODEL, or OPENAI_MODEL with AI_PROVIDER=openai
      model: env.AI_PROVIDER === 'openai' ? env.OPENAI_MODEL : env.OLLAMA_MODEL,
      systemPrompt: env.SYSTEM_PROMPT,
      firstTokenTimeoutMs: env.OLLAMA_FIRST_TOKEN_TIMEOUT_MS,
      totalTimeoutMs: env.OLLAMA_TIMEOUT_MS,
      mockTokenDelayMs: env.MOCK_TOKEN_DELAY_MS,
      allowedModels: env.ALLOWED_MODELS
        ? env.ALLOWED_MODELS.split(',')
            .map((m) => m.trim())
            .filter(Boolean)
        : null,
      titles: env.TITLES && env.AI_PROVIDER !== 'mock',
    };
    this.context = { windowTokens: env.OLLAMA_NUM_CTX, reserveTokens: env.CONTEXT_RESERVE_TOKENS, maxMessages: env.CONTEXT_MAX_MESSAGES };
    this.worker = {
      enabled: env.WORKER_ENABLED,
      concurrency: env.WORKER_CONCURRENCY,
      deltaCoalesceMs: env.DELTA_COALESCE_MS,
      shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
      livenessMs: env.WORKER_LIVENESS_MS,
      maxDeliveries: env.WORKER_MAX_DELIVERIES,
    };
    this.auth = {
      mode: env.AUTH_MODE,
      sessionSecret: env.SESSION_SECRET ?? null,
      previousSecrets: (env.SESSION_SECRET_PREVIOUS ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
      tokenTtlSeconds: env.TOKEN_TTL_SECONDS,
    };
    this.limits = {
      maxMessageChars: env.MAX_MESSAGE_CHARS,
      sessionPerMinute: env.RATE_LIMIT_SESSION_PER_MINUTE,
      ipPerMinute: env.RATE_LIMIT_IP_PER_MINUTE,
      maxBacklog: env.MAX_BACKLOG,
      maxQueuedPerSession: env.MAX_QUEUED_PER_SESSION,
      newSessionsPerMinute: env.RATE_LIMIT_NEW_SESSIONS_PER_MINUTE,
      connectionsPerSession: env.MAX_CONNECTIONS_PER_SESSION,
      connectionsPerAddress: env.MAX_CONNECTIONS_PER_ADDRESS,
      socketEventsPerMinute: env.SOCKET_EVENTS_PER_MINUTE,
      socketEventBurst: env.SOCKET_EVENT_BURST,
    };
    this.history = {
      maxMessages: env.HISTORY_MAX_MESSAGES,
      contextMessages: env.CONTEXT_MAX_MESSAGES,
      ttlSeconds: env.HISTORY_TTL_SECONDS,
    };
    this.logLevel = env.LOG_LEVEL;
    this.logFormat = env.LOG_FORMAT ?? null;
    this.workerMetricsPort = env.WORKER_METRICS_PORT;
    this.production = env.NODE_ENV === 'production';
  }
}
