/* Small helpers about ids: stream event ids and client message ids. */

/** Compares stream ids "ms-seq" numerically (as strings, "9-0" would sort after "10-0"). */
export function compareIds(a, b) {
  const [aMs, aSeq] = String(a).split('-');
  const [bMs, bSeq] = String(b).split('-');
  const d = Number(aMs) - Number(bMs) || Number(aSeq || 0) - Number(bSeq || 0);
  return d < 0 ? -1 : d > 0 ? 1 : 0;
}

/** An id for clientMessageId; crypto.getRandomValues works on plain-http LAN pages too (randomUUID does not). */
export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return 'web-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
