/** Settles with 'done' once `work` settles, or with 'still waiting' after `ms` (the timer is cleared either way). */
export async function within(work: Promise<unknown>, ms: number): Promise<'done' | 'still waiting'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'still waiting'>((resolve) => (timer = setTimeout(resolve, ms, 'still waiting')));
  try {
    return await Promise.race([work.then(() => 'done' as const), late]);
  } finally {
    clearTimeout(timer);
  }
}
