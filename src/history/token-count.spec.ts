import { countTokens as exactCount } from 'gpt-tokenizer/encoding/o200k_base';
import { countTokens, fixedPromptTokens, MESSAGE_FRAME_TOKENS, PROMPT_FRAME_TOKENS, tokenUpperBound } from './token-count';

describe('token counts (o200k, gpt-oss)', () => {
  it.each([
    ['prose', 'Explain Redis Streams in two sentences, with an example of XADD and XREADGROUP. '.repeat(20)],
    ['code', 'function foo(bar) { return bar.map((x) => x * 2).filter(Boolean); }\n'.repeat(20)],
    ['mixed scripts', 'Grüße aus München — 東京から、こんにちは! Привет 👋 '.repeat(10)],
  ])('counts ordinary %s exactly as the tokenizer does', (_name, text) => {
    expect(countTokens(text)).toBe(exactCount(text));
  });

  it('counts runs without spaces in pieces, within a token per cut of the whole', () => {
    for (const run of ['\u00e9'.repeat(2000), '\u{1F600}'.repeat(700), '漢字'.repeat(700), 'a'.repeat(2000), 'x1/'.repeat(600)]) {
      const pieces = countTokens(`before ${run} after`);
      const whole = exactCount(`before ${run} after`);
      const cuts = Math.ceil(run.length / 32);
      expect(Math.abs(pieces - whole)).toBeLessThanOrEqual(cuts);
    }
  });

  it('is zero for empty text and bounded above by the UTF-8 size', () => {
    expect(countTokens('')).toBe(0);
    for (const text of ['hello world', 'Grüße 東京 👋', 'x'.repeat(100)])
      expect(countTokens(text)).toBeLessThanOrEqual(tokenUpperBound(text));
  });

  it('charges the prompt frame and the system prompt as a message; no system prompt costs only the frame', () => {
    expect(fixedPromptTokens('')).toBe(PROMPT_FRAME_TOKENS);
    expect(fixedPromptTokens('You are a test assistant.')).toBe(
      PROMPT_FRAME_TOKENS + exactCount('You are a test assistant.') + MESSAGE_FRAME_TOKENS,
    );
  });
});
