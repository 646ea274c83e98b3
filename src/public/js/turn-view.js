/*
 * One turn of the conversation on the page: the person's question and the assistant's answer (with
 * its thinking, status, error, context note and, on the last turn, Edit and Regenerate).
 *
 * Safety: the question is only ever set with textContent; the answer goes through markdown.js
 * (renderMarkdown / StreamingMarkdown, sanitized), error texts through renderInline.
 */
import { hasEnded } from './conversation.js';
import { button, el } from './dom.js';
import { EditForm } from './edit-form.js';
import { renderInline, renderMarkdown, StreamingMarkdown } from './markdown.js';

const CONTEXT_NOTE = "Earlier messages were left out to fit the model's context window.";

export class TurnView {
  /** `actions`: {regenerate(messageId), edit(messageId, content) → Promise<boolean: accepted>}. */
  constructor(messageId, actions) {
    this.id = messageId;
    this.actions = actions;
    this.el = el('article', 'turn', null, { 'data-message-id': messageId });
    this.user = null;
    this.answer = null;
    this.editForm = null;
    // Once the person opens or closes the thinking area, the page stops doing it for them.
    this.thinkingToggled = false;
    this.shown = { answer: null, thinking: null, ended: false, errorKey: null };
    this.streamer = null;
  }

  remove() {
    this.el.remove();
  }

  /** `actionable`: this is the last turn, it has ended and commands can be sent now. */
  render(m, { isLast, actionable }) {
    if (m.user !== null) this.renderQuestion(m, isLast && hasEnded(m), actionable);
    this.renderAnswer(m, isLast && hasEnded(m), actionable);
  }

  renderQuestion(m, offerEdit, actionable) {
    if (!this.user) this.user = this.buildQuestion();
    const v = this.user;
    if (v.text.textContent !== m.user) v.text.textContent = m.user;
    if (!offerEdit && this.editForm) this.closeEdit({ refocus: false }); // no longer the last message
    v.actions.hidden = !offerEdit || !!this.editForm;
    v.edit.disabled = !actionable;
  }

  buildQuestion() {
    const box = el('div', 'msg user');
    const text = el('div', 'user-text');
    const edit = button('btn small ghost edit', 'Edit', { 'aria-label': 'Edit this question and ask again' });
    const actions = el('div', 'msg-actions user-actions');
    actions.append(edit);
    box.append(el('p', 'sr-only', 'You:'), text);
    this.el.insertBefore(box, this.el.firstChild);
    box.after(actions);
    edit.addEventListener('click', () => this.openEdit());
    return { box, text, actions, edit };
  }

  openEdit() {
    const v = this.user;
    this.editForm = new EditForm(v.text.textContent, {
      save: (content) => this.actions.edit(this.id, content),
      cancel: () => this.closeEdit({ refocus: true }),
    });
    v.text.hidden = true;
    v.actions.hidden = true;
    v.text.after(this.editForm.el);
    this.editForm.focus();
  }

  /** `refocus`: the person closed it, so the focus goes back to the Edit button it came from. */
  closeEdit({ refocus }) {
    if (!this.editForm) return;
    this.editForm.el.remove();
    this.editForm = null;
    this.user.text.hidden = false;
    this.user.actions.hidden = false;
    if (refocus) this.user.edit.focus();
  }

  buildAnswer() {
    const box = el('div', 'msg assistant');
    const note = el('p', 'context-note', CONTEXT_NOTE);
    note.hidden = true;
    const thinking = el('details', 'thinking');
    thinking.hidden = true;
    const summaryLabel = el('span', 'label', 'Thinking');
    const summary = el('summary');
    summary.append(summaryLabel);
    const thinkingText = el('div', 'thinking-text');
    thinking.append(summary, thinkingText);
    // A click (or Enter/Space on the summary) means the person chose.
    summary.addEventListener('click', () => (this.thinkingToggled = true));
    const body = el('div', 'body');
    const meta = el('div', 'meta');
    // A quiet line under the pending answer: why nothing streams yet (queued, model loading, retrying).
    const statusLine = el('div', 'status-line');
    statusLine.hidden = true;
    const error = el('div', 'error-box');
    error.hidden = true;
    const regenerate = button('btn small ghost regenerate', 'Regenerate', { 'aria-label': 'Write this answer again' });
    regenerate.addEventListener('click', () => this.actions.regenerate(this.id));
    const actions = el('div', 'msg-actions answer-actions');
    actions.append(regenerate);
    actions.hidden = true;
    box.append(el('p', 'role', 'Assistant'), note, thinking, body, meta, statusLine, error, actions);
    this.el.append(box);
    return { box, note, thinking, summaryLabel, thinkingText, body, meta, statusLine, error, actions, regenerate };
  }

