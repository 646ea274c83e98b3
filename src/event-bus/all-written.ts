/**
 * Waits for every write issued together (none is left running unobserved), then throws the first
 * failure, if any. Writes sent together on one connection all reach Redis whatever happens to the
 * first; the caller must know all of them have settled before it reacts to a failure.
 */
export async function allWritten(writes: readonly Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(writes)).find((w): w is PromiseRejectedResult => w.status === 'rejected');
  if (failed) throw failed.reason;
}
