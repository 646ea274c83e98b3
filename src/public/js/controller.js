/*
 * What the page does, joining its parts: the chat list (chats.js), the open chat's session
 * (chat-session.js), the log (messages-view.js), the composer, the sidebar, the model picker and the
 * banner. Opening, creating, switching and deleting chats; sending, stopping, regenerating and
 * editing in the open one.
 *
 * Switching away from a chat never stops its answer: the server keeps writing it, and switching back
 * loads the history (with the partial answer) and resumes the events from there.
 */
import { createSession, deleteConversation } from './api.js';
import { announce, hideBanner, hideConnectionBanner, showBanner } from './banner.js';
import { ChatSession, NoAck } from './chat-session.js';
import * as chats from './chats.js';
import { clearComposer, composerText, focusComposer, initComposer, setComposerState, setComposerText, thinkLevel } from './composer.js';
import { setConnectionState } from './connection-state.js';
import { MessagesView, scrollToBottom } from './messages-view.js';
import { loadModels, modelForNewChat, onModelPicked, pickedModel, showModelOf } from './model-picker.js';
import { retrying } from './retry.js';
import { closeDrawer, initSidebar, renderSidebar } from './sidebar.js';
import { freshenAll } from './tokens.js';

/** The open chat's ChatSession, or null while none is (yet) open. */
let current = null;
/** Bumps on every open: an older open that finishes late leaves the page alone. */
let opening = 0;
/** A send, regenerate or edit of the open chat waits for its acknowledgement. */
let busy = false;
/** Text left in the message box of each chat switched away from. */
const drafts = new Map();
/** Chats being deleted here: their refused token is expected, not news. */
const deleting = new Set();

const canCommand = () => !!current && current.connected && !busy;

const view = new MessagesView(
  { regenerate, edit },
  () => ({ lastId: current && current.conv.last() ? current.conv.last().id : null, canAct: canCommand() }),
  updateControls,
);

export async function start() {
  chats.migrateOldSession();
  initSidebar({ open: (id) => openChat(id), create: newChat, remove: deleteChat });
  initComposer({ send, stop });
  onModelPicked((model) => current && chats.updateChat(current.sessionId, { model }));
  chats.onChatsChanged(onListChanged);
  window.addEventListener('offline', () => setConnectionState('offline'));
  window.addEventListener('online', () => current && current.reconnectNow());
  const models = loadModels().then(() => showModelOf(current && chats.getChat(current.sessionId)));
  const first = chats.chatToOpen();
  await openChat(first ? first.sessionId : null);
  await models;
  // The chats not open get their tokens renewed too, so they stay usable (see tokens.js).
  await freshenAll(chats.listChats().filter((c) => !current || c.sessionId !== current.sessionId));
}

/** The open chat's title and messages (for an export), or null. */
export function openConversation() {
  if (!current) return null;
  return { title: chats.displayTitle(chats.getChat(current.sessionId)), messages: current.conv.list() };
}

export const canStopNow = () => !!current && current.connected && current.conv.active().length > 0;

// ---------------------------------------------------------------------------------------------
// Chats: open, new, delete, lost
// ---------------------------------------------------------------------------------------------

/** Opens the chat `sessionId` (a new one when null), with an info `notice` in the banner once open. */
async function openChat(sessionId, notice) {
  const my = ++opening;
  leaveCurrent();
  view.reset();
  setConnectionState('connecting');
  updateControls();
  let entry = sessionId ? chats.getChat(sessionId) : null;
  try {
    if (!entry) entry = await newEntry(my);
  } catch (err) {
    if (my === opening) showBanner('Could not start a conversation: ' + messageOf(err));
    return;
  }
  if (my !== opening) return;
  const s = new ChatSession(
    entry,
    sessionHooks(() => s),
  );
  current = s;
  chats.rememberOpenChat(entry.sessionId);
  renderSidebar(entry.sessionId);
  showModelOf(entry);
  showTitle(entry);
  setComposerText(drafts.get(entry.sessionId) || '');
  let known;
  try {
    known = await s.open();
  } catch (err) {
    if (s === current) showBanner('Could not open the conversation: ' + messageOf(err));
    return;
  }
  if (s !== current) return;
  if (!known) return forget(s);
  view.flush();
  scrollToBottom();
  const asked = s.conv.list().find((m) => m.user !== null);
  if (asked) chats.setTitle(s.sessionId, chats.titleFromMessage(asked.user), 'first');
  if (notice) showBanner(notice, 'info');
  else hideBanner();
  updateControls();
}

