/**
 * Typed, versioned envelopes for everything that crosses a process boundary through Redis.
 * A stream entry is `v <version> type <name> data <json>`; `decode*` checks every field before the
 * payload is trusted, so a malformed entry becomes a `DecodeFailure`, never an exception in a loop.
 */
import { isValidId } from './stream-names';

export const ENVELOPE_VERSION = '1';

export type ThinkLevel = 'low' | 'medium' | 'high';
export const THINK_LEVELS: readonly ThinkLevel[] = ['low', 'medium', 'high'];

// ---------- commands (chat:incoming) ----------

/** "Answer the head message of this session": its text and options are in the session's hash. */
export interface GenerateCommand {
  sessionId: string;
  messageId: string;
}

export interface CommandMap {
  'chat.generate': GenerateCommand;
}
export type CommandType = keyof CommandMap;
export type Command = { [K in CommandType]: { type: K; payload: CommandMap[K] } }[CommandType];

// ---------- signals (pub/sub CANCEL_CHANNEL) ----------

export interface CancelSignal {
  sessionId: string;
  messageId: string;
}

export function encodeCancelSignal(signal: CancelSignal): string {
  return JSON.stringify({ v: ENVELOPE_VERSION, sessionId: signal.sessionId, messageId: signal.messageId });
}

export function decodeCancelSignal(raw: string): Decoded<CancelSignal> {
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  if (typeof data !== 'object' || data === null) return { ok: false, reason: 'not an object' };
  const { v, sessionId, messageId } = data as Record<string, unknown>;
  if (v !== ENVELOPE_VERSION) return { ok: false, reason: `unsupported version ${JSON.stringify(v ?? null)}` };
  if (!isValidId(sessionId) || !isValidId(messageId)) return { ok: false, reason: 'sessionId and messageId must be ids' };
  return { ok: true, value: { sessionId, messageId } };
}

// ---------- events (chat:outgoing) ----------

interface MessageRef {
  sessionId: string;
  messageId: string;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export interface FailureReason {
  /** Stable, machine-readable. */
  code: string;
  /** For people: what happened and what to do. */
  message: string;
}

export interface ChatEventMap {
  /** `replaces`: regenerate/edit: that earlier message (question and answer) is gone from the conversation. */
  'chat.user_message': MessageRef & { content: string; createdAt: string; model?: string; replaces?: string };
  /** `contextMessages`: earlier messages sent to the model; `contextOmitted`: older ones left out to fit its window. */
  'chat.started': MessageRef & { attempt: number; contextMessages?: number; contextOmitted?: boolean };
  'chat.thinking': MessageRef & { delta: string };
  'chat.delta': MessageRef & { delta: string };
  'chat.completed': MessageRef & { content: string; thinking?: string; usage: Usage; model?: string };
  'chat.failed': MessageRef & { error: FailureReason };
  'chat.cancelled': MessageRef;
  /** While nothing streams: why (not logged for resume; at most every few seconds). */
  'chat.status': MessageRef & { state: StatusState; detail: string; ahead?: number };
  /** A short title for the conversation, written by the model after its first answer (messageId: that answer's). */
  'chat.title': MessageRef & { title: string };
}
export type StatusState = 'queued' | 'waiting_for_model' | 'retrying';
export const STATUS_STATES: readonly StatusState[] = ['queued', 'waiting_for_model', 'retrying'];
export type ChatEventType = keyof ChatEventMap;
export type ChatEvent = { [K in ChatEventType]: { type: K; payload: ChatEventMap[K] } }[ChatEventType];
/** An event as read back from the stream: the entry id is its eventId. */
export type DeliveredEvent = ChatEvent & { eventId: string };

export const CHAT_EVENT_TYPES: readonly ChatEventType[] = [
  'chat.user_message',
  'chat.started',
  'chat.thinking',
  'chat.delta',
  'chat.completed',
  'chat.failed',
  'chat.cancelled',
  'chat.status',
  'chat.title',
];

/** The events that end a message: exactly one of them per accepted message. */
export const FINAL_EVENT_TYPES: ReadonlySet<ChatEventType> = new Set<ChatEventType>(['chat.completed', 'chat.failed', 'chat.cancelled']);

// ---------- encoding ----------

export function encodeEnvelope(type: string, payload: object): string[] {
  return ['v', ENVELOPE_VERSION, 'type', type, 'data', JSON.stringify(payload)];
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Reads the flat `[field, value, ...]` array Redis returns for a stream entry. */
function readFields(fields: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i], fields[i + 1]);
  return map;
}

