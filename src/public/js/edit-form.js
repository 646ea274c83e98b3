/*
 * The inline editor of the last question: a textarea with Save and Cancel. Enter saves (Shift+Enter
 * for a new line, as in the message box), Escape cancels. The form stays open with the text when
 * the server refuses the edit, so nothing typed is lost.
 */
import { button, el } from './dom.js';

export class EditForm {
  /** `on`: {save(content) → Promise<boolean: accepted>, cancel()}. */
  constructor(text, on) {
    this.on = on;
    this.el = el('form', 'edit-form');
    this.input = el('textarea', 'edit-input', null, { 'aria-label': 'Edit your question', rows: '3' });
    this.input.value = text;
    this.save = el('button', 'btn small primary save', 'Save and send', { type: 'submit' });
    const cancel = button('btn small ghost cancel', 'Cancel');
    const row = el('div', 'edit-actions');
    row.append(cancel, this.save);
    this.el.append(this.input, row);

    this.el.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.submit();
    });
    cancel.addEventListener('click', () => on.cancel());
    this.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') {
        ev.preventDefault();
        ev.stopPropagation(); // Escape here means "stop editing", not "stop the answer"
        on.cancel();
      } else if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
        ev.preventDefault();
        this.submit();
      }
    });
  }

  focus() {
    this.input.focus();
    this.input.setSelectionRange(this.input.value.length, this.input.value.length);
  }

  async submit() {
    const content = this.input.value;
    if (!content.trim() || this.save.disabled) return;
    this.save.disabled = true;
    try {
      await this.on.save(content);
    } finally {
      this.save.disabled = false;
    }
  }
}