/** What the open chat's session tells the page. Everything from a chat no longer open is dropped. */
function sessionHooks(self) {
  const mine =
    (fn) =>
    (...args) =>
      self() === current ? fn(...args) : undefined;
  return {
    changed: mine((m) => view.changed(m)),
    removed: mine((id) => view.removed(id)),
    reset: mine(() => view.reset()),
    asked: mine((m) => noteQuestion(self().sessionId, m.user)),
    title: mine((title) => chats.setTitle(self().sessionId, title, 'model')),
    announce: mine(announce),
    connection: mine((state, detail) => {
      setConnectionState(state);
      if (state === 'connected') hideConnectionBanner();
      else if (detail) showBanner(detail, 'connection');
      updateControls();
    }),
    waiting: mine(showRetrying),
    lost: mine(() => forget(self())),
  };
}

function leaveCurrent() {
  if (!current) return;
  drafts.set(current.sessionId, composerText());
  current.close();
  current = null;
  busy = false; // an acknowledgement still owed to the previous chat no longer matters
}

async function newEntry(my) {
  const session = await retrying(createSession, {
    stillWanted: () => my === opening,
    waiting: (err, ms) => showRetrying('start a conversation', err, ms),
  });
  if (my !== opening) throw new Error('superseded');
  return chats.addChat(session, modelForNewChat());
}

async function newChat() {
  closeDrawer();
  // The open chat is new and empty already: no second empty one.
  if (!(current && current.ready && current.conv.messages.size === 0)) await openChat(null);
  focusComposer();
}

/** Deletes the chat on the server, then from the list; the open one is replaced by its neighbour or a new chat. */
async function deleteChat(sessionId) {
  const entry = chats.getChat(sessionId);
  if (!entry) return true;
  deleting.add(sessionId);
  try {
    await deleteConversation(sessionId, entry.token);
  } catch (err) {
    deleting.delete(sessionId);
    showBanner(`Could not delete “${chats.displayTitle(entry)}”: ${messageOf(err)}`);
    return false;
  }
  const order = chats.listChats();
  const at = order.findIndex((c) => c.sessionId === sessionId);
  const next = order[at + 1] || order[at - 1] || null;
  chats.removeChat(sessionId);
  drafts.delete(sessionId);
  announce('Chat deleted.');
  // Its session closes at once (synchronously): its refused token can no longer reach forget().
  if (current && current.sessionId === sessionId) void openChat(next ? next.sessionId : null);
  deleting.delete(sessionId);
  return true;
}

/** The server no longer knows the open chat (its token is refused and its history gone): drop it from the list. */
function forget(s) {
  if (s !== current || deleting.has(s.sessionId)) return;
  const entry = chats.getChat(s.sessionId);
  chats.removeChat(s.sessionId);
  const next = chats.listChats()[0];
  const name = entry && entry.title ? `the conversation “${entry.title}”` : 'your previous conversation';
  const notice = next
    ? `The server no longer knows ${name}, so it was removed from your list.`
    : `The server no longer knows ${name}, so a new one was started.`;
  return openChat(next ? next.sessionId : null, notice);
}

/** The list changed (here or in another tab): redraw it; the open chat deleted in another tab is replaced. */
function onListChanged({ local }) {
  const entry = current && chats.getChat(current.sessionId);
  if (current && !entry && !local && !deleting.has(current.sessionId)) {
    const next = chats.listChats()[0];
    void openChat(next ? next.sessionId : null, 'This conversation was deleted in another tab.');
    return;
  }
  renderSidebar(current ? current.sessionId : null);
  if (entry) showTitle(entry);
}

