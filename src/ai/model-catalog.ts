import { BadRequestException, Inject, Injectable, Logger } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { RetryLaterException } from '../limits/send-limits.service';
import { AI_PROVIDER, AiProvider } from './providers/ai-provider';

export interface ModelList {
  /** The model a send without `model` gets. */
  default: string;
  /** Models a send may name, the default first. */
  models: string[];
  /** False when the provider could not be asked: the list is then ALLOWED_MODELS (or the default alone). */
  reachable: boolean;
}

/** The provider is asked at most this often; a failed ask is repeated sooner. */
const LIST_TTL_MS = 30_000;
const FAILED_LIST_TTL_MS = 3_000;
const RETRY_SECONDS = 5;

/**
 * The models people may pick (GET /models, the `model` of a send): what the provider has (Ollama
 * /api/tags, OpenAI /v1/models), filtered by ALLOWED_MODELS when set; the default model always.
 */
@Injectable()
export class ModelCatalog {
  private readonly logger = new Logger(ModelCatalog.name);
  private cached: { until: number; list: ModelList } | null = null;
  private pending: Promise<ModelList> | null = null;

  constructor(
    @Inject(AI_PROVIDER) private readonly provider: AiProvider,
    private readonly config: AppConfig,
  ) {}

  list(): Promise<ModelList> {
    if (this.cached && this.cached.until > Date.now()) return Promise.resolve(this.cached.list);
    this.pending ??= this.fetch().finally(() => (this.pending = null));
    return this.pending;
  }

  /** Refuses a model people may not pick: 400, or 503 while the provider cannot say. */
  async check(model: string): Promise<void> {
    const { model: fallback, allowedModels } = this.config.ai;
    if (model === fallback) return;
    if (allowedModels && !allowedModels.includes(model)) {
      throw new BadRequestException(`model "${model}" is not offered here (ALLOWED_MODELS); GET /models lists those that are`);
    }
    const { models, reachable } = await this.list();
    if (models.includes(model)) return;
    if (!reachable) {
      throw new RetryLaterException(
        503,
        `the model list cannot be read right now, so "${model}" cannot be checked; try again shortly`,
        RETRY_SECONDS,
      );
    }
    throw new BadRequestException(`model "${model}" is not available; GET /models lists those that are`);
  }

  private async fetch(): Promise<ModelList> {
    const { model: fallback, allowedModels } = this.config.ai;
    try {
      const served = await this.provider.listModels();
      const offered = allowedModels ? served.filter((m) => allowedModels.includes(m)) : served;
      const list = { default: fallback, models: [fallback, ...offered.filter((m) => m !== fallback)], reachable: true };
      this.cached = { until: Date.now() + LIST_TTL_MS, list };
      return list;
    } catch (err) {
      this.logger.warn(`cannot list the provider's models: ${(err as Error).message}`);
      const known = allowedModels ?? [];
      const list = { default: fallback, models: [fallback, ...known.filter((m) => m !== fallback)], reachable: false };
      this.cached = { until: Date.now() + FAILED_LIST_TTL_MS, list };
      return list;
    }
  }
}
