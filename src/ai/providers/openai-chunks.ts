import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { Usage } from '../../event-bus/envelopes';
import { GenerationChunk } from './ai-provider';

/**
 * Reasoning is not part of OpenAI's own chunk type: the servers that stream it put it beside
 * `content`. vLLM (before 0.10) and llama.cpp's llama-server say `reasoning_content`, newer vLLM
 * (and OpenRouter) `reasoning`; LM Studio uses either depending on its settings.
 */
type ReasoningDelta = ChatCompletionChunk.Choice.Delta & { reasoning?: unknown; reasoning_content?: unknown };

export interface MappedOpenAiChunk {
  /** Thinking and answer text of this chunk, in that order. */
  parts: GenerationChunk[];
  /** Token counts, on the last chunk when the request asked for `stream_options.include_usage`. */
  usage: Usage | null;
  /** The choice ended (`finish_reason`): the answer is complete even if no usage follows. */
  finished: boolean;
}

/** Maps one streamed /v1/chat/completions chunk; only the first choice is read (the app asks for one). */
export function mapOpenAiChunk(chunk: ChatCompletionChunk): MappedOpenAiChunk {
  const parts: GenerationChunk[] = [];
  const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : undefined;
  const delta = choice?.delta as ReasoningDelta | null | undefined;
  // A server in transition may send both spellings with the same text: one of them, never both.
  const thinking = nonEmpty(delta?.reasoning) ?? nonEmpty(delta?.reasoning_content);
  if (thinking !== null) parts.push({ kind: 'thinking', text: thinking });
  const content = nonEmpty(delta?.content);
  if (content !== null) parts.push({ kind: 'content', text: content });
  return {
    parts,
    usage: chunk.usage
      ? { promptTokens: toCount(chunk.usage.prompt_tokens), completionTokens: toCount(chunk.usage.completion_tokens) }
      : null,
    finished: typeof choice?.finish_reason === 'string',
  };
}

function nonEmpty(value: unknown): string | null {
  return typeof value === 'string' && value.length > 0 ? value : null;
}

function toCount(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.floor(value) : 0;
}
