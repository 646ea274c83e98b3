/*
 * One open conversation: its session credentials, its messages (Conversation) and its live
 * connection. open() loads the history (an answer still streaming shows its partial text) and
 * connects with the history's lastEventId, so the answer continues exactly where the history ends.
 * close() stops everything it started: nothing of a closed session touches the page again.
 *
 * `hooks`: the Conversation's (see conversation.js) plus connection(state, detail?),
 * waiting(what, err, ms) (an HTTP call is being retried) and lost() (the server no longer knows the
 * session: the token is refused and the history confirms it).
 */
import { fetchHistory } from './api.js';
import { Conversation } from './conversation.js';
import { randomId } from './ids.js';
import { retrying } from './retry.js';
import { NoAck, openSocket } from './socket.js';
import { freshen, keepFresh } from './tokens.js';

/** The server answered a command with {error: {statusCode, message}}. */
export class Refused extends Error {
  constructor(error) {
    super((error && error.message) || 'unknown error');
    this.statusCode = error && error.statusCode;
  }
}

export { NoAck };

export class ChatSession {
  constructor(entry, hooks) {
    this.hooks = hooks;
    this.session = {
      sessionId: entry.sessionId,
      token: entry.token,
      tokenExpiresAt: entry.tokenExpiresAt,
      tokenIssuedAt: entry.tokenIssuedAt,
    };
    this.conv = new Conversation(entry.sessionId, hooks);
    this.socket = null;
    this.closed = false;
    this.resyncing = false;
    this.stopFreshening = () => {};
    /** The command whose acknowledgement never came: sent again, it reuses its clientMessageId (no duplicate). */
    this.unconfirmed = null;
  }

  get sessionId() {
    return this.session.sessionId;
  }

  get connected() {
    return !!this.socket && this.socket.connected;
  }

  /** Whether commands can be sent (the history is loaded and the socket exists; a disconnected socket buffers them). */
  get ready() {
    return !!this.socket && !this.closed;
  }

  /** Loads the history and connects. Answers false when the server no longer knows the session. */
  async open() {
    await freshen(this.session);
    const history = await this.history();
    if (this.closed) return true;
    if (!history) return false;
    this.conv.loadHistory(history);
    this.connect();
    this.stopFreshening = keepFresh(this.session, () => !this.closed);
    return true;
  }

  close() {
    this.closed = true;
    this.stopFreshening();
    if (this.socket) this.socket.close();
  }

  /** The history (null: the session is gone), retried while the server is unreachable. */
  history() {
    return retrying(() => fetchHistory(this.session.sessionId, this.session.token), {
      stillWanted: () => !this.closed,
      waiting: (err, ms) => this.hooks.waiting('load the conversation', err, ms),
    }).catch((err) => {
      if (this.closed) return null;
      throw err;
    });
  }

  connect() {
    const auth = async () => {
      // Every (re)connection: a token past half its life is renewed first, and the socket resumes
      // after the newest event applied so far.
      await freshen(this.session);
      return { sessionId: this.sessionId, token: this.session.token, lastEventId: this.conv.lastEventId || '0-0' };
    };
    this.socket = openSocket(auth, {
      event: (type, payload) => this.conv.apply(type, payload),
      connected: () => this.hooks.connection('connected'),
      reconnecting: (detail) => this.hooks.connection('reconnecting', detail),
      unauthorized: () => this.checkLost(),
      resync: () => this.resync(),
    });
  }

  /** The browser is back online: reconnect now rather than at the next back-off step. */
  reconnectNow() {
    if (!this.socket || this.closed) return;
    if (this.socket.connected) this.hooks.connection('connected');
    else {
      this.hooks.connection('reconnecting');
      this.socket.connect();
    }
  }

  /** Events were lost (the server no longer keeps them): reload the history and resume from it. */
  async resync() {
    if (this.resyncing) return;
    this.resyncing = true;
    try {
      this.socket.disconnect();
      this.hooks.connection('reconnecting');
      const history = await this.history();
      if (this.closed) return;
      if (!history) return this.hooks.lost();
      this.conv.loadHistory(history);
      this.socket.connect();
    } finally {
      this.resyncing = false;
    }
  }

  /** The token was refused: lost only if the history confirms it, else a passing problem (retry). */
  async checkLost() {
    const history = await this.history();
    if (this.closed) return;
    if (!history) return this.hooks.lost();
    setTimeout(() => this.closed || this.socket.connected || this.socket.connect(), 2000);
  }

  /** Sends a question. Answers its messageId; throws Refused or NoAck. */
  async send(content, options) {
    const ack = await this.command('chat.send', 'send\u0000' + content, { content, ...options });
    this.conv.replace(null, ack.messageId, content);
    return ack.messageId;
  }

  /** Asks again for the answer to the last message (it must have ended); its question stays. */
  async regenerate(messageId, options) {
    const old = this.conv.messages.get(messageId);
    const ack = await this.command('chat.regenerate', 'regenerate\u0000' + messageId, { messageId, ...options });
    this.conv.replace(messageId, ack.messageId, old ? old.user : undefined);
    return ack.messageId;
  }

  /** Replaces the last message's question (it must have ended) with `content` and asks for a new answer. */
  async edit(messageId, content, options) {
    const ack = await this.command('chat.edit', 'edit\u0000' + messageId + '\u0000' + content, { messageId, content, ...options });
    this.conv.replace(messageId, ack.messageId, content);
    return ack.messageId;
  }

  /**
   * Emits a command that creates a message and waits for its acknowledgement. The same command
   * repeated after a missing acknowledgement carries the same clientMessageId, so the server
   * queues it once whichever of the two arrived.
   */
  async command(name, key, payload) {
    if (!this.unconfirmed || this.unconfirmed.key !== key) this.unconfirmed = { key, clientMessageId: randomId() };
    const { clientMessageId } = this.unconfirmed;
    if (!this.ready) throw new NoAck(name);
    let ack;
    try {
      ack = await this.socket.request(name, { ...payload, clientMessageId });
    } catch (err) {
      throw err instanceof NoAck ? err : new NoAck(name);
    }
    if (this.unconfirmed && this.unconfirmed.key === key) this.unconfirmed = null;
    if (!ack || ack.error || typeof ack.messageId !== 'string') throw new Refused(ack && ack.error);
    return ack;
  }

  /** Stops the answers still being written. Answers what went wrong, as texts for the person (empty when all went well). */
  async cancelActive() {
    if (!this.ready) return [];
    const results = await Promise.all(
      this.conv.active().map((messageId) =>
        this.socket.request('chat.cancel', { messageId }, 10000).then(
          (ack) => (ack && ack.error && ack.error.statusCode !== 404 ? 'Could not stop the answer: ' + ack.error.message : null),
          () => 'Could not stop the answer: the server did not respond.',
        ),
      ),
    );
    return results.filter(Boolean);
  }
}
