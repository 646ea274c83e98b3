/*
 * The person's list of conversations (the sidebar), kept in this browser's localStorage under
 * "ai-assistant.chats": [{sessionId, token, tokenExpiresAt, tokenIssuedAt, title, titleSource, model,
 * updatedAt}], newest activity first.
 *
 * There is no list on the server. A session is a bearer capability: whoever holds its token can read
 * and continue it, and the token lives only here. So the list is per browser (per profile): another
 * device, or another browser on the same machine, does not see these conversations, and clearing the
 * site's data forgets them (the server keeps their history until it expires or is deleted, but
 * nothing points to it any more). Tabs of one browser share the list (they see each other's changes
 * through the storage event).
 *
 * titleSource: null (no title yet: shown as "New chat"), 'first' (the first message's opening words),
 * 'model' (the title the model wrote), 'user' (renamed by the person; nothing replaces it).
 * tokenIssuedAt is this browser's clock when the token arrived: with tokenExpiresAt it gives the
 * token's half-life, when the page trades it for a fresh one (tokens.js).
 */

const LIST_KEY = 'ai-assistant.chats';
/** The single session the page kept before it had a list; moved into the list once. */
const OLD_SESSION_KEY = 'ai-assistant.session';
/** Which chat this tab shows (sessionStorage, so two tabs can show two chats and each reload keeps its own). */
const OPEN_KEY = 'ai-assistant.open-chat';
/** The chat a new tab opens: the one opened last anywhere in this browser. */
const LAST_OPEN_KEY = 'ai-assistant.last-open-chat';
/** The model picked last: new chats take it. */
const MODEL_KEY = 'ai-assistant.model';

const TITLE_CHARS = 60;
const SOURCES = new Set(['first', 'model', 'user']);
const listeners = new Set();
/** Where the list lives when localStorage refuses to store (storage disabled): this tab only. */
let fallback = null;

function read() {
  if (fallback) return fallback.map((c) => ({ ...c }));
  try {
    const list = JSON.parse(localStorage.getItem(LIST_KEY) || '[]');
    return Array.isArray(list) ? list.filter(isEntry) : [];
  } catch {
    return []; // a corrupt list is replaced by the next write
  }
}

function isEntry(c) {
  return !!c && typeof c.sessionId === 'string' && typeof c.token === 'string';
}

function write(list) {
  try {
    localStorage.setItem(LIST_KEY, JSON.stringify(list));
    fallback = null;
  } catch {
    fallback = list;
  }
  listeners.forEach((fn) => fn({ local: true }));
}

const byActivity = (a, b) => (b.updatedAt || 0) - (a.updatedAt || 0);

/** The chats, newest activity first (copies: change them through the functions below). */
export function listChats() {
  return read().sort(byActivity);
}

export function getChat(sessionId) {
  return read().find((c) => c.sessionId === sessionId) || null;
}

/** Adds a chat for a session just created ({sessionId, token, expiresAt} as POST /sessions answers). */
export function addChat(session, model) {
  const entry = {
    sessionId: session.sessionId,
    token: session.token,
    tokenExpiresAt: session.expiresAt,
    tokenIssuedAt: Date.now(),
    title: '',
    titleSource: null,
    model: model || null,
    updatedAt: Date.now(),
  };
  write([entry, ...read().filter((c) => c.sessionId !== entry.sessionId)]);
  return { ...entry };
}

/**
 * Changes one chat, re-reading the list first: another tab may have changed other chats (or this
 * one's token) since this tab last read it. Answers the updated entry, or null when it is gone.
 */
export function updateChat(sessionId, patch) {
  const list = read();
  const entry = list.find((c) => c.sessionId === sessionId);
  if (!entry) return null;
  Object.assign(entry, patch);
  write(list);
  return { ...entry };
}

export function removeChat(sessionId) {
  write(read().filter((c) => c.sessionId !== sessionId));
}

/** Moves the chat to the top of the list (something was sent in it). */
export function touchChat(sessionId) {
  return updateChat(sessionId, { updatedAt: Date.now() });
}

/**
 * Sets a title unless a better one is there: the person's own title is never replaced, the model's
 * only by the person's, the first message's only fills an empty title.
 */
export function setTitle(sessionId, title, source) {
  const entry = getChat(sessionId);
  const text = String(title || '').trim();
  if (!entry || !text || !SOURCES.has(source)) return entry;
  if (entry.titleSource === 'user' && source !== 'user') return entry;
  if (source === 'first' && entry.titleSource) return entry;
  if (entry.title === text && entry.titleSource === source) return entry;
  return updateChat(sessionId, { title: text, titleSource: source });
}

/** The first ~60 characters of a message, cut at a word when one ends near there. */
export function titleFromMessage(text) {
  const flat = String(text).replace(/\s+/g, ' ').trim();
  if (flat.length <= TITLE_CHARS) return flat;
  const cut = flat.slice(0, TITLE_CHARS);
  const space = cut.lastIndexOf(' ');
  return (space > TITLE_CHARS * 0.6 ? cut.slice(0, space) : cut).trimEnd() + '…';
}

/** What the sidebar and the document title show for a chat. */
export const displayTitle = (entry) => (entry && entry.title) || 'New chat';

/** Moves the single session of the page before the list into the list (once; the old key is then removed). */
export function migrateOldSession() {
  let old = null;
  try {
    old = JSON.parse(localStorage.getItem(OLD_SESSION_KEY) || 'null');
  } catch {
    /* corrupt: dropped below */
  }
  if (old && typeof old.sessionId === 'string' && typeof old.token === 'string' && !getChat(old.sessionId)) {
    const list = read();
    list.push({
      sessionId: old.sessionId,
      token: old.token,
      tokenExpiresAt: old.expiresAt,
      tokenIssuedAt: old.issuedAt,
      title: '',
      titleSource: null,
      model: null,
      updatedAt: Date.now(),
    });
    write(list);
    rememberOpenChat(old.sessionId);
  }
  try {
    localStorage.removeItem(OLD_SESSION_KEY);
  } catch {
    /* storage disabled: nothing was there */
  }
}

/** Calls `fn({local})` whenever the list changes, in this tab (local: true) or in another one. */
export function onChatsChanged(fn) {
  listeners.add(fn);
}

window.addEventListener('storage', (ev) => {
  if (ev.key === LIST_KEY || ev.key === null) listeners.forEach((fn) => fn({ local: false }));
});

export function rememberOpenChat(sessionId) {
  try {
    sessionStorage.setItem(OPEN_KEY, sessionId);
    localStorage.setItem(LAST_OPEN_KEY, sessionId);
  } catch {
    /* storage disabled: a reload opens the newest chat */
  }
}

/** The chat to show on load: this tab's, else the one opened last in this browser, if still listed. */
export function chatToOpen() {
  let ids = [];
  try {
    ids = [sessionStorage.getItem(OPEN_KEY), localStorage.getItem(LAST_OPEN_KEY)];
  } catch {
    /* storage disabled */
  }
  for (const id of ids) if (id && getChat(id)) return getChat(id);
  return listChats()[0] || null;
}

export function lastPickedModel() {
  try {
    return localStorage.getItem(MODEL_KEY);
  } catch {
    return null;
  }
}

export function rememberPickedModel(model) {
  try {
    localStorage.setItem(MODEL_KEY, model);
  } catch {
    /* storage disabled */
  }
}
