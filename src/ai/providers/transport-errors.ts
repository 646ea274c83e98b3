/**
 * What a failed HTTP exchange says about the server, read from the error chain of `fetch` (undici's
 * or NodeHttpFetch's) whatever client wrapped it. Errors are read by shape, not `instanceof Error`:
 * fetch's errors may come from another realm (undici's own, a test sandbox), where that check fails.
 */

/** Nothing listens there, or the name or route is wrong: the server could not be reached at all. */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/**
 * The connection was made, then reset or closed before (or while) the server answered: it was
 * reachable, so this is a cut stream (transient), not "is it running?". Node's http says `socket
 * hang up` (ECONNRESET), undici `other side closed` (UND_ERR_SOCKET) under `fetch failed`, and a body
 * cut short `terminated`.
 */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);
const RESET_MESSAGE = /socket hang up|other side closed|terminated|ECONNRESET|EPIPE/i;

/** How deep a cause chain is followed: clients wrap fetch's error, which wraps the socket's. */
const MAX_DEPTH = 4;

function isErrorLike(value: unknown): value is Error {
  return typeof value === 'object' && value !== null && typeof (value as { message?: unknown }).message === 'string';
}

/** The first string `code` along the cause chain (ECONNREFUSED, UND_ERR_SOCKET...). */
export function causeCode(err: unknown): string | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < MAX_DEPTH && isErrorLike(current); depth++) {
    const code = (current as Error & { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = (current as Error & { cause?: unknown }).cause;
  }
  return undefined;
}

/** The messages of an error and its causes, outermost first. */
export function causeMessages(err: unknown): string[] {
  const messages: string[] = [];
  let current: unknown = err;
  for (let depth = 0; depth < MAX_DEPTH && isErrorLike(current); depth++) {
    messages.push(current.message);
    current = (current as Error & { cause?: unknown }).cause;
  }
  return messages;
}

/** The server was reached, then the connection was reset or the body cut short. */
export function isConnectionReset(err: unknown): boolean {
  const code = causeCode(err);
  return (code !== undefined && RESET_CODES.has(code)) || causeMessages(err).some((m) => RESET_MESSAGE.test(m));
}

/** Nothing answered at that address (checked after isConnectionReset: a reset says it was reachable). */
export function isConnectionRefused(err: unknown): boolean {
  const code = causeCode(err);
  return (code !== undefined && CONNECTION_CODES.has(code)) || causeMessages(err).some((m) => /fetch failed/i.test(m));
}
