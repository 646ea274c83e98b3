/** A minimal server-sent-events reader over fetch, recording frames as they arrive. */
export interface SseFrame {
  id: string | null;
  event: string;
  data: Record<string, unknown>;
}

export class SseClient {
  readonly frames: SseFrame[] = [];
  private readonly controller = new AbortController();
  status = 0;
  private done: Promise<void> = Promise.resolve();

  async open(url: string, headers: Record<string, string> = {}): Promise<void> {
    const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: this.controller.signal });
    this.status = res.status;
    if (!res.ok || !res.body) return;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    this.done = (async () => {
      let buffer = '';
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut: number;
          while ((cut = buffer.indexOf('\n\n')) >= 0) {
            this.parse(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
          }
        }
      } catch {
        // aborted by close()
      }
    })();
  }

  close(): Promise<void> {
    this.controller.abort();
    return this.done;
  }

  async waitFor(predicate: (f: SseFrame) => boolean, timeoutMs = 15_000): Promise<SseFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.frames.find(predicate);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`SSE: timed out; frames: ${JSON.stringify(this.frames.map((f) => f.event))}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private parse(block: string): void {
    let id: string | null = null;
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') id = value;
      else if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length === 0) return;
    this.frames.push({ id, event, data: JSON.parse(data.join('\n')) as Record<string, unknown> });
  }
}
