/**
 * Token counts of gpt-oss prompts, with gpt-oss's own tokenizer (o200k, `gpt-tokenizer`). A count is
 * made once, where a text is made (the API counts a user message at send, the worker an answer it
 * completed) and stored beside the text, so fitting a conversation into the window never re-reads
 * or re-counts old turns (docs/design.md, "Context window").
 */
import { countTokens as countO200k } from 'gpt-tokenizer/encoding/o200k_base';

/**
 * gpt-oss's chat format (harmony) frames a message with four tokens (`<|start|>user<|message|>…<|end|>`)
 * and an earlier answer with six (`<|start|>assistant<|channel|>final<|message|>…<|end|>`): every
 * message is charged six.
 */
export const MESSAGE_FRAME_TOKENS = 6;
/**
 * The fixed part of a harmony prompt: the system header Ollama writes (model identity, knowledge
 * cutoff, date, reasoning level, valid channels) and the assistant's opening. Generous on purpose:
 * an undercount is what would overflow the window.
 */
export const PROMPT_FRAME_TOKENS = 120;

/**
 * Byte-pair encoding is quadratic in the length of one pre-token, and a run without spaces is one
 * pre-token: 16,000 CJK characters or emoji took 2 s of the API's event loop (bench/NOTES.md). Runs
 * longer than this are counted in pieces: within a token per cut of the exact count (far inside
 * PROMPT_FRAME_TOKENS's margin), and linear in the length.
 */
const LONGEST_RUN = 32;
const LONG_RUN = new RegExp(`\\S{${LONGEST_RUN + 1},}`, 'g');

export function countTokens(text: string): number {
  if (text.length === 0) return 0;
  let total = 0;
  let from = 0;
  for (const run of text.matchAll(LONG_RUN)) {
    if (run.index > from) total += countO200k(text.slice(from, run.index));
    const word = run[0];
    for (let i = 0; i < word.length; i += LONGEST_RUN) total += countO200k(word.slice(i, i + LONGEST_RUN));
    from = run.index + word.length;
  }
  if (from < text.length) total += countO200k(text.slice(from));
  return total;
}

/**
 * An upper bound without tokenizing: every o200k token is at least one UTF-8 byte. Lets a short
 * message skip the tokenizer when even its byte count fits.
 */
export function tokenUpperBound(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/** What the prompt around the conversation costs: the frame and the system prompt as a message. */
export function fixedPromptTokens(systemPrompt: string): number {
  const system = systemPrompt.trim() ? countTokens(systemPrompt) + MESSAGE_FRAME_TOKENS : 0;
  return PROMPT_FRAME_TOKENS + system;
}
