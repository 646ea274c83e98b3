/*
 * Session tokens expire (30 days by default). Once less than half of a token's life is left, the page
 * trades it for a fresh one (POST /sessions/:id/token): before every socket (re)connection, on a timer
 * while a chat stays open, and for every listed chat when the page loads, so a conversation kept in
 * the list stays usable as long as the person comes back now and then.
 */
import { reissueToken } from './api.js';
import { getChat, updateChat } from './chats.js';

/** When the token is past half its life (ms since epoch), or null when unknown (an entry from before tokens expired). */
export function halfLifeOf(session) {
  const expires = Date.parse(session.tokenExpiresAt);
  if (!isFinite(expires) || typeof session.tokenIssuedAt !== 'number') return null;
  return session.tokenIssuedAt + (expires - session.tokenIssuedAt) / 2;
}

const isFresh = (session) => {
  const half = halfLifeOf(session);
  return half === null || Date.now() < half;
};

const refreshing = new Map(); // sessionId → the reissue under way

/**
 * Makes `session` ({sessionId, token, tokenExpiresAt, tokenIssuedAt}) carry a token with more than
 * half its life left, updating it in place (so every holder sees it) and in the list. Never fails: on
 * any problem the current token is kept, as it is still good for a while; a token the server refuses
 * shows up where it is used.
 */
export async function freshen(session) {
  if (isFresh(session)) return;
  // Another tab may have refreshed it already.
  const stored = getChat(session.sessionId);
  if (stored && Date.parse(stored.tokenExpiresAt) > Date.parse(session.tokenExpiresAt)) {
    Object.assign(session, { token: stored.token, tokenExpiresAt: stored.tokenExpiresAt, tokenIssuedAt: stored.tokenIssuedAt });
    if (isFresh(session)) return;
  }
  if (!refreshing.has(session.sessionId)) {
    const work = reissue(session).finally(() => refreshing.delete(session.sessionId));
    refreshing.set(session.sessionId, work);
  }
  const fresh = await refreshing.get(session.sessionId);
  if (fresh) Object.assign(session, fresh);
}

async function reissue(session) {
  try {
    const s = await reissueToken(session.sessionId, session.token);
    if (!s) return null;
    const fresh = { token: s.token, tokenExpiresAt: s.expiresAt, tokenIssuedAt: Date.now() };
    // Only while the chat is still listed (it may have been deleted meanwhile, here or in another tab).
    updateChat(session.sessionId, fresh);
    return fresh;
  } catch {
    return null; // offline or the server is away: keep the current token
  }
}

/**
 * Calls `fn` at the token's half-life while the chat stays open. At least 10 s apart (a failed
 * reissue is retried, not hammered); at most 6 h (browsers fire longer timers at once). Answers a
 * function that stops it.
 */
export function keepFresh(session, isOpen) {
  let timer = null;
  const schedule = () => {
    const half = halfLifeOf(session);
    if (half === null) return;
    const wait = Math.min(Math.max(half - Date.now(), 10000), 6 * 3600 * 1000);
    timer = setTimeout(() => {
      if (isOpen()) freshen(session).then(() => isOpen() && schedule());
    }, wait);
  };
  schedule();
  return () => clearTimeout(timer);
}

/** Freshens every listed chat's token, one after another (on load: the others are not open, so nothing else would). */
export async function freshenAll(chats) {
  for (const chat of chats) {
    const session = { ...chat };
    await freshen(session);
  }
}