function parseEnvelope(fields: readonly string[]): Decoded<{ type: string; data: Record<string, unknown> }> {
  const map = readFields(fields);
  const version = map.get('v');
  if (version !== ENVELOPE_VERSION) return { ok: false, reason: `unsupported envelope version ${JSON.stringify(version ?? null)}` };
  const type = map.get('type');
  if (!type) return { ok: false, reason: 'missing type' };
  const raw = map.get('data');
  if (raw === undefined) return { ok: false, reason: 'missing data' };
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch {
    return { ok: false, reason: 'data is not JSON' };
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return { ok: false, reason: 'data is not an object' };
  return { ok: true, value: { type, data: data as Record<string, unknown> } };
}

// Small field checkers: each returns an error text or null.
type Check = (v: unknown) => string | null;
const str: Check = (v) => (typeof v === 'string' ? null : 'must be a string');
const id: Check = (v) => (isValidId(v) ? null : 'must be an id');
const bool: Check = (v) => (typeof v === 'boolean' ? null : 'must be a boolean');
const posInt: Check = (v) => (Number.isInteger(v) && (v as number) >= 0 ? null : 'must be a non-negative integer');
const optional =
  (c: Check): Check =>
  (v) =>
    v === undefined ? null : c(v);
const oneOf =
  (values: readonly string[]): Check =>
  (v) =>
    typeof v === 'string' && values.includes(v) ? null : `must be one of ${values.join(', ')}`;
const object =
  (shape: Record<string, Check>): Check =>
  (v) => {
    if (typeof v !== 'object' || v === null) return 'must be an object';
    return checkShape(v as Record<string, unknown>, shape);
  };

function checkShape(data: Record<string, unknown>, shape: Record<string, Check>): string | null {
  for (const [field, check] of Object.entries(shape)) {
    const problem = check(data[field]);
    if (problem) return `${field} ${problem}`;
  }
  return null;
}

const ref = { sessionId: id, messageId: id };

const COMMAND_SHAPES: { [K in CommandType]: Record<string, Check> } = {
  'chat.generate': ref,
};

const EVENT_SHAPES: { [K in ChatEventType]: Record<string, Check> } = {
  'chat.user_message': { ...ref, content: str, createdAt: str, model: optional(str), replaces: optional(id) },
  'chat.started': { ...ref, attempt: posInt, contextMessages: optional(posInt), contextOmitted: optional(bool) },
  'chat.thinking': { ...ref, delta: str },
  'chat.delta': { ...ref, delta: str },
  'chat.completed': {
    ...ref,
    content: str,
    thinking: optional(str),
    usage: object({ promptTokens: posInt, completionTokens: posInt }),
    model: optional(str),
  },
  'chat.failed': { ...ref, error: object({ code: str, message: str }) },
  'chat.cancelled': ref,
  'chat.status': { ...ref, state: oneOf(STATUS_STATES), detail: str, ahead: optional(posInt) },
  'chat.title': { ...ref, title: str },
};

function isKey<T extends object>(map: T, key: string): key is Extract<keyof T, string> {
  return Object.prototype.hasOwnProperty.call(map, key);
}

export function encodeCommand(command: Command): string[] {
  return encodeEnvelope(command.type, command.payload);
}

export function decodeCommand(fields: readonly string[]): Decoded<Command> {
  const parsed = parseEnvelope(fields);
  if (!parsed.ok) return parsed;
  const { type, data } = parsed.value;
  if (!isKey(COMMAND_SHAPES, type)) return { ok: false, reason: `unknown command type ${JSON.stringify(type)}` };
  const problem = checkShape(data, COMMAND_SHAPES[type]);
  if (problem) return { ok: false, reason: `${type}: ${problem}` };
  // The shape check above is exactly CommandMap[type].
  return { ok: true, value: { type, payload: data } as unknown as Command };
}

export function encodeEvent(event: ChatEvent): string[] {
  return encodeEnvelope(event.type, event.payload);
}

/** A chat:outgoing (or session log) entry: the event, with its entry id as the eventId. */
export function decodeOutgoing(entryId: string, fields: readonly string[]): Decoded<DeliveredEvent> {
  const decoded = decodeEvent(fields);
  if (!decoded.ok) return decoded;
  return { ok: true, value: { ...decoded.value, eventId: entryId } };
}

export function decodeEvent(fields: readonly string[]): Decoded<ChatEvent> {
  const parsed = parseEnvelope(fields);
  if (!parsed.ok) return parsed;
  const { type, data } = parsed.value;
  if (!isKey(EVENT_SHAPES, type)) return { ok: false, reason: `unknown event type ${JSON.stringify(type)}` };
  const problem = checkShape(data, EVENT_SHAPES[type]);
  if (problem) return { ok: false, reason: `${type}: ${problem}` };
  return { ok: true, value: { type, payload: data } as unknown as ChatEvent };
}
