/*
 * The chat list: a sidebar on a wide screen, a drawer (opened from the top bar's menu button) on a
 * phone-width one. Each chat opens on click; rename is inline (Enter or leaving the field saves,
 * Escape cancels) and sets a title nothing replaces; delete asks inline first.
 */
import { displayTitle, listChats, setTitle } from './chats.js';
import { button, el } from './dom.js';
import { icon } from './icons.js';

const app = document.getElementById('app');
const list = document.getElementById('chat-list');
const newChatButton = document.getElementById('new-chat');
const menuButton = document.getElementById('menu');
const closeButton = document.getElementById('close-drawer');
const backdrop = document.getElementById('backdrop');
/** Where the list is a drawer; the same width as the CSS media query. */
const narrow = window.matchMedia('(max-width: 760px)');

let on = null;
let openId = null;
/** A chat being renamed or asked about: the list is not redrawn under the person's hands meanwhile. */
let busyWith = null;
let redrawLater = false;

/** `handlers`: {open(sessionId), create(), remove(sessionId) → Promise<boolean: deleted>}. */
export function initSidebar(handlers) {
  on = handlers;
  newChatButton.addEventListener('click', () => on.create());
  menuButton.addEventListener('click', () => (isDrawerOpen() ? closeDrawer() : openDrawer()));
  closeButton.addEventListener('click', closeDrawer);
  backdrop.addEventListener('click', closeDrawer);
  // While the drawer is open, Escape closes it (and does nothing else): caught before anything
  // below it sees the key. A rename or delete question in the drawer keeps its own Escape.
  document.addEventListener(
    'keydown',
    (ev) => {
      if (ev.key !== 'Escape' || !isDrawerOpen() || busyWith) return;
      ev.preventDefault();
      ev.stopPropagation();
      closeDrawer();
    },
    { capture: true },
  );
  narrow.addEventListener('change', () => narrow.matches || closeDrawer());
}

export const isDrawerOpen = () => app.classList.contains('drawer-open');

export function openDrawer() {
  if (!narrow.matches) return;
  app.classList.add('drawer-open');
  backdrop.hidden = false;
  menuButton.setAttribute('aria-expanded', 'true');
  const current = list.querySelector('[aria-current] .chat-open');
  // After the style change has applied: a hidden (visibility) element cannot take the focus.
  requestAnimationFrame(() => (current || newChatButton).focus());
}

export function closeDrawer() {
  if (!isDrawerOpen()) return;
  app.classList.remove('drawer-open');
  backdrop.hidden = true;
  menuButton.setAttribute('aria-expanded', 'false');
  if (narrow.matches) menuButton.focus();
}

/** Draws the list, marking the open chat (sessionId). */
export function renderSidebar(sessionId) {
  openId = sessionId;
  if (busyWith) {
    redrawLater = true;
    return;
  }
  redrawLater = false;
  list.replaceChildren(...listChats().map(item));
}

function finished() {
  busyWith = null;
  if (redrawLater) renderSidebar(openId);
}

function item(chat) {
  const li = el('li', 'chat-item', null, { 'data-session-id': chat.sessionId });
  const title = displayTitle(chat);
  const open = button('chat-open', null, { title });
  // On the item for its styling, on the button for screen readers (the item is not focusable).
  if (chat.sessionId === openId) [li, open].forEach((node) => node.setAttribute('aria-current', 'true'));
  open.append(el('span', 'chat-title', title));
  open.addEventListener('click', () => {
    closeDrawer();
    if (chat.sessionId !== openId) on.open(chat.sessionId);
  });
  const rename = button('icon-btn chat-rename', null, { 'aria-label': `Rename “${title}”`, title: 'Rename' });
  rename.append(icon('pencil'));
  rename.addEventListener('click', () => startRename(li, chat));
  const remove = button('icon-btn chat-delete', null, { 'aria-label': `Delete “${title}”`, title: 'Delete' });
  remove.append(icon('trash'));
  remove.addEventListener('click', () => confirmDelete(li, chat));
  li.append(open, rename, remove);
  return li;
}

function startRename(li, chat) {
  busyWith = chat.sessionId;
  const form = el('form', 'rename-form');
  const input = el('input', 'rename-input', null, { 'aria-label': 'New title', maxlength: '120', type: 'text' });
  input.value = chat.title || '';
  form.append(input);
  li.replaceChildren(form);
  input.focus();
  input.select();
  let done = false;
  const finish = (save) => {
    if (done) return;
    done = true;
    const text = input.value.trim();
    if (save && text && text !== chat.title) setTitle(chat.sessionId, text, 'user');
    finished();
    renderSidebar(openId);
    list.querySelector(`[data-session-id="${CSS.escape(chat.sessionId)}"] .chat-rename`)?.focus();
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    finish(true);
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      ev.stopPropagation();
      finish(false);
    }
  });
  input.addEventListener('blur', () => finish(true));
}

function confirmDelete(li, chat) {
  busyWith = chat.sessionId;
  const question = el('span', 'confirm-text', `Delete “${displayTitle(chat)}”?`);
  const yes = button('btn small danger confirm-delete', 'Delete');
  const no = button('btn small ghost confirm-cancel', 'Cancel');
  const row = el('div', 'confirm-row', null, { role: 'group', 'aria-label': 'Delete this chat?' });
  row.append(question, no, yes);
  li.replaceChildren(row);
  no.focus();
  const back = () => {
    finished();
    renderSidebar(openId);
  };
  row.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      ev.stopPropagation();
      back();
    }
  });
  no.addEventListener('click', back);
  yes.addEventListener('click', async () => {
    yes.disabled = no.disabled = true;
    question.textContent = 'Deleting…';
    // Drawn again (without it) once it is gone; kept when the delete failed (the banner says why).
    await on.remove(chat.sessionId);
    busyWith = null;
    renderSidebar(openId);
  });
}
