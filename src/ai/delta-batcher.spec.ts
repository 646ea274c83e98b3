import { DeltaBatcher, DeltaKind } from './delta-batcher';

describe('DeltaBatcher', () => {
  const collect = () => {
    const published: [DeltaKind, string][] = [];
    const publish = (kind: DeltaKind, text: string) => {
      published.push([kind, text]);
      return Promise.resolve();
    };
    return { published, publish };
  };

  it('publishes the first token of each kind at once and joins the rest', async () => {
    const { published, publish } = collect();
    const batcher = new DeltaBatcher(publish, 1000);
    batcher.push('thinking', 'a');
    batcher.push('thinking', 'b');
    batcher.push('thinking', 'c');
    await Promise.resolve();
    expect(published).toEqual([['thinking', 'a']]);
    batcher.push('content', 'X');
    batcher.push('content', 'Y');
    batcher.push('content', 'Z');
    await batcher.close();
    expect(published).toEqual([
      ['thinking', 'a'],
      ['thinking', 'bc'],
      ['content', 'X'],
      ['content', 'YZ'],
    ]);
  });

  it('flushes after the window without waiting for close', async () => {
    const { published, publish } = collect();
    const batcher = new DeltaBatcher(publish, 10);
    batcher.push('content', 'a');
    batcher.push('content', 'b');
    await new Promise((r) => setTimeout(r, 40));
    expect(published).toEqual([
      ['content', 'a'],
      ['content', 'b'],
    ]);
    await batcher.close();
  });

  it('publishes every token with a zero window', async () => {
    const { published, publish } = collect();
    const batcher = new DeltaBatcher(publish, 0);
    for (const t of ['a', 'b', 'c']) batcher.push('content', t);
    await batcher.close();
    expect(published.map(([, t]) => t)).toEqual(['a', 'b', 'c']);
  });

  it('keeps the model order under interleaved pushes while publishes are slow, one publish at a time', async () => {
    // Each publish takes less time than the one before, so publishes that overlapped would finish out of order.
    const published: [DeltaKind, string][] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    let delayMs = 30;
    const batcher = new DeltaBatcher(async (kind, text) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, Math.max(0, (delayMs -= 5))));
      published.push([kind, text]);
      inFlight--;
    }, 2);
    const tokens: [DeltaKind, string][] = [
      ['thinking', 'a'],
      ['thinking', 'b'],
      ['content', 'c'],
      ['thinking', 'd'],
      ['content', 'e'],
      ['content', 'f'],
      ['thinking', 'g'],
      ['content', 'h'],
      ['content', 'i'],
    ];
    for (const [i, [kind, text]] of tokens.entries()) {
      batcher.push(kind, text);
      // Some pushes arrive while earlier publishes are still running, some after the window ran out.
      if (i % 3 === 2) await new Promise((r) => setTimeout(r, 4));
    }
    await batcher.close();
    expect(maxInFlight).toBe(1);
    // Joined back, the events are the tokens in the order they came, each under its own kind.
    const spelled = published.flatMap(([kind, text]) => [...text].map((ch) => [kind, ch]));
    expect(spelled).toEqual(tokens);
  });

  it('stops publishing after the first failure and rethrows it on close', async () => {
    const published: string[] = [];
    let calls = 0;
    const batcher = new DeltaBatcher((_k, text) => {
      calls++;
      if (calls === 2) return Promise.reject(new Error('redis down'));
      published.push(text);
      return Promise.resolve();
    }, 0);
    batcher.push('content', 'a');
    batcher.push('content', 'b');
    batcher.push('content', 'c');
    await expect(batcher.close()).rejects.toThrow('redis down');
    expect(published).toEqual(['a']);
    expect(calls).toBe(2);
  });
});
