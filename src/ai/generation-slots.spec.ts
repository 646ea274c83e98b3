import { GenerationSlots } from './generation-slots';

describe('GenerationSlots', () => {
  it('grants up to size at once, then in FIFO order as slots are released', async () => {
    const slots = new GenerationSlots(2);
    const never = new AbortController().signal;
    const a = await slots.acquire(never);
    const b = await slots.acquire(never);
    expect(slots.free).toBe(0);
    const order: string[] = [];
    const c = slots.acquire(never).then((r) => (order.push('c'), r));
    const d = slots.acquire(never).then((r) => (order.push('d'), r));
    await Promise.resolve();
    expect(order).toEqual([]);
    a!();
    a!(); // releasing twice frees one slot only
    await c;
    expect(order).toEqual(['c']);
    expect(slots.free).toBe(0);
    b!();
    await d;
    expect(order).toEqual(['c', 'd']);
  });

  it('gives up a wait when aborted, without taking a slot', async () => {
    const slots = new GenerationSlots(1);
    const held = await slots.acquire(new AbortController().signal);
    const controller = new AbortController();
    const waiting = slots.acquire(controller.signal);
    controller.abort();
    expect(await waiting).toBeNull();
    held!();
    expect(slots.free).toBe(1);
  });

  it('tells listeners when a slot is released', async () => {
    const slots = new GenerationSlots(1);
    let calls = 0;
    slots.onRelease(() => calls++);
    const release = await slots.acquire(new AbortController().signal);
    release!();
    expect(calls).toBe(1);
  });
});
