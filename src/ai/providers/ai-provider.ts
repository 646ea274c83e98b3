import { ThinkLevel, Usage } from '../../event-bus/envelopes';
import { ContextMessage } from '../../history/stored-message';

export interface GenerationRequest {
  /** System prompt first, then earlier turns, then the user's message. */
  messages: { role: 'system' | 'user' | 'assistant'; content: string }[];
  think?: ThinkLevel;
  /** The model to ask (absent: the provider's configured default). */
  model?: string;
  /** At most this many tokens of answer (short jobs such as titles). */
  maxTokens?: number;
}

/** What a provider yields while generating; providers never see Redis or sockets. */
export type GenerationChunk = { kind: 'thinking'; text: string } | { kind: 'content'; text: string } | { kind: 'done'; usage: Usage };

export interface ProviderHealth {
  ok: boolean;
  /** What is wrong and what to do, when not ok. */
  message: string;
  details: Record<string, string | boolean>;
}

export interface AiProvider {
  readonly name: string;
  /** Streams one generation. Aborting `signal` must stop the upstream request at once. */
  stream(request: GenerationRequest, signal: AbortSignal): AsyncIterable<GenerationChunk>;
  health(): Promise<ProviderHealth>;
  /** The models the provider can answer with (Ollama /api/tags, OpenAI /v1/models). Throws when it cannot be reached. */
  listModels(): Promise<string[]>;
}

/** Injection token for the configured provider. */
export const AI_PROVIDER = Symbol('AI_PROVIDER');

export function buildMessages(systemPrompt: string, context: ContextMessage[], content: string): GenerationRequest['messages'] {
  const messages: GenerationRequest['messages'] = [];
  if (systemPrompt.trim()) messages.push({ role: 'system', content: systemPrompt });
  messages.push(...context, { role: 'user', content });
  return messages;
}
