/*
 * Keyboard shortcuts of the whole page, and the dialog that lists them (opened with "?" or from the
 * menu). Keys that type text are only shortcuts outside text fields.
 */

const dialog = document.getElementById('shortcuts');

const typing = (target) => target instanceof Element && !!target.closest('input, textarea, select, [contenteditable="true"]');

/** `on`: {stop(), canStop(), newChat(), focusComposer()}. */
export function initShortcuts(on) {
  document.addEventListener('keydown', (ev) => {
    if (dialog.open || ev.defaultPrevented) return; // the dialog handles its own Escape
    if (ev.key === 'Escape' && on.canStop()) {
      ev.preventDefault();
      on.stop();
    } else if (ev.key === '?' && !typing(ev.target) && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
      ev.preventDefault();
      showShortcuts();
    } else if (ev.key === '/' && !typing(ev.target) && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
      ev.preventDefault();
      on.focusComposer();
    } else if (ev.altKey && ev.shiftKey && ev.code === 'KeyN' && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      on.newChat();
    }
  });
}

export function showShortcuts() {
  if (!dialog.open) dialog.showModal();
}
