import { AppConfig } from '../config/app-config';
import { validateEnvironment } from '../config/environment';
import { countTokens, MESSAGE_FRAME_TOKENS, PROMPT_FRAME_TOKENS } from '../history/token-count';
import { ContextBudget } from './context-budget';

/**
 * The tokens a conversation may take (docs/design.md, "Context window"):
 * (OLLAMA_NUM_CTX − CONTEXT_RESERVE_TOKENS) / correction − the prompt's fixed part, the correction
 * learnt from the prompt sizes the model reports.
 */
function budget(env: Record<string, string> = {}): ContextBudget {
  // a blank system prompt is none: the fixed part is the prompt frame alone (120 tokens)
  return new ContextBudget(
    new AppConfig(validateEnvironment({ OLLAMA_NUM_CTX: '8192', CONTEXT_RESERVE_TOKENS: '2048', SYSTEM_PROMPT: ' ', ...env })),
  );
}

/** 8192 − 2048 */
const ROOM = 6144;
const FIXED = PROMPT_FRAME_TOKENS;

describe('ContextBudget', () => {
  it('is the window less the reserve and the fixed prompt, at first', () => {
    expect(FIXED).toBe(120);
    const fresh = budget();
    expect(fresh.factor).toBe(1);
    expect(fresh.conversationTokens).toBe(ROOM - FIXED);
  });

  it('counts the system prompt, with its frame, in the fixed part', () => {
    const prompt = 'You answer in haiku, and only in haiku, whatever the question.';
    expect(budget({ SYSTEM_PROMPT: prompt }).conversationTokens).toBe(ROOM - FIXED - countTokens(prompt) - MESSAGE_FRAME_TOKENS);
    expect(countTokens(prompt)).toBeGreaterThan(5);
  });

  it('is never below zero, even when the fixed prompt alone exceeds the room', () => {
    const small = budget({ OLLAMA_NUM_CTX: '512', CONTEXT_RESERVE_TOKENS: '200', SYSTEM_PROMPT: 'word '.repeat(400) });
    expect(small.conversationTokens).toBe(0);
  });

  it('raises the correction to a higher ratio of reported to estimated tokens, and shrinks the budget by it', () => {
    const learning = budget();
    // estimated: 880 of conversation + 120 fixed = 1000; the model counted 1200
    learning.observe(880, 1200);
    expect(learning.factor).toBeCloseTo(1.2, 10);
    expect(learning.conversationTokens).toBe(Math.floor(ROOM / 1.2) - FIXED);
    learning.observe(880, 1300);
    expect(learning.factor).toBeCloseTo(1.3, 10);
  });

  it('caps the correction at 1.5', () => {
    const learning = budget();
    learning.observe(880, 5000);
    expect(learning.factor).toBe(1.5);
    expect(learning.conversationTokens).toBe(ROOM / 1.5 - FIXED);
  });

  it('lowers the correction slowly after lower reports, never below 1', () => {
    const learning = budget();
    learning.observe(880, 1200);
    // a report a little lower than the correction: one small step down, not down to it
    learning.observe(880, 1100);
    expect(learning.factor).toBeCloseTo(1.19, 10);
    learning.observe(880, 500);
    expect(learning.factor).toBeCloseTo(1.18, 10);
    for (let i = 0; i < 50; i++) learning.observe(880, 500);
    expect(learning.factor).toBe(1);
    expect(learning.conversationTokens).toBe(ROOM - FIXED);
  });

  it('ignores a report of zero tokens (nothing evaluated, or no count)', () => {
    const learning = budget();
    learning.observe(880, 0);
    expect(learning.factor).toBe(1);
    learning.observe(880, 1200);
    learning.observe(880, 0);
    expect(learning.factor).toBeCloseTo(1.2, 10);
  });
});
