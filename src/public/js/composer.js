/*
 * The message box with Send and Stop, and the reasoning level (remembered in this browser).
 * Enter sends, Shift+Enter makes a new line.
 */

const THINK_KEY = 'ai-assistant.think';
const LEVELS = new Set(['low', 'medium', 'high']);

const form = document.getElementById('composer');
const input = document.getElementById('input');
const sendButton = document.getElementById('send');
const stopButton = document.getElementById('stop');
const think = document.getElementById('think');

/** `on`: {send(), stop()}. */
export function initComposer(on) {
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    on.send();
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      on.send();
    }
  });
  input.addEventListener('input', autosize);
  window.addEventListener('resize', autosize);
  stopButton.addEventListener('click', on.stop);

  const saved = readThink();
  if (LEVELS.has(saved)) think.value = saved;
  think.addEventListener('change', () => {
    try {
      localStorage.setItem(THINK_KEY, think.value);
    } catch {
      /* storage disabled: the level lasts until the page is left */
    }
  });
}

function readThink() {
  try {
    return localStorage.getItem(THINK_KEY);
  } catch {
    return null;
  }
}

export function setComposerState({ canSend, sending, canStop }) {
  stopButton.disabled = !canStop;
  // The label stays "Send" (a wider label would reflow the message box while it is measured).
  sendButton.disabled = sending || !canSend;
  sendButton.setAttribute('aria-busy', sending ? 'true' : 'false');
}

export const canStop = () => !stopButton.disabled;

export const composerText = () => input.value;

/** Puts `text` in the message box (a chat's draft when switching back to it). */
export function setComposerText(text) {
  input.value = text;
  autosize();
}

/** Empties the message box, unless the person already typed something else meanwhile. */
export function clearComposer(sent) {
  if (input.value !== sent) return;
  input.value = '';
  autosize();
}

export function focusComposer() {
  input.focus();
}

export const thinkLevel = () => think.value;

function autosize() {
  input.style.height = 'auto';
  input.style.height = Math.min(input.scrollHeight + 2, window.innerHeight * 0.4) + 'px';
}
