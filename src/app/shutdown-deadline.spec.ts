import { jest } from '@jest/globals';
import { EventEmitter } from 'node:events';
import { AppConfig } from '../config/app-config';
import { validateEnvironment } from '../config/environment';
import { ProcessControl, SHUTDOWN_DEADLINE_MARGIN_MS, ShutdownDeadline } from './shutdown-deadline';

/** A process of our own: signals are events on it, and exits and kills are recorded, not done. */
class FakeProcess extends EventEmitter implements ProcessControl {
  readonly exits: number[] = [];
  readonly kills: NodeJS.Signals[] = [];
  kill(signal: NodeJS.Signals): void {
    this.kills.push(signal);
  }
  exit(code: number): void {
    this.exits.push(code);
  }
}

const GRACE_MS = 2000;

function deadline(): { subject: ShutdownDeadline; proc: FakeProcess } {
  const subject = new ShutdownDeadline(new AppConfig(validateEnvironment({ SHUTDOWN_GRACE_MS: String(GRACE_MS) })));
  const proc = new FakeProcess();
  subject.control = proc;
  subject.onModuleInit();
  return { subject, proc };
}

/** Nest's own shutdown listener, which stays attached while the hooks run. */
const nestListener = () => undefined;

describe('ShutdownDeadline', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('exits with 1 at SHUTDOWN_GRACE_MS + the margin after SIGTERM, if the shutdown has not ended the process', () => {
    const { proc } = deadline();
    proc.on('SIGTERM', nestListener);
    proc.emit('SIGTERM', 'SIGTERM');
    jest.advanceTimersByTime(GRACE_MS + SHUTDOWN_DEADLINE_MARGIN_MS - 1);
    expect(proc.exits).toEqual([]);
    jest.advanceTimersByTime(1);
    expect(proc.exits).toEqual([1]);
    expect(proc.kills).toEqual([]);
  });

  it('arms on SIGINT too, once, and leaves a later signal to its default (no listener of its own left)', () => {
    const { proc } = deadline();
    proc.on('SIGINT', nestListener);
    proc.on('SIGTERM', nestListener);
    proc.emit('SIGINT', 'SIGINT');
    expect(proc.listenerCount('SIGINT')).toBe(1);
    expect(proc.listenerCount('SIGTERM')).toBe(1);
    proc.emit('SIGTERM', 'SIGTERM');
    jest.advanceTimersByTime(GRACE_MS + SHUTDOWN_DEADLINE_MARGIN_MS);
    expect(proc.exits).toEqual([1]);
  });

  it("never keeps the process alive: the timer is unref'd", () => {
    const { proc } = deadline();
    proc.on('SIGTERM', nestListener);
    const setTimer = jest.spyOn(global, 'setTimeout');
    proc.emit('SIGTERM', 'SIGTERM');
    const timer = setTimer.mock.results[0]?.value as NodeJS.Timeout;
    expect(timer.hasRef()).toBe(false);
  });

  it('terminates at once as by default when nobody else handles the signal yet (start-up)', () => {
    const { proc } = deadline();
    proc.emit('SIGTERM', 'SIGTERM');
    expect(proc.kills).toEqual(['SIGTERM']);
    jest.advanceTimersByTime(GRACE_MS + SHUTDOWN_DEADLINE_MARGIN_MS);
    expect(proc.exits).toEqual([]);
  });

  it('lets go of the signals when the app is closed without one', () => {
    const { subject, proc } = deadline();
    subject.onApplicationShutdown();
    expect(proc.listenerCount('SIGTERM')).toBe(0);
    expect(proc.listenerCount('SIGINT')).toBe(0);
  });
});
