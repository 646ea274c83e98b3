/*
 * The built-in chat page: the entry module (index.html loads it after /socket.io/socket.io.js, which
 * defines the global `io`). Module layout, one job each:
 *
 *   controller.js      opening, creating, switching, deleting chats; send, stop, regenerate, edit
 *   chats.js           the chat list in localStorage (where it lives, and why per browser)
 *   chat-session.js    one open chat: credentials, history, socket, commands
 *   conversation.js    the open chat's messages, from the history and the events
 *   socket.js          the Socket.IO connection and its resume from lastEventId
 *   api.js             the HTTP calls;  tokens.js: renewing session tokens;  retry.js: retrying them
 *   messages-view.js   the log, rendered per animation frame;  turn-view.js / edit-form.js: one turn
 *   sidebar.js         the chat list on the page (sidebar, or drawer on a phone)
 *   composer.js, model-picker.js, banner.js, connection-state.js, copy-code.js, export.js, shortcuts.js
 *   markdown.js        model output → safe HTML (markdown-it + highlight.js, from /vendor)
 *
 * Safety: what a person types is only ever set with textContent; model text goes through
 * markdown.js. The page's CSP allows scripts from this origin only, so nothing inline runs either.
 */
import { canStopNow, openConversation, start } from './controller.js';
import { focusComposer } from './composer.js';
import { enableCopyButtons } from './copy-code.js';
import { conversationJson, conversationMarkdown, download, fileNameOf } from './export.js';
import { initShortcuts, showShortcuts } from './shortcuts.js';

const menu = document.getElementById('more');

function exportAs(kind) {
  menu.open = false;
  const open = openConversation();
  if (!open) return;
  if (kind === 'md') download(fileNameOf(open.title, 'md'), conversationMarkdown(open.title, open.messages), 'text/markdown');
  else download(fileNameOf(open.title, 'json'), conversationJson(open.title, open.messages), 'application/json');
}

document.getElementById('export-md').addEventListener('click', () => exportAs('md'));
document.getElementById('export-json').addEventListener('click', () => exportAs('json'));
document.getElementById('show-shortcuts').addEventListener('click', () => {
  menu.open = false;
  showShortcuts();
});
// The menu closes when the focus or a click goes elsewhere.
document.addEventListener('click', (ev) => {
  if (menu.open && !menu.contains(ev.target)) menu.open = false;
});
menu.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && menu.open) {
    ev.preventDefault();
    menu.open = false;
    menu.querySelector('summary').focus();
  }
});

enableCopyButtons(document.getElementById('log'));
initShortcuts({
  stop: () => document.getElementById('stop').click(),
  canStop: canStopNow,
  newChat: () => document.getElementById('new-chat').click(),
  focusComposer,
});
start();