function noteQuestion(sessionId, text) {
  chats.touchChat(sessionId);
  if (typeof text === 'string') chats.setTitle(sessionId, chats.titleFromMessage(text), 'first');
}

function showTitle(entry) {
  document.title = chats.displayTitle(entry) + ' · ai-assistant';
}

// ---------------------------------------------------------------------------------------------
// Commands in the open chat
// ---------------------------------------------------------------------------------------------

/** think and model, as every command sends them (no model when the server has no list). */
function commandOptions() {
  const options = { think: thinkLevel() };
  const model = pickedModel();
  if (model) options.model = model;
  return options;
}

/** Runs a command of the open chat with `busy` set; answers whether it was accepted (errors go to the banner). */
async function command(run, describeFailure) {
  const s = current;
  if (!s || !s.ready || busy) return false;
  busy = true;
  updateControls();
  try {
    const options = commandOptions();
    await run(s, options);
    if (s !== current) return true;
    hideBanner();
    if (options.model) chats.updateChat(s.sessionId, { model: options.model });
    requestAnimationFrame(scrollToBottom);
    return true;
  } catch (err) {
    if (s === current) showBanner(describeFailure(err));
    return false;
  } finally {
    if (s === current) {
      busy = false;
      updateControls();
    }
  }
}

function send() {
  const content = composerText();
  if (!content.trim()) return;
  return command(
    async (s, options) => {
      await s.send(content, options);
      clearComposer(content);
      noteQuestion(s.sessionId, content);
    },
    (err) =>
      err instanceof NoAck
        ? 'The server did not confirm the message (connection problem). Press Send to try again; it will not be sent twice.'
        : describeRefusal(err),
  );
}

function regenerate(messageId) {
  return command(
    (s, options) => s.regenerate(messageId, options),
    (err) =>
      err instanceof NoAck
        ? 'The server did not confirm the new answer (connection problem). Press Regenerate to try again; it will not be asked twice.'
        : describeRefusal(err),
  );
}

function edit(messageId, content) {
  return command(
    (s, options) => s.edit(messageId, content, options),
    (err) =>
      err instanceof NoAck
        ? 'The server did not confirm the edit (connection problem). Press Save to try again; it will not be sent twice.'
        : describeRefusal(err),
  );
}

async function stop() {
  const s = current;
  if (!s) return;
  const problems = await s.cancelActive();
  if (problems.length && s === current) showBanner(problems[0]);
}

function updateControls() {
  setComposerState({ canSend: !!current && current.ready, sending: busy, canStop: canStopNow() });
  if (current) view.refreshActions(current.conv.list());
}

// ---------------------------------------------------------------------------------------------
// Texts
// ---------------------------------------------------------------------------------------------

function describeRefusal(err) {
  const status = err && err.statusCode;
  const message = messageOf(err);
  if (status === 429) return 'Slow down: ' + message + '. Wait a moment, then send again.';
  if (status === 503) return 'The server is busy: ' + message + '.';
  if (status === 400) return 'The message was not accepted: ' + message + '.';
  if (status === 401 || status === 403) return 'Your session is no longer valid: ' + message + '. Start a new chat.';
  if (status === 409) return 'Only the last message can be edited or regenerated, once its answer has ended (' + message + ').';
  if (status === 404) return 'That message is no longer on the server: ' + message + '.';
  return 'Sending failed: ' + message + (status ? ' (' + status + ')' : '') + '.';
}

function showRetrying(what, err, ms) {
  setConnectionState(navigator.onLine === false ? 'offline' : 'reconnecting');
  showBanner(`Could not ${what}: ${messageOf(err, 'the server is unreachable')}. Retrying in ${Math.round(ms / 1000)} s…`, 'connection');
}

const messageOf = (err, otherwise = 'unknown error') => (err && err.message) || otherwise;
