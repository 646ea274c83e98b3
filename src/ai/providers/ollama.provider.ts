import { Logger } from '@nestjs/common';
import { Ollama } from 'ollama';
import { AiProvider, GenerationChunk, GenerationRequest, ProviderHealth } from './ai-provider';
import { mapOllamaChunk } from './ollama-chunks';
import { classifyOllamaError } from './ollama-errors';

/** gpt-oss (or any chat model) served by Ollama, through the official `ollama` client. */
export class OllamaProvider implements AiProvider {
  readonly name = 'ollama';
  private readonly logger = new Logger(OllamaProvider.name);

  constructor(
    private readonly host: string,
    private readonly model: string,
  ) {}

  async *stream(request: GenerationRequest, signal: AbortSignal): AsyncIterable<GenerationChunk> {
    // One client per generation: the client's abort() cancels every request it started, so sharing
    // one would let a cancel in one chat kill the others.
    const client = new Ollama({ host: this.host });
    const ctx = { host: this.host, model: this.model, receivedAny: false };
    const onAbort = () => client.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal.aborted) return;
      const response = await client.chat({
        model: this.model,
        messages: request.messages,
        stream: true,
        ...(request.think ? { think: request.think } : {}),
      });
      for await (const chunk of response) {
        ctx.receivedAny = true;
        yield* mapOllamaChunk(chunk);
        if (chunk.done) return;
      }
    } catch (err) {
      if (signal.aborted) return; // the caller knows why it aborted
      throw classifyOllamaError(err, ctx);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  async health(): Promise<ProviderHealth> {
    const client = new Ollama({ host: this.host });
    const details = { host: this.host, model: this.model };
    try {
      const { models } = await withTimeout(client.list(), 2000);
      const present = models.some((m) => m.name === this.model || m.model === this.model || m.name === `${this.model}:latest`);
      if (!present) {
        return {
          ok: false,
          message: `Ollama is up but the model "${this.model}" is not pulled: run \`ollama pull ${this.model}\` (or \`npm run model:pull\`).`,
          details: { ...details, reachable: true, modelPresent: false },
        };
      }
      return { ok: true, message: 'ok', details: { ...details, reachable: true, modelPresent: true } };
    } catch (err) {
      this.logger.debug(`health check failed: ${(err as Error).message}`);
      return {
        ok: false,
        message: `Cannot reach Ollama at ${this.host}: start it with \`ollama serve\` or set OLLAMA_HOST.`,
        details: { ...details, reachable: false, modelPresent: false },
      };
    }
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
