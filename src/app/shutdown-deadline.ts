import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { AppConfig } from '../config/app-config';

/**
 * Beyond SHUTDOWN_GRACE_MS, how long the rest of the shutdown may take (aborting generations,
 * closing sockets, servers and Redis connections, each bounded on its own) before the process
 * exits regardless.
 */
export const SHUTDOWN_DEADLINE_MARGIN_MS = 3000;

const SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];

/** The process as the deadline sees it: its signals and its end. Replaced in specs. */
export interface ProcessControl {
  once(signal: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): void;
  off(signal: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): void;
  listenerCount(signal: NodeJS.Signals): number;
  /** Sends the signal to this process. */
  kill(signal: NodeJS.Signals): void;
  exit(code: number): void;
}

const nodeProcess: ProcessControl = {
  once: (signal, listener) => process.once(signal, listener),
  off: (signal, listener) => process.off(signal, listener),
  listenerCount: (signal) => process.listenerCount(signal),
  kill: (signal) => process.kill(process.pid, signal),
  exit: (code) => process.exit(code),
};

/**
 * The last resort that makes SIGTERM/SIGINT always end the process: on the signal it arms a timer
 * that exits at SHUTDOWN_GRACE_MS + SHUTDOWN_DEADLINE_MARGIN_MS, whatever the shutdown hooks are
 * still waiting on. Nest ignores further signals while its hooks run, so without this a hook that
 * hangs (on Redis, on a client connection) leaves only SIGKILL.
 *
 * Armed from a process signal listener, not a Nest hook: onModuleDestroy and
 * beforeApplicationShutdown hooks run first and are the ones that may hang.
 */
@Injectable()
export class ShutdownDeadline implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(ShutdownDeadline.name);
  private armed: NodeJS.Timeout | null = null;
  control: ProcessControl = nodeProcess;

  constructor(private readonly config: AppConfig) {}

  get deadlineMs(): number {
    return this.config.worker.shutdownGraceMs + SHUTDOWN_DEADLINE_MARGIN_MS;
  }

  onModuleInit(): void {
    for (const signal of SIGNALS) this.control.once(signal, this.onSignal);
  }

  /**
   * Removes the listeners (the shutdown may come from `app.close()`, without a signal); a timer
   * already armed stays: the shutdown it guards is still running.
   */
  onApplicationShutdown(): void {
    for (const signal of SIGNALS) this.control.off(signal, this.onSignal);
  }

  private readonly onSignal = (signal: NodeJS.Signals): void => {
    // `once` listeners of both signals: the other one goes too, so Nest's re-raised signal (or a
    // second one from the operator) meets no listener of ours and ends the process as by default.
    for (const other of SIGNALS) this.control.off(other, this.onSignal);
    // Nobody else handles it yet (start-up, before enableShutdownHooks): terminate as by default.
    if (this.control.listenerCount(signal) === 0) {
      this.control.kill(signal);
      return;
    }
    if (this.armed) return;
    const ms = this.deadlineMs;
    this.armed = setTimeout(() => {
      this.logger.error(
        `shutdown still not finished ${ms} ms after ${signal} (SHUTDOWN_GRACE_MS + ${SHUTDOWN_DEADLINE_MARGIN_MS} ms): exiting now`,
      );
      this.control.exit(1);
    }, ms);
    // Never the reason the process stays alive: a shutdown that finishes exits at once.
    this.armed.unref();
  };
}
