/**
 * A log entry about one message: the text for people plus `sessionId` and `messageId` as fields, so
 * every line about a message can be found by them (pino prints the object as JSON fields).
 */
export function about(
  ref: { sessionId: string; messageId: string },
  msg: string,
  extra: Record<string, string | number | boolean> = {},
): Record<string, string | number | boolean> {
  return { msg, sessionId: ref.sessionId, messageId: ref.messageId, ...extra };
}
