/*
 * The conversation log on the page: one TurnView per message, in order, rendered in batches once
 * per animation frame. A very long answer (slow to re-render) is re-rendered less often, so the page
 * stays responsive while it streams. The log follows the newest text while the person is at the
 * bottom, and stays put when they scrolled up to read.
 */
import { TurnView } from './turn-view.js';

const log = document.getElementById('log');
const scroller = document.getElementById('scroller');
const empty = document.getElementById('empty');

export class MessagesView {
  /**
   * `actions`: what the turns' buttons do (see TurnView). `describe()` → {lastId, canAct}: which
   * message is last and whether commands can be sent now; `rendered()` runs after each batch.
   */
  constructor(actions, describe, rendered) {
    this.actions = actions;
    this.describe = describe;
    this.rendered = rendered;
    this.turns = new Map(); // messageId → TurnView
    this.dirty = new Map(); // messageId → message to render
    this.frameQueued = false;
    this.nextRenderAt = 0;
    this.actionState = '';
  }

  reset() {
    this.turns.clear();
    this.dirty.clear();
    log.textContent = '';
    empty.hidden = false;
    this.actionState = '';
  }

  /** The message changed: its turn (added at the end when new) is rendered in the next batch. */
  changed(m) {
    if (!this.turns.has(m.id)) {
      const turn = new TurnView(m.id, this.actions);
      this.turns.set(m.id, turn);
      log.appendChild(turn.el);
      empty.hidden = true;
    }
    this.dirty.set(m.id, m);
    this.schedule();
  }

  removed(messageId) {
    const turn = this.turns.get(messageId);
    if (turn) turn.remove();
    this.turns.delete(messageId);
    this.dirty.delete(messageId);
    empty.hidden = this.turns.size > 0;
  }

  /** The last message or whether commands can be sent changed: its Edit and Regenerate follow. */
  refreshActions(messages) {
    const { lastId, canAct } = this.describe();
    const state = lastId + '\u0000' + canAct;
    if (state === this.actionState) return;
    this.actionState = state;
    // The former last turn loses its buttons, the new one gets them: re-render both (cheap).
    for (const m of messages.slice(-2)) this.dirty.set(m.id, m);
    this.schedule();
  }

  schedule() {
    if (this.frameQueued) return;
    this.frameQueued = true;
    const wait = this.nextRenderAt - performance.now();
    if (wait > 0) setTimeout(() => requestAnimationFrame(() => this.flush()), wait);
    else requestAnimationFrame(() => this.flush());
  }

  /** Renders what changed now (also used right after a history was loaded, so it shows at once). */
  flush() {
    this.frameQueued = false;
    const began = performance.now();
    const stick = isNearBottom();
    const { lastId, canAct } = this.describe();
    const batch = Array.from(this.dirty.values());
    this.dirty.clear();
    for (const m of batch) {
      const turn = this.turns.get(m.id);
      if (turn) turn.render(m, { isLast: m.id === lastId, actionable: m.id === lastId && canAct });
    }
    if (stick) scrollToBottom();
    const took = performance.now() - began;
    this.nextRenderAt = performance.now() + (took > 8 ? Math.min(took * 3, 500) : 0);
    this.rendered();
  }
}

function isNearBottom() {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
}

export function scrollToBottom() {
  scroller.scrollTop = scroller.scrollHeight;
}
