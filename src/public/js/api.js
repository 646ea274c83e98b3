/*
 * The HTTP calls the page makes. Each answers with parsed data; a response that means "this session
 * is gone" answers null (the caller decides what that means); anything else that went wrong throws
 * (network errors as they come, HTTP errors as HttpError with the server's message).
 */

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The statuses by which the server says it does not know this session or token (400: a malformed stored id). */
const GONE = new Set([400, 401, 403, 404]);

const bearer = (token) => ({ Authorization: 'Bearer ' + token });
const chatPath = (sessionId) => '/chat/' + encodeURIComponent(sessionId);

async function errorOf(res) {
  try {
    const body = await res.json();
    if (body && body.message) return new HttpError(res.status, String(body.message));
  } catch {
    /* not JSON */
  }
  return new HttpError(res.status, 'HTTP ' + res.status);
}

/** A new session: {sessionId, token, expiresAt}. */
export async function createSession() {
  const res = await fetch('/sessions', { method: 'POST' });
  if (res.status !== 201 && res.status !== 200) throw await errorOf(res);
  return res.json();
}

/** A fresh token for the session ({sessionId, token, expiresAt}), or null when this one is refused. */
export async function reissueToken(sessionId, token) {
  const res = await fetch('/sessions/' + encodeURIComponent(sessionId) + '/token', {
    method: 'POST',
    headers: bearer(token),
    // A socket's connection waits for this: a server that does not answer must not hold it.
    signal: AbortSignal.timeout(10000),
  });
  if (GONE.has(res.status)) return null;
  if (res.status !== 201) throw await errorOf(res);
  const s = await res.json();
  return s && s.sessionId === sessionId && typeof s.token === 'string' ? s : null;
}

/** {sessionId, messages, lastEventId, title?}, or null when the server no longer knows the session. */
export async function fetchHistory(sessionId, token) {
  const res = await fetch(chatPath(sessionId) + '/history', { headers: bearer(token), cache: 'no-store' });
  if (GONE.has(res.status)) return null;
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

/** Deletes the conversation on the server (history, events; its tokens stop working). A session already gone counts as deleted. */
export async function deleteConversation(sessionId, token) {
  const res = await fetch(chatPath(sessionId), { method: 'DELETE', headers: bearer(token) });
  if (res.ok || GONE.has(res.status)) return;
  throw await errorOf(res);
}

/** {default, models: string[]}, or null when the server has no model list (an older server). */
export async function fetchModels() {
  const res = await fetch('/models', { cache: 'no-store' });
  if (!res.ok) return null;
  const body = await res.json();
  if (!body || !Array.isArray(body.models)) return null;
  const models = body.models.filter((m) => typeof m === 'string' && m);
  if (models.length === 0) return null;
  return { default: models.includes(body.default) ? body.default : models[0], models };
}
