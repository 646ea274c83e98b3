/*
 * The open conversation's messages, as the server tells them: the history, then the events. No DOM
 * here; `hooks` hear what changed: {changed(m), removed(messageId), reset(), asked(m) (a question arrived),
 * title(text), announce(text)}.
 *
 * Every event carries an eventId; the conversation remembers the newest one applied (lastEventId),
 * ignores anything not newer, and the socket resumes from it, so nothing is lost or shown twice.
 */
import { compareIds } from './ids.js';

const FINAL = new Set(['completed', 'failed', 'cancelled']);

/** Whether the message has reached its final state (nothing more will stream for it). */
export const hasEnded = (m) => FINAL.has(m.status);

function newMessage(id) {
  return {
    id,
    user: null,
    answer: '',
    thinking: '',
    status: 'queued',
    attempt: 1,
    error: null,
    usage: null,
    model: null,
    // What the server says is happening while nothing streams (chat.status detail), or null.
    statusDetail: null,
    // chat.started: how many earlier messages the model saw, and whether older ones were left out.
    contextMessages: null,
    contextOmitted: false,
  };
}

export class Conversation {
  constructor(sessionId, hooks) {
    this.sessionId = sessionId;
    this.hooks = hooks;
    this.messages = new Map(); // in the order shown
    this.lastEventId = null;
    /** Messages replaced by a regenerate or an edit: a late copy of their events must not bring them back. */
    this.replaced = new Set();
  }

  /** The message with this id, created (at the end) when new. */
  ensure(messageId) {
    let m = this.messages.get(messageId);
    if (!m) {
      m = newMessage(messageId);
      this.messages.set(messageId, m);
    }
    return m;
  }

  list() {
    return Array.from(this.messages.values());
  }

  last() {
    return this.list().pop() || null;
  }

  /** Ids of the messages not yet ended. */
  active() {
    return this.list()
      .filter((m) => !hasEnded(m))
      .map((m) => m.id);
  }

  loadHistory(history) {
    this.messages.clear();
    this.hooks.reset();
    for (const h of history.messages || []) {
      const m = this.ensure(h.messageId);
      m.status = h.status || m.status;
      if (h.role === 'user') {
        m.user = h.content;
      } else {
        m.answer = h.content || '';
        m.thinking = h.thinking || '';
        if (h.error) m.error = h.error;
        if (typeof h.model === 'string') m.model = h.model;
        if (h.contextOmitted === true) m.contextOmitted = true;
      }
      this.hooks.changed(m);
    }
    this.lastEventId = history.lastEventId || null;
    if (typeof history.title === 'string' && history.title) this.hooks.title(history.title);
  }

  /** Takes `oldId` out and puts `newId` (with its question) at the end: a regenerate or an edit was accepted. */
  replace(oldId, newId, userText) {
    if (oldId && oldId !== newId) {
      this.replaced.add(oldId);
      if (this.messages.delete(oldId)) this.hooks.removed(oldId);
    }
    const m = this.ensure(newId);
    if (typeof userText === 'string') m.user = userText;
    this.hooks.changed(m);
    return m;
  }

  /** Applies one server event (already known to be of this session). */
  apply(type, p) {
    if (!p || p.sessionId !== this.sessionId) return;
    if (type === 'chat.status') return this.applyStatus(p);
    if (typeof p.eventId === 'string') {
      // Dedup: ids only grow within a session; anything at or below the newest applied one is a copy.
      if (this.lastEventId && compareIds(p.eventId, this.lastEventId) <= 0) return;
      this.lastEventId = p.eventId;
    }
    if (type === 'chat.title') {
      if (typeof p.title === 'string') this.hooks.title(p.title);
      return;
    }
    if (typeof p.messageId !== 'string' || this.replaced.has(p.messageId)) return;
    if (type === 'chat.user_message') {
      const asked = this.replace(typeof p.replaces === 'string' ? p.replaces : null, p.messageId, p.content);
      this.hooks.asked(asked);
      return;
    }
    const m = this.ensure(p.messageId);
    const ended = hasEnded(m);
    // Whatever the status line said is over once the message moves on.
    m.statusDetail = null;
    switch (type) {
      case 'chat.started':
        if (ended) return;
        m.status = 'streaming';
        m.attempt = p.attempt || 1;
        // A new attempt replaces whatever the previous one had shown.
        m.answer = '';
        m.thinking = '';
        m.error = null;
        m.contextMessages = typeof p.contextMessages === 'number' ? p.contextMessages : null;
        m.contextOmitted = p.contextOmitted === true;
        break;
      case 'chat.thinking':
        if (ended) return;
        m.status = 'streaming';
        m.thinking += p.delta || '';
        break;
      case 'chat.delta':
        if (ended) return;
        m.status = 'streaming';
        m.answer += p.delta || '';
        break;
      case 'chat.completed':
        m.status = 'completed';
        m.answer = typeof p.content === 'string' ? p.content : m.answer;
        if (typeof p.thinking === 'string') m.thinking = p.thinking;
        if (typeof p.model === 'string') m.model = p.model;
        m.usage = p.usage || null;
        if (!ended) this.hooks.announce('Answer complete.');
        break;
      case 'chat.failed':
        m.status = 'failed';
        m.error = p.error || { code: 'unknown', message: 'The answer failed.' };
        if (!ended) this.hooks.announce('The answer failed: ' + m.error.message);
        break;
      case 'chat.cancelled':
        m.status = 'cancelled';
        if (!ended) this.hooks.announce('Answer stopped.');
        break;
      default:
        return;
    }
    this.hooks.changed(m);
  }

  /**
   * chat.status: live only (the server never replays it), so its id is no place to resume from and
   * does not move lastEventId; one older than the newest event applied is stale and ignored.
   */
  applyStatus(p) {
    if (typeof p.eventId === 'string' && this.lastEventId && compareIds(p.eventId, this.lastEventId) <= 0) return;
    const m = this.messages.get(p.messageId);
    if (!m || hasEnded(m) || typeof p.detail !== 'string') return;
    m.statusDetail = p.detail;
    this.hooks.changed(m);
  }
}
