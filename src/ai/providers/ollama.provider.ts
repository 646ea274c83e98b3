import { Logger } from '@nestjs/common';
import { Ollama } from 'ollama';
import { AiProvider, GenerationChunk, GenerationRequest, ProviderHealth } from './ai-provider';
import { mapOllamaChunk } from './ollama-chunks';
import { NodeHttpFetch } from './node-http-fetch';
import { classifyOllamaError } from './ollama-errors';

/** gpt-oss (or any chat model) served by Ollama, through the official `ollama` client. */
export class OllamaProvider implements AiProvider {
  readonly name = 'ollama';
  private readonly logger = new Logger(OllamaProvider.name);

  /** The host as shown to people: without any user:password of the URL. */
  private readonly shownHost: string;
  private readonly transport = new NodeHttpFetch();

  constructor(
    private readonly host: string,
    private readonly model: string,
    /** OLLAMA_NUM_CTX: Ollama's own default (2048 to 4096 by version) would cut long conversations silently. */
    private readonly numCtx: number,
  ) {
    const url = new URL(host);
    url.username = '';
    url.password = '';
    this.shownHost = url.origin + url.pathname.replace(/\/+$/, '');
  }

  async *stream(request: GenerationRequest, signal: AbortSignal): AsyncIterable<GenerationChunk> {
    // One (cheap) client per generation, whose requests carry the generation's signal: the
    // client's own abort() only reaches a stream once its headers arrived, and Ollama sends none
    // while the model loads or the request is queued; a timeout or cancel must end it then too.
    const client = new Ollama({ host: this.host, fetch: this.transport.fetchWith(signal) });
    const model = request.model ?? this.model;
    const ctx = { host: this.shownHost, model, receivedAny: false };
    const onAbort = () => client.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal.aborted) return;
      const response = await client.chat({
        model,
        messages: request.messages,
        stream: true,
        options: { num_ctx: this.numCtx, ...(request.maxTokens ? { num_predict: request.maxTokens } : {}) },
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

  async listModels(): Promise<string[]> {
    const client = new Ollama({ host: this.host, fetch: this.transport.fetchWith(AbortSignal.timeout(2000)) });
    const { models } = await client.list();
    return models.map((m) => m.name);
  }

  async health(): Promise<ProviderHealth> {
    // The client's abort() only reaches streamed requests, so the probe's requests carry their own timeout.
    const client = new Ollama({ host: this.host, fetch: this.transport.fetchWith(AbortSignal.timeout(2000)) });
    const details = { host: this.shownHost, model: this.model };
    try {
      const { models } = await client.list();
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
        message: 'Cannot reach Ollama: start it with `ollama serve`, or check OLLAMA_HOST.',
        details: { ...details, reachable: false, modelPresent: false },
      };
    }
  }
}
