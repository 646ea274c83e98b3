export type DeltaKind = 'thinking' | 'content';
export type PublishDelta = (kind: DeltaKind, text: string) => Promise<unknown>;

/**
 * Turns a token stream into few events: the first token of each kind is published at once (what
 * the user waits for), later ones are joined over `windowMs`. Publishes run one after another so
 * events keep the model's order; the first publish error is rethrown by `close()`.
 */
export class DeltaBatcher {
  private pendingKind: DeltaKind | null = null;
  private pendingText = '';
  private readonly seen = new Set<DeltaKind>();
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  private failure: Error | null = null;

  constructor(
    private readonly publish: PublishDelta,
    private readonly windowMs: number,
  ) {}

  push(kind: DeltaKind, text: string): void {
    if (!text) return;
    if (this.pendingKind !== null && this.pendingKind !== kind) this.flush();
    if (!this.seen.has(kind) || this.windowMs === 0) {
      this.seen.add(kind);
      this.pendingKind = kind;
      this.pendingText += text;
      this.flush();
      return;
    }
    this.pendingKind = kind;
    this.pendingText += text;
    this.timer ??= setTimeout(() => this.flush(), this.windowMs);
  }

  /** Publishes what is buffered, then waits for every publish so far. */
  async close(): Promise<void> {
    this.flush();
    await this.chain;
    if (this.failure) throw this.failure;
  }

  /** Drops what is buffered (the generation was cancelled or abandoned) and waits for in-flight publishes. */
  async discard(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pendingKind = null;
    this.pendingText = '';
    await this.chain;
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pendingKind === null || !this.pendingText) return;
    const kind = this.pendingKind;
    const text = this.pendingText;
    this.pendingKind = null;
    this.pendingText = '';
    this.chain = this.chain.then(async () => {
      if (this.failure) return;
      try {
        await this.publish(kind, text);
      } catch (err) {
        this.failure = err instanceof Error ? err : new Error(String(err));
      }
    });
  }
}
