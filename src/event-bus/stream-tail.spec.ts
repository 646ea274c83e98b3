import { ABORTED, sleep, untilAborted } from './stream-tail';

describe('untilAborted', () => {
  it('settles as the work does while not aborted', async () => {
    const signal = new AbortController().signal;
    await expect(untilAborted(Promise.resolve(7), signal)).resolves.toBe(7);
    await expect(untilAborted(Promise.reject(new Error('boom')), signal)).rejects.toThrow('boom');
  });

  it('settles with ABORTED as soon as the signal aborts, though the work never settles', async () => {
    const halt = new AbortController();
    const never = new Promise<number>(() => undefined);
    const waiting = untilAborted(never, halt.signal);
    setTimeout(() => halt.abort(), 10);
    await expect(waiting).resolves.toBe(ABORTED);
  });

  it('answers ABORTED at once for an aborted signal, and a later rejection of the work goes unnoticed', async () => {
    const halt = new AbortController();
    halt.abort();
    let reject: (err: Error) => void = () => undefined;
    const work = new Promise<number>((_resolve, r) => (reject = r));
    await expect(untilAborted(work, halt.signal)).resolves.toBe(ABORTED);
    reject(new Error('late')); // would be an unhandled rejection (a failed test) if nobody listened
    await sleep(10);
  });
});
