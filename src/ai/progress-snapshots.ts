import { Logger } from '@nestjs/common';
import { ChatHistoryStore } from '../history/chat-history.store';
import { about } from '../observability/log-fields';

const logger = new Logger('ProgressSnapshots');

const EVERY_MS = 1000;

/**
 * Keeps the history's copy of an answer in progress close behind the stream (at most one write a
 * second), always paired with the eventId it reaches, so a reloaded page shows the partial answer
 * and resumes the events right after it.
 */
export class ProgressSnapshots {
  private content = '';
  private thinking = '';
  private lastEventId: string | null = null;
  private savedAt = 0;
  private readonly createdAt = new Date().toISOString();
  private first: Promise<void> = Promise.resolve();

  constructor(
    private readonly history: ChatHistoryStore,
    private readonly ref: { sessionId: string; messageId: string },
    private readonly startedEventId: Promise<string>,
  ) {}

  /**
   * Saves the empty answer of a new attempt, resuming right after its chat.started, as soon as that
   * event is written; the model request is already on its way. Later saves wait for it. A failed
   * snapshot only costs a reload its partial answer until the next one, so it does not fail the
   * answer (a Redis outage fails the delta publishes anyway; a failed chat.started fails the attempt).
   */
  begin(): void {
    this.first = this.startedEventId
      .then((eventId) => {
        this.lastEventId ??= eventId;
        return this.save();
      })
      .catch((err: unknown) => {
        this.savedAt = 0; // try again with the next delta
        logger.warn(about(this.ref, `progress snapshot not saved: ${(err as Error).message}`));
      });
  }

  /** Waits for the first save to be done (or to have failed). */
  settled(): Promise<void> {
    return this.first;
  }

  /**
   * Records a published delta; saves when the last save is old enough. A failed save is logged and
   * tried again a second later: like the first one, it does not fail the answer.
   */
  async published(kind: 'thinking' | 'content', text: string, eventId: string): Promise<void> {
    if (kind === 'thinking') this.thinking += text;
    else this.content += text;
    this.lastEventId = eventId;
    await this.settled();
    if (Date.now() - this.savedAt < EVERY_MS) return;
    await this.save().catch((err: unknown) => {
      logger.warn(about(this.ref, `progress snapshot not saved: ${(err as Error).message}`));
    });
  }

  private async save(): Promise<void> {
    if (this.lastEventId === null) return;
    this.savedAt = Date.now();
    await this.history.saveProgress(this.ref.sessionId, this.ref.messageId, {
      content: this.content,
      createdAt: this.createdAt,
      ...(this.thinking ? { thinking: this.thinking } : {}),
      resumeFrom: this.lastEventId,
    });
  }
}
