/* Retrying an HTTP call while the server is unreachable, with growing pauses (1 s, 2 s, 4 s … 10 s). */
import { sleep } from './ids.js';

/**
 * Answers what `attempt` answers once it succeeds. `stillWanted()`: false once nobody waits for the
 * answer any more (the person moved on), which ends the retries with the last error.
 * `waiting(err, ms)`: called before each pause, to tell the person.
 */
export async function retrying(attempt, { stillWanted, waiting }) {
  for (let i = 0; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (!stillWanted()) throw err;
      const wait = Math.min(1000 * 2 ** i, 10000);
      waiting(err, wait);
      await sleep(wait);
      if (!stillWanted()) throw err;
    }
  }
}
