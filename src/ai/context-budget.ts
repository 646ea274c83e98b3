import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { fixedPromptTokens } from '../history/token-count';

/** How far a correction may scale the estimate: beyond this the tokenizer is not the model's at all. */
const MAX_CORRECTION = 1.5;
/** A lower report (Ollama counts only the prompt tokens it evaluated; a cached prefix is not) lowers the correction this slowly. */
const CORRECTION_DECAY = 0.01;

/**
 * The tokens a conversation may take in the model's window (docs/design.md, "Context window"):
 * `OLLAMA_NUM_CTX` less the answer's reserve, the system prompt and the prompt's frame, scaled down
 * by a per-worker correction learnt from the prompt sizes the model reports, so that an estimate
 * that undercounts shrinks the budget instead of overflowing the window.
 */
@Injectable()
export class ContextBudget {
  private correction = 1;
  private readonly fixed: number;

  constructor(private readonly config: AppConfig) {
    this.fixed = fixedPromptTokens(config.ai.systemPrompt);
  }

  /** Budget for the new message and its earlier turns, frames included, in estimated tokens. */
  get conversationTokens(): number {
    const { windowTokens, reserveTokens } = this.config.context;
    return Math.max(0, Math.floor((windowTokens - reserveTokens) / this.correction) - this.fixed);
  }

  get factor(): number {
    return this.correction;
  }

  /** The model's own count of a prompt whose conversation was estimated at `conversationTokens`. */
  observe(conversationTokens: number, reportedPromptTokens: number): void {
    const estimated = conversationTokens + this.fixed;
    if (estimated <= 0 || reportedPromptTokens <= 0) return;
    const ratio = reportedPromptTokens / estimated;
    this.correction = ratio > this.correction ? Math.min(MAX_CORRECTION, ratio) : Math.max(1, this.correction - CORRECTION_DECAY);
  }
}
