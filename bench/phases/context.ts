import type { BenchEnv } from '../lib/env';
import type { Monitor } from '../lib/monitor';
import type { ReplyShape } from '../lib/fake';

export interface BenchConfig {
  mode: 'quick' | 'full';
  cores: number;
  /** A measurement disturbed by other processes on the machine is repeated up to this many times in all. */
  tries: number;
  /** Session ids of a run start with this (unique per run). */
  runTag: string;
  latency: {
    loads: number[];
    sessions: number;
    warmupSeconds: number;
    floorSeconds: number;
    seconds: number;
    reply: ReplyShape;
  };
  throughput: {
    sessions: number;
    reply: ReplyShape;
    probeSeconds: number;
    stepSeconds: number;
    /** offered rates as fractions of the closed-loop capacity */
    fractions: number[];
  };
  fanout: {
    sessions: number;
    /** one step per delay between tokens: offered = sessions × 1000 / delay tokens/s */
    delaysMs: number[];
    /** each reply lasts about this long (tokens = messageMs / delay) */
    messageMs: number;
    warmupSeconds: number;
    seconds: number;
    /** DELTA_COALESCE_MS values to run the fan-out with (the worker is restarted for each) */
    coalesce: number[];
  };
  memory: {
    messages: number;
    sessions: number;
    reply: ReplyShape;
    checkpoints: number;
    idleSeconds: number;
    /** the phase stops sending after this long (a busy machine must not make a run endless) */
    maxSeconds: number;
  };
  /** Environment of both app processes (REDIS_URL, OLLAMA_HOST, PORT added by the bench). */
  appEnv: Record<string, string>;
}

export interface PhaseContext {
  env: BenchEnv;
  monitor: Monitor;
  config: BenchConfig;
  log: (line: string) => void;
}
