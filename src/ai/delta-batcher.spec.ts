import { DeltaBatcher, DeltaKind } from './delta-batcher';

describe('DeltaBatcher', () => {
  const collect = () => {
    const published: [DeltaKind, string][] = [];
    const publish = async (kind: DeltaKind, text: string) => {
      published.push([kind, text]);
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

  it('keeps order when a publish is slow and rethrows the first failure on close', async () => {
    const published: string[] = [];
    let calls = 0;
    const batcher = new DeltaBatcher(async (_k, text) => {
      calls++;
      if (calls === 2) throw new Error('redis down');
      await new Promise((r) => setTimeout(r, 5));
      published.push(text);
    }, 0);
    batcher.push('content', 'a');
    batcher.push('content', 'b');
    batcher.push('content', 'c');
    await expect(batcher.close()).rejects.toThrow('redis down');
    expect(published).toEqual(['a']);
  });
});
