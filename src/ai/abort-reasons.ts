/** Why a generation's AbortSignal fired: the worker is shutting down, or a person cancelled. */
export const ABORT_SHUTDOWN = 'shutdown';
export const ABORT_CANCELLED = 'cancelled';

export function isCancelled(signal: AbortSignal): boolean {
  return signal.aborted && signal.reason === ABORT_CANCELLED;
}
