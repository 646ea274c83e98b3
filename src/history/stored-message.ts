import { FailureReason, ThinkLevel, Usage } from '../event-bus/envelopes';

export type MessageStatus = 'queued' | 'streaming' | 'completed' | 'failed' | 'cancelled';
export const MESSAGE_STATUSES: readonly MessageStatus[] = ['queued', 'streaming', 'completed', 'failed', 'cancelled'];
export type FinalStatus = Extract<MessageStatus, 'completed' | 'failed' | 'cancelled'>;

/** What the user sent, as stored in `chat:{sid}:messages` field `<messageId>:user`. */
export interface StoredUserPart {
  content: string;
  createdAt: string;
  think?: ThinkLevel;
  /** The model asked for (absent: the default model). */
  model?: string;
}

/** The reply, stored in field `<messageId>:assistant` once a worker has started on it. */
export interface StoredAssistantPart {
  content: string;
  createdAt: string;
  thinking?: string;
  usage?: Usage;
  error?: FailureReason;
  /** The model that answered. */
  model?: string;
  /** While streaming: the eventId of the last event this partial content includes. */
  resumeFrom?: string;
}

/** One entry of GET /chat/:sessionId/history. */
export interface HistoryMessage {
  messageId: string;
  role: 'user' | 'assistant';
  content: string;
  status: MessageStatus;
  createdAt: string;
  thinking?: string;
  error?: FailureReason;
  /** User: the model asked for; assistant: the model that answered. */
  model?: string;
  /** A completed answer's token counts, as in chat.completed. */
  usage?: Usage;
  /** Older messages were left out of this answer's context to fit the model's window (as chat.started said). */
  contextOmitted?: boolean;
  /** While streaming: the eventId after which the events of this partial answer continue. */
  resumeFrom?: string;
}

/** A turn of context for the model. */
export interface ContextMessage {
  role: 'user' | 'assistant';
  content: string;
}

function parseObject(raw: string | null | undefined): Record<string, unknown> | null {
  if (!raw) return null;
  try {
    const value: unknown = JSON.parse(raw);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export function parseUserPart(raw: string | null | undefined): StoredUserPart | null {
  const o = parseObject(raw);
  if (!o || typeof o.content !== 'string' || typeof o.createdAt !== 'string') return null;
  const think = o.think === 'low' || o.think === 'medium' || o.think === 'high' ? o.think : undefined;
  const model = typeof o.model === 'string' && o.model ? o.model : undefined;
  return { content: o.content, createdAt: o.createdAt, ...(think ? { think } : {}), ...(model ? { model } : {}) };
}

export function parseAssistantPart(raw: string | null | undefined): StoredAssistantPart | null {
  const o = parseObject(raw);
  if (!o || typeof o.content !== 'string' || typeof o.createdAt !== 'string') return null;
  const part: StoredAssistantPart = { content: o.content, createdAt: o.createdAt };
  if (typeof o.thinking === 'string' && o.thinking) part.thinking = o.thinking;
  if (typeof o.model === 'string' && o.model) part.model = o.model;
  if (typeof o.resumeFrom === 'string' && /^\d+-\d+$/.test(o.resumeFrom)) part.resumeFrom = o.resumeFrom;
  const usage = o.usage as Record<string, unknown> | undefined;
  if (usage && isCount(usage.promptTokens) && isCount(usage.completionTokens)) {
    part.usage = { promptTokens: usage.promptTokens, completionTokens: usage.completionTokens };
  }
  const err = o.error as Record<string, unknown> | undefined;
  if (err && typeof err.code === 'string' && typeof err.message === 'string') part.error = { code: err.code, message: err.message };
  return part;
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

export function parseStatus(raw: string | null | undefined): MessageStatus {
  return MESSAGE_STATUSES.find((s) => s === raw) ?? 'queued';
}