  renderAnswer(m, offerRegenerate, actionable) {
    if (!this.answer) this.answer = this.buildAnswer();
    const v = this.answer;
    const ended = hasEnded(m);
    v.box.dataset.status = m.status;
    v.box.setAttribute('aria-busy', ended ? 'false' : 'true');

    v.note.hidden = !m.contextOmitted;
    if (m.contextOmitted && typeof m.contextMessages === 'number')
      v.note.title = `The model saw the ${m.contextMessages} most recent earlier messages.`;

    this.renderThinking(m, ended);
    this.renderBody(m, ended);

    const meta = metaLine(m);
    if (v.meta.textContent !== meta) v.meta.textContent = meta;
    const statusText = !ended && m.statusDetail ? m.statusDetail : '';
    if (v.statusLine.textContent !== statusText) v.statusLine.textContent = statusText;
    v.statusLine.hidden = !statusText;
    this.renderError(m);

    v.actions.hidden = !offerRegenerate;
    v.regenerate.disabled = !actionable;
  }

  /** Live while it streams, folded away once the answer begins (unless the person chose). */
  renderThinking(m, ended) {
    const v = this.answer;
    if (!m.thinking) {
      v.thinking.hidden = true;
      v.thinkingText.textContent = '';
      this.shown.thinking = '';
      return;
    }
    v.thinking.hidden = false;
    if (this.shown.thinking !== m.thinking) {
      const t = v.thinkingText;
      const atEnd = t.scrollTop + t.clientHeight >= t.scrollHeight - 8;
      t.textContent = m.thinking;
      if (atEnd) t.scrollTop = t.scrollHeight;
      this.shown.thinking = m.thinking;
    }
    const live = !ended && m.status === 'streaming' && !m.answer;
    v.thinking.classList.toggle('live', live);
    v.summaryLabel.textContent = live ? 'Thinking…' : 'Thought process';
    if (!this.thinkingToggled) v.thinking.open = live;
  }

  /**
   * While the answer streams it is rendered incrementally (StreamingMarkdown: only the changed tail is
   * redone); an answer that starts over (a new attempt) gets a fresh renderer; an ended one is
   * rendered whole, once.
   */
  renderBody(m, ended) {
    const v = this.answer;
    if (this.shown.answer === m.answer && this.shown.ended === ended) return;
    const continues = this.streamer && m.answer.startsWith(this.shown.answer || '');
    if (!ended) {
      if (!continues) {
        v.body.textContent = '';
        this.streamer = new StreamingMarkdown(v.body);
      }
      this.streamer.update(m.answer);
    } else if (continues) {
      this.streamer.finish(m.answer);
      this.streamer = null;
    } else {
      this.streamer = null;
      v.body.innerHTML = renderMarkdown(m.answer);
    }
    this.shown.answer = m.answer;
    this.shown.ended = ended;
  }

  renderError(m) {
    const v = this.answer;
    if (m.status !== 'failed') {
      if (!v.error.hidden) {
        v.error.hidden = true;
        v.error.textContent = '';
        this.shown.errorKey = null;
      }
      return;
    }
    const error = m.error || { code: 'unknown', message: 'No reason was recorded.' };
    const key = error.code + '\u0000' + error.message;
    v.error.hidden = false;
    if (this.shown.errorKey === key) return;
    this.shown.errorKey = key;
    const message = el('div', 'error-message');
    message.innerHTML = renderInline(error.message || 'Unknown error');
    v.error.replaceChildren(
      el('p', 'error-title', 'The answer failed'),
      message,
      el('div', 'error-code', 'code: ' + (error.code || 'unknown')),
    );
  }
}

/** The quiet line under an answer: what it waits for, or what answered and how long it was. */
function metaLine(m) {
  if (m.status === 'queued') return 'Waiting for the model…';
  if (m.status === 'streaming' && m.attempt > 1) return `Retrying (attempt ${m.attempt})…`;
  if (m.status === 'streaming' && !m.answer && !m.thinking) return 'Starting…';
  if (m.status === 'cancelled') return m.answer ? 'Stopped — the answer above is incomplete.' : 'Stopped.';
  if (m.status === 'completed') {
    const parts = [];
    if (m.model) parts.push(m.model);
    if (m.usage && typeof m.usage.completionTokens === 'number') parts.push(m.usage.completionTokens + ' tokens');
    return parts.join(' · ');
  }
  return '';
}
