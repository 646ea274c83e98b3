import { BeforeApplicationShutdown, Inject, Injectable, Logger } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { MessageRef, MessageStore } from '../history/message-store';
import { countTokens, fixedPromptTokens, MESSAGE_FRAME_TOKENS } from '../history/token-count';
import { about } from '../observability/log-fields';
import { AI_PROVIDER, AiProvider } from './providers/ai-provider';

export interface TitleJob {
  ref: MessageRef;
  question: string;
  answer: string;
  model?: string;
}

const TITLE_PROMPT =
  'You name conversations. Reply with a title of at most six words for the conversation the user shows you, ' +
  'in its language. Reply with the title only: no quotes, no final period.';
/** What the model sees of the first turn: enough to name it, little to read. */
const EXCERPT_CHARS = 1500;
const MAX_TITLE_CHARS = 80;
/** gpt-oss reasons before it answers; these tokens cover a low-effort reasoning and a short title. */
const TITLE_MAX_TOKENS = 300;
const TITLE_TIMEOUT_MS = 60_000;
/** Titles waiting while answers run; the oldest is dropped beyond this (its chat keeps its first-message title). */
const MAX_WAITING = 32;
/** A title interrupted by answers this often is given up. */
const MAX_TRIES = 3;

/**
 * Short conversation titles written by the model after a chat's first answer: a low-priority job
 * that runs only while this worker runs no generation and is aborted (and queued again) when one
 * starts, so titles never delay answers (docs/design.md, "Titles"). Off with TITLES=false and with
 * the mock provider. A title lost with its worker leaves the first-message title the page shows.
 */
@Injectable()
export class TitleWriter implements BeforeApplicationShutdown {
  private readonly logger = new Logger(TitleWriter.name);
  private readonly waiting: (TitleJob & { tries: number })[] = [];
  private generations = 0;
  private current: AbortController | null = null;
  private stopped = false;

  /** Each excerpt's share of the window: the title prompt must fit it like any other (docs/design.md). */
  private readonly excerptTokens: number;

  constructor(
    @Inject(AI_PROVIDER) private readonly provider: AiProvider,
    private readonly store: MessageStore,
    private readonly config: AppConfig,
  ) {
    const room = config.context.windowTokens - TITLE_MAX_TOKENS - fixedPromptTokens(TITLE_PROMPT) - 2 * MESSAGE_FRAME_TOKENS - 16;
    this.excerptTokens = Math.max(16, Math.floor(room / 2));
  }

  /** The runner calls this before every generation: a running title gives way. */
  generationStarted(): void {
    this.generations++;
    this.current?.abort();
  }

  generationEnded(): void {
    this.generations--;
    this.next();
  }

  request(job: TitleJob): void {
    if (!this.config.ai.titles || this.stopped) return;
    if (this.waiting.length >= MAX_WAITING) this.waiting.shift();
    this.waiting.push({ ...job, tries: 0 });
    this.next();
  }

  beforeApplicationShutdown(): void {
    this.stopped = true;
    this.waiting.length = 0;
    this.current?.abort();
  }

  private next(): void {
    if (this.current || this.generations > 0 || this.stopped) return;
    const job = this.waiting.shift();
    if (!job) return;
    const controller = new AbortController();
    this.current = controller;
    void this.write(job, controller.signal)
      .catch((err: unknown) => {
        this.logger.warn(about(job.ref, `title not written: ${(err as Error).message}`));
        return 'failed' as const;
      })
      .then((outcome) => {
        this.current = null;
        // it gave way to an answer before it was written: again once the worker is idle
        if (outcome === 'interrupted' && !this.stopped) {
          if (++job.tries < MAX_TRIES) this.waiting.unshift(job);
          else this.logger.debug(about(job.ref, `title given up: interrupted by answers ${MAX_TRIES} times`));
        }
        this.next();
      });
  }

  private async write(job: TitleJob, interrupted: AbortSignal): Promise<'written' | 'interrupted' | 'failed'> {
    const signal = AbortSignal.any([interrupted, AbortSignal.timeout(TITLE_TIMEOUT_MS)]);
    const request = {
      messages: [
        { role: 'system' as const, content: TITLE_PROMPT },
        {
          role: 'user' as const,
          content: `User: ${excerpt(job.question, this.excerptTokens)}\n\nAssistant: ${excerpt(job.answer, this.excerptTokens)}`,
        },
      ],
      think: 'low' as const,
      maxTokens: TITLE_MAX_TOKENS,
      ...(job.model ? { model: job.model } : {}),
    };
    let text = '';
    for await (const chunk of this.provider.stream(request, signal)) {
      if (chunk.kind === 'content') text += chunk.text;
      if (text.length > 4 * MAX_TITLE_CHARS) break;
    }
    if (interrupted.aborted) return 'interrupted';
    const title = signal.aborted ? '' : cleanTitle(text);
    if (!title) {
      this.logger.warn(about(job.ref, signal.aborted ? `no title within ${TITLE_TIMEOUT_MS} ms` : 'the model answered no title'));
      return 'failed';
    }
    const written = await this.store.setTitle(job.ref, title);
    this.logger.debug(about(job.ref, `title ${written}: ${title}`));
    return 'written';
  }
}

/** The model's reply as a title: its first line, without Markdown, quotes or a final period, at most MAX_TITLE_CHARS. */
export function cleanTitle(reply: string): string {
  const line =
    reply
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l.length > 0) ?? '';
  let title = line
    .replace(/^#+\s*/, '')
    .replace(/[*`]/g, '')
    .replace(/^title:\s*/i, '')
    .replace(/\s+/g, ' ')
    .trim();
  // quotes and a final period in either order: "Title." or "Title".
  for (let before = ''; before !== title;) {
    before = title;
    title = title
      .replace(/^["'“”‘’«»]+|["'“”‘’«»]+$/g, '')
      .replace(/[.。]+$/, '')
      .trim();
  }
  if (title.length > MAX_TITLE_CHARS) title = `${title.slice(0, MAX_TITLE_CHARS - 1).trimEnd()}…`;
  return title;
}

/** The start of a text, at most EXCERPT_CHARS characters and `maxTokens` tokens. */
export function excerpt(text: string, maxTokens: number): string {
  let cut = text.slice(0, EXCERPT_CHARS);
  for (let tokens = countTokens(cut); tokens > maxTokens; tokens = countTokens(cut)) {
    cut = cut.slice(0, Math.floor((cut.length * maxTokens) / tokens) - 1);
  }
  return cut;
}
