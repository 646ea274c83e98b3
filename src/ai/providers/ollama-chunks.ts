import type { ChatResponse } from 'ollama';
import { GenerationChunk } from './ai-provider';

/**
 * Maps one streamed Ollama /api/chat chunk to provider chunks. gpt-oss sends reasoning in
 * `message.thinking` and the answer in `message.content`; a chunk may carry either or both, and the
 * last one (`done: true`) carries the token counts.
 */
export function mapOllamaChunk(chunk: Pick<ChatResponse, 'message' | 'done'> & Partial<ChatResponse>): GenerationChunk[] {
  const out: GenerationChunk[] = [];
  const thinking = chunk.message?.thinking;
  if (typeof thinking === 'string' && thinking.length > 0) out.push({ kind: 'thinking', text: thinking });
  const content = chunk.message?.content;
  if (typeof content === 'string' && content.length > 0) out.push({ kind: 'content', text: content });
  if (chunk.done) {
    out.push({
      kind: 'done',
      usage: {
        promptTokens: toCount(chunk.prompt_eval_count),
        completionTokens: toCount(chunk.eval_count),
      },
    });
  }
  return out;
}

function toCount(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.floor(value) : 0;
}
