/*
 * The built-in chat page. Plain browser JavaScript, no build step; served with the app.
 *
 * Safety: user text is only ever set with textContent; model text goes through Markdown.renderMarkdown
 * (markdown.js), which escapes everything before adding its own fixed markup. The page's CSP allows
 * scripts from this origin only, so nothing inline runs either.
 *
 * Flow: a session (id, token and the token's expiry) lives in localStorage. Tokens expire: once less than
 * half of its life is left the page trades the token for a fresh one (on load, before every socket
 * (re)connection, and on a timer while it stays open). On load the page fetches the history, renders it
 * (an answer still streaming shows its partial text) and connects Socket.IO to /chat with the
 * history's lastEventId, so the answer continues exactly where the history ends. Every event carries
 * an eventId; the page remembers the highest one it has applied, ignores anything not newer, and
 * reconnects from it, so nothing is lost or shown twice.
 */
(function () {
  'use strict';

  var SESSION_KEY = 'ai-assistant.session';
  var THINK_KEY = 'ai-assistant.think';
  var FINAL = { completed: true, failed: true, cancelled: true };
  var EVENTS = [
    'chat.user_message',
    'chat.started',
    'chat.thinking',
    'chat.delta',
    'chat.completed',
    'chat.failed',
    'chat.cancelled',
    'chat.status',
  ];

  var $ = function (id) {
    return document.getElementById(id);
  };
  var els = {
    log: $('log'),
    scroller: $('scroller'),
    empty: $('empty'),
    state: $('state'),
    stateText: $('state-text'),
    think: $('think'),
    newChat: $('new-chat'),
    form: $('composer'),
    input: $('input'),
    send: $('send'),
    stop: $('stop'),
    banner: $('banner'),
    bannerText: $('banner-text'),
    bannerClose: $('banner-close'),
    announcer: $('announcer'),
  };

  /** Everything about the current conversation. Replaced as a whole by New chat. */
  var chat = null;
  var epoch = 0; // bumps on New chat: async work of an older conversation stops touching the page
  var sending = false;
  var pendingSend = null; // {content, clientMessageId} of a send whose ack never came (retry is idempotent)

  // ------------------------------------------------------------------------------------------
  // Small helpers
  // ------------------------------------------------------------------------------------------

  /** Compares stream ids "ms-seq" numerically. */
  function compareIds(a, b) {
    var pa = String(a).split('-');
    var pb = String(b).split('-');
    var d = Number(pa[0]) - Number(pb[0]);
    if (d !== 0) return d < 0 ? -1 : 1;
    d = Number(pa[1] || 0) - Number(pb[1] || 0);
    return d < 0 ? -1 : d > 0 ? 1 : 0;
  }

  /** An id for clientMessageId; crypto.getRandomValues works on plain-http LAN pages too. */
  function randomId() {
    var bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return 'web-' + Array.prototype.map.call(bytes, function (b) {
      return ('0' + b.toString(16)).slice(-2);
    }).join('');
  }

  function sleep(ms) {
    return new Promise(function (resolve) {
      setTimeout(resolve, ms);
    });
  }

  /** {sessionId, token, expiresAt?, issuedAt?}; entries saved before tokens expired lack the last two. */
  function readSession() {
    try {
      var s = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
      if (s && typeof s.sessionId === 'string' && typeof s.token === 'string') {
        return { sessionId: s.sessionId, token: s.token, expiresAt: s.expiresAt, issuedAt: s.issuedAt };
      }
    } catch (e) {
      /* a corrupt entry is replaced below */
    }
    return null;
  }

  function announce(text) {
    els.announcer.textContent = '';
    setTimeout(function () {
      els.announcer.textContent = text;
    }, 30);
  }

  // ------------------------------------------------------------------------------------------
  // Connection state and banner
  // ------------------------------------------------------------------------------------------

  var STATE_TEXT = { connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…', offline: 'Offline' };

  function setState(state, detail) {
    if (state !== 'offline' && navigator.onLine === false) state = 'offline';
    els.state.dataset.state = state;
    els.stateText.textContent = STATE_TEXT[state] + (detail ? ' ' + detail : '');
    els.state.title = STATE_TEXT[state] + (detail ? ' ' + detail : '');
    updateControls();
  }

  /**
   * Shows a message above the composer (rendered with Markdown.renderInline: `code` allowed, HTML escaped).
   * `kind`: 'info' for notices; 'connection' for problems that the next successful connection resolves.
   */
  function showBanner(text, kind) {
    els.banner.className = 'banner' + (kind === 'info' ? ' info' : '');
    els.banner.dataset.kind = kind || 'error';
    els.banner.setAttribute('role', kind === 'info' ? 'status' : 'alert');
    els.bannerText.innerHTML = Markdown.renderInline(text);
    els.banner.hidden = false;
  }

  function hideBanner() {
    els.banner.hidden = true;
    els.bannerText.textContent = '';
  }

  // ------------------------------------------------------------------------------------------
  // Messages: model and view
  // ------------------------------------------------------------------------------------------

  function newChatState(session) {
    return { session: session, messages: new Map(), lastEventId: null, socket: null, retryTimer: null, retries: 0, freshenTimer: null };
  }

  /** The message with this id, created (and appended to the log) when new. */
  function ensureMessage(messageId) {
    var m = chat.messages.get(messageId);
    if (m) return m;
    m = {
      id: messageId,
      user: null,
      answer: '',
      thinking: '',
      status: 'queued',
      attempt: 1,
      error: null,
      usage: null,
      // What the server says is happening while nothing streams (chat.status detail), or null.
      statusDetail: null,
      thinkingToggled: false,
      rendered: { answer: null, thinking: null },
      view: null,
      dirty: false,
    };
    var turn = document.createElement('article');
    turn.className = 'turn';
    turn.dataset.messageId = messageId;
    els.log.appendChild(turn);
    m.view = { turn: turn, user: null, assistant: null };
    chat.messages.set(messageId, m);
    els.empty.hidden = true;
    return m;
  }

  function buildUserView(m) {
    var el = document.createElement('div');
    el.className = 'msg user';
    var label = document.createElement('p');
    label.className = 'sr-only';
    label.textContent = 'You:';
    var text = document.createElement('div');
    text.className = 'user-text';
    el.append(label, text);
    m.view.turn.insertBefore(el, m.view.turn.firstChild);
    m.view.user = { el: el, text: text };
  }

  function buildAssistantView(m) {
    var el = document.createElement('div');
    el.className = 'msg assistant';
    var role = document.createElement('p');
    role.className = 'role';
    role.textContent = 'Assistant';
    var thinking = document.createElement('details');
    thinking.className = 'thinking';
    thinking.hidden = true;
    var summary = document.createElement('summary');
    var summaryLabel = document.createElement('span');
    summaryLabel.className = 'label';
    summaryLabel.textContent = 'Thinking';
    summary.appendChild(summaryLabel);
    var thinkingText = document.createElement('div');
    thinkingText.className = 'thinking-text';
    thinking.append(summary, thinkingText);
    // A click (or Enter/Space on the summary) means the person chose: stop opening/closing it for them.
    summary.addEventListener('click', function () {
      m.thinkingToggled = true;
    });
    var body = document.createElement('div');
    body.className = 'body';
    var meta = document.createElement('div');
    meta.className = 'meta';
    // A quiet line under the pending answer: why nothing streams yet (queued, model loading, retrying).
    var statusLine = document.createElement('div');
    statusLine.className = 'status-line';
    statusLine.hidden = true;
    var error = document.createElement('div');
    error.className = 'error-box';
    error.hidden = true;
    el.append(role, thinking, body, meta, statusLine, error);
    m.view.turn.appendChild(el);
    m.view.assistant = {
      el: el,
      thinking: thinking,
      summaryLabel: summaryLabel,
      thinkingText: thinkingText,
      body: body,
      meta: meta,
      statusLine: statusLine,
      error: error,
    };
  }

  // Renders are batched per animation frame; a very long answer (slow to re-render) is re-rendered
  // less often, so the page stays responsive while it streams.
  var renderQueued = false;
  var nextRenderAt = 0;
  function scheduleRender(m) {
    m.dirty = true;
    if (renderQueued) return;
    renderQueued = true;
    var wait = nextRenderAt - performance.now();
    if (wait > 0) setTimeout(function () { requestAnimationFrame(flushRender); }, wait);
    else requestAnimationFrame(flushRender);
  }

  function flushRender() {
    renderQueued = false;
    if (!chat) return;
    var began = performance.now();
    var stick = isNearBottom();
    chat.messages.forEach(function (m) {
      if (m.dirty) renderMessage(m);
    });
    updateControls();
    if (stick) scrollToBottom();
    var took = performance.now() - began;
    nextRenderAt = performance.now() + (took > 8 ? Math.min(took * 3, 500) : 0);
  }

  function renderMessage(m) {
    m.dirty = false;
    if (m.user !== null) {
      if (!m.view.user) buildUserView(m);
      if (m.view.user.text.textContent !== m.user) m.view.user.text.textContent = m.user;
    }
    // The assistant part appears as soon as the message is accepted (a "waiting" line) or has a reply.
    if (!m.view.assistant) buildAssistantView(m);
    var v = m.view.assistant;
    var active = !FINAL[m.status];
    v.el.dataset.status = m.status;
    v.el.setAttribute('aria-busy', active ? 'true' : 'false');

    // Thinking: live while it streams, folded away once the answer begins (unless the person chose).
    if (m.thinking) {
      v.thinking.hidden = false;
      if (m.rendered.thinking !== m.thinking) {
        var t = v.thinkingText;
        var atEnd = t.scrollTop + t.clientHeight >= t.scrollHeight - 8;
        t.textContent = m.thinking;
        if (atEnd) t.scrollTop = t.scrollHeight;
        m.rendered.thinking = m.thinking;
      }
      var thinkingLive = active && m.status === 'streaming' && !m.answer;
      v.thinking.classList.toggle('live', thinkingLive);
      v.summaryLabel.textContent = thinkingLive ? 'Thinking…' : 'Thought process';
      if (!m.thinkingToggled) v.thinking.open = thinkingLive;
    } else {
      v.thinking.hidden = true;
      v.thinkingText.textContent = '';
      m.rendered.thinking = '';
    }

    if (m.rendered.answer !== m.answer) {
      v.body.innerHTML = Markdown.renderMarkdown(m.answer);
      m.rendered.answer = m.answer;
    }

    var meta = '';
    if (m.status === 'queued') meta = 'Waiting for the model…';
    else if (m.status === 'streaming' && m.attempt > 1) meta = 'Retrying (attempt ' + m.attempt + ')…';
    else if (m.status === 'streaming' && !m.answer && !m.thinking) meta = 'Starting…';
    else if (m.status === 'cancelled') meta = m.answer ? 'Stopped — the answer above is incomplete.' : 'Stopped.';
    else if (m.status === 'completed' && m.usage) meta = m.usage.completionTokens + ' tokens';
    if (v.meta.textContent !== meta) v.meta.textContent = meta;

    var statusText = active && m.statusDetail ? m.statusDetail : '';
    if (v.statusLine.textContent !== statusText) v.statusLine.textContent = statusText;
    v.statusLine.hidden = !statusText;

    if (m.status === 'failed') {
      v.error.hidden = false;
      var error = m.error || { code: 'unknown', message: 'No reason was recorded.' };
      var key = error.code + '\u0000' + error.message;
      if (v.error.dataset.key !== key) {
        v.error.dataset.key = key;
        v.error.innerHTML =
          '<p class="error-title">The answer failed</p><div class="error-message">' +
          Markdown.renderInline(error.message || 'Unknown error') +
          '</div><div class="error-code">code: ' + Markdown.escapeHtml(error.code || 'unknown') + '</div>';
      }
    } else if (!v.error.hidden) {
      v.error.hidden = true;
      v.error.textContent = '';
      delete v.error.dataset.key;
    }
  }

  function isNearBottom() {
    var s = els.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
  }

  function scrollToBottom() {
    els.scroller.scrollTop = els.scroller.scrollHeight;
  }

  function activeMessages() {
    var ids = [];
    if (!chat) return ids;
    chat.messages.forEach(function (m) {
      if (!FINAL[m.status]) ids.push(m.id);
    });
    return ids;
  }

  function updateControls() {
    var connected = !!(chat && chat.socket && chat.socket.connected);
    els.stop.disabled = !connected || activeMessages().length === 0;
    // The label stays "Send" (a wider label would reflow the message box while it is measured).
    els.send.disabled = sending || !chat;
    els.send.setAttribute('aria-busy', sending ? 'true' : 'false');
  }

  // ------------------------------------------------------------------------------------------
  // Applying history and events
  // ------------------------------------------------------------------------------------------

  function applyHistory(history) {
    chat.messages.clear();
    els.log.textContent = '';
    (history.messages || []).forEach(function (h) {
      var m = ensureMessage(h.messageId);
      m.status = h.status || m.status;
      if (h.role === 'user') {
        m.user = h.content;
      } else {
        m.answer = h.content || '';
        m.thinking = h.thinking || '';
        if (h.error) m.error = h.error;
      }
      scheduleRender(m);
    });
    chat.lastEventId = history.lastEventId || null;
    els.empty.hidden = chat.messages.size > 0;
    flushRender();
    scrollToBottom();
  }

  function onEvent(type, p) {
    if (!chat || !p || p.sessionId !== chat.session.sessionId || typeof p.messageId !== 'string') return;
    if (type === 'chat.status') {
      onStatus(p);
      return;
    }
    if (typeof p.eventId === 'string') {
      // Dedup: ids only grow within a session; anything at or below the newest applied one is a copy.
      if (chat.lastEventId && compareIds(p.eventId, chat.lastEventId) <= 0) return;
      chat.lastEventId = p.eventId;
    }
    var m = ensureMessage(p.messageId);
    var ended = !!FINAL[m.status];
    // Whatever the status line said is over once the message moves on.
    if (type !== 'chat.user_message') m.statusDetail = null;
    switch (type) {
      case 'chat.user_message':
        m.user = typeof p.content === 'string' ? p.content : m.user;
        break;
      case 'chat.started':
        if (ended) return;
        m.status = 'streaming';
        m.attempt = p.attempt || 1;
        // A new attempt replaces whatever the previous one had shown.
        m.answer = '';
        m.thinking = '';
        m.error = null;
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
        m.usage = p.usage || null;
        if (!ended) announce('Answer complete.');
        break;
      case 'chat.failed':
        m.status = 'failed';
        m.error = p.error || { code: 'unknown', message: 'The answer failed.' };
        if (!ended) announce('The answer failed: ' + m.error.message);
        break;
      case 'chat.cancelled':
        m.status = 'cancelled';
        if (!ended) announce('Answer stopped.');
        break;
      default:
        return;
    }
    scheduleRender(m);
  }

  /**
   * chat.status: live only (the server never replays it), so its id is no place to resume from and
   * does not move lastEventId; one older than the newest event applied is stale and ignored.
   */
  function onStatus(p) {
    if (typeof p.eventId === 'string' && chat.lastEventId && compareIds(p.eventId, chat.lastEventId) <= 0) return;
    var m = chat.messages.get(p.messageId);
    if (!m || FINAL[m.status] || typeof p.detail !== 'string') return;
    m.statusDetail = p.detail;
    scheduleRender(m);
  }

  // ------------------------------------------------------------------------------------------
  // HTTP: session and history
  // ------------------------------------------------------------------------------------------

  async function readError(res) {
    try {
      var body = await res.json();
      if (body && body.message) return String(body.message);
    } catch (e) {
      /* not JSON */
    }
    return 'HTTP ' + res.status;
  }

  /** Retries with growing pauses while the server is unreachable; resolves unless `myEpoch` is outdated. */
  async function withRetry(what, myEpoch, attempt) {
    for (var i = 0; ; i++) {
      try {
        return await attempt();
      } catch (err) {
        if (myEpoch !== epoch) throw err;
        if (err && err.final) throw err;
        var wait = Math.min(1000 * Math.pow(2, i), 10000);
        setState(navigator.onLine === false ? 'offline' : 'reconnecting');
        showBanner('Could not ' + what + ': ' + (err && err.message ? err.message : 'the server is unreachable') + '. Retrying in ' + Math.round(wait / 1000) + ' s…', 'connection');
        await sleep(wait);
        if (myEpoch !== epoch) throw err;
      }
    }
  }

  /** `issuedAt` is this browser's clock when the token arrived: with expiresAt it gives the token's life. */
  function saveSession(session) {
    localStorage.setItem(
      SESSION_KEY,
      JSON.stringify({ sessionId: session.sessionId, token: session.token, expiresAt: session.expiresAt, issuedAt: session.issuedAt }),
    );
  }

  async function createSession(myEpoch) {
    return withRetry('start a conversation', myEpoch, async function () {
      var res = await fetch('/sessions', { method: 'POST' });
      if (res.status !== 201 && res.status !== 200) throw new Error(await readError(res));
      var s = await res.json();
      var session = { sessionId: s.sessionId, token: s.token, expiresAt: s.expiresAt, issuedAt: Date.now() };
      saveSession(session);
      return session;
    });
  }

  /** When the token is past half its life (ms since epoch), or null when unknown (an entry from before expiry). */
  function halfLifeOf(session) {
    var expires = Date.parse(session.expiresAt);
    if (!isFinite(expires) || typeof session.issuedAt !== 'number') return null;
    return session.issuedAt + (expires - session.issuedAt) / 2;
  }

  /**
   * Trades the token for a fresh one (POST /sessions/:id/token) once less than half of its life is
   * left, updating `session` in place so every holder sees it. Never fails: on any problem the current
   * token is kept, as it is still good for a while; a token the server refuses shows up where it is
   * used, and that path starts a new conversation (sessionLost, or the history check on load).
   */
  function freshen(session) {
    var half = halfLifeOf(session);
    if (half === null || Date.now() < half) return Promise.resolve();
    // Another tab may have refreshed it already.
    var stored = readSession();
    if (stored && stored.sessionId === session.sessionId && Date.parse(stored.expiresAt) > Date.parse(session.expiresAt)) {
      session.token = stored.token;
      session.expiresAt = stored.expiresAt;
      session.issuedAt = stored.issuedAt;
      if (halfLifeOf(session) !== null && Date.now() < halfLifeOf(session)) return Promise.resolve();
    }
    if (session.refreshing) return session.refreshing;
    session.refreshing = (async function () {
      try {
        var res = await fetch('/sessions/' + encodeURIComponent(session.sessionId) + '/token', {
          method: 'POST',
          headers: { Authorization: 'Bearer ' + session.token },
          // The socket's connection waits for this: a server that does not answer must not hold it.
          signal: typeof AbortSignal.timeout === 'function' ? AbortSignal.timeout(10000) : undefined,
        });
        if (res.status !== 201) return;
        var s = await res.json();
        if (!s || s.sessionId !== session.sessionId || typeof s.token !== 'string') return;
        session.token = s.token;
        session.expiresAt = s.expiresAt;
        session.issuedAt = Date.now();
        // Only while this conversation is still the one kept (New chat in another tab replaces it).
        var current = readSession();
        if (!current || current.sessionId === session.sessionId) saveSession(session);
      } catch (e) {
        /* offline or the server is away: keep the current token */
      } finally {
        session.refreshing = null;
      }
    })();
    return session.refreshing;
  }

  /**
   * Checks again at the token's half-life while the page stays open. At least 10 s apart (a failed
   * reissue is retried, not hammered); at most 6 h (browsers fire longer timers at once).
   */
  function scheduleFreshen(c) {
    clearTimeout(c.freshenTimer);
    var half = halfLifeOf(c.session);
    if (half === null) return;
    var wait = Math.min(Math.max(half - Date.now(), 10000), 6 * 3600 * 1000);
    c.freshenTimer = setTimeout(function () {
      if (c !== chat) return;
      freshen(c.session).then(function () {
        if (c === chat) scheduleFreshen(c);
      });
    }, wait);
  }

  /** The history, or null when the server no longer knows this session (401/403/404; 400: a malformed stored id). */
  async function fetchHistory(session, myEpoch) {
    return withRetry('load the conversation', myEpoch, async function () {
      var res = await fetch('/chat/' + encodeURIComponent(session.sessionId) + '/history', {
        headers: { Authorization: 'Bearer ' + session.token },
        cache: 'no-store',
      });
      if (res.status === 400 || res.status === 401 || res.status === 403 || res.status === 404) return null;
      if (!res.ok) throw new Error(await readError(res));
      return res.json();
    });
  }

  // ------------------------------------------------------------------------------------------
  // Socket.IO
  // ------------------------------------------------------------------------------------------

  function connect() {
    var c = chat;
    var socket = io('/chat', {
      // Called on every (re)connection: a token past half its life is renewed first, and the socket
      // always resumes after the newest event applied so far.
      auth: function (cb) {
        freshen(c.session).then(function () {
          cb({ sessionId: c.session.sessionId, token: c.session.token, lastEventId: c.lastEventId || '0-0' });
        });
      },
    });
    c.socket = socket;
    socket.on('connect', function () {
      c.retries = 0;
      setState('connected');
      if (!els.banner.hidden && els.banner.dataset.kind === 'connection') hideBanner();
    });
    socket.on('disconnect', function (reason) {
      if (c !== chat) return;
      if (reason === 'io client disconnect') return;
      setState('reconnecting');
      // The server closed it (restart, shutdown): socket.io does not retry by itself in that case.
      if (reason === 'io server disconnect') retryLater(c);
    });
    socket.on('connect_error', function (err) {
      if (c !== chat) return;
      if (socket.active) {
        setState('reconnecting'); // a transport problem: socket.io retries by itself
        return;
      }
      var reason = err && err.message;
      if (reason === 'unauthorized') {
        sessionLost(c);
      } else if (reason === 'invalid lastEventId') {
        resync(c);
      } else {
        setState('reconnecting');
        if (reason === 'unavailable') showBanner('The server is restarting or cannot reach Redis; reconnecting…', 'connection');
        retryLater(c);
      }
    });
    socket.io.on('reconnect_attempt', function () {
      if (c === chat) setState('reconnecting');
    });
    EVENTS.forEach(function (type) {
      socket.on(type, function (payload) {
        if (c === chat) onEvent(type, payload);
      });
    });
    socket.on('chat.resync', function () {
      if (c === chat) resync(c);
    });
  }

  function retryLater(c) {
    clearTimeout(c.retryTimer);
    var wait = Math.min(1000 * Math.pow(2, c.retries++), 10000);
    c.retryTimer = setTimeout(function () {
      if (c === chat && c.socket && !c.socket.connected) c.socket.connect();
    }, wait);
  }

  /** Events were lost (the server no longer keeps them): reload the history and resume from it. */
  async function resync(c) {
    if (c.resyncing) return;
    c.resyncing = true;
    try {
      c.socket.disconnect();
      setState('reconnecting');
      var history = await fetchHistory(c.session, epoch);
      if (c !== chat) return;
      if (!history) return sessionLost(c);
      applyHistory(history);
      c.socket.connect();
    } catch (e) {
      /* a newer conversation took over */
    } finally {
      c.resyncing = false;
    }
  }

  /** The token is refused: if the history confirms it, this conversation is gone; start a new one. */
  async function sessionLost(c) {
    var history = null;
    try {
      history = await fetchHistory(c.session, epoch);
    } catch (e) {
      return;
    }
    if (c !== chat) return;
    if (history) {
      retryLater(c); // the token works over HTTP: a passing problem
      return;
    }
    await startChat({ forgetSession: true, notice: 'The server no longer knows your previous conversation, so a new one was started.' });
  }

  // ------------------------------------------------------------------------------------------
  // Starting, sending, stopping
  // ------------------------------------------------------------------------------------------

  function teardown() {
    if (!chat) return;
    clearTimeout(chat.retryTimer);
    clearTimeout(chat.freshenTimer);
    if (chat.socket) {
      chat.socket.removeAllListeners();
      chat.socket.io.removeAllListeners();
      chat.socket.disconnect();
    }
    chat = null;
  }

  async function startChat(options) {
    options = options || {};
    var myEpoch = ++epoch;
    teardown();
    if (options.forgetSession) localStorage.removeItem(SESSION_KEY);
    els.log.textContent = '';
    els.empty.hidden = false;
    pendingSend = null;
    sending = false; // an ack still owed to the previous conversation no longer matters
    setState('connecting');
    try {
      var session = readSession() || (await createSession(myEpoch));
      await freshen(session);
      if (myEpoch !== epoch) return;
      var history = await fetchHistory(session, myEpoch);
      if (myEpoch !== epoch) return;
      if (!history) {
        session = await createSession(myEpoch);
        history = { messages: [], lastEventId: null };
        options.notice = options.notice || 'Your previous conversation is no longer on the server, so a new one was started.';
      }
      if (myEpoch !== epoch) return;
      chat = newChatState(session);
      applyHistory(history);
      if (options.notice) showBanner(options.notice, 'info');
      else hideBanner();
      connect();
      scheduleFreshen(chat);
      updateControls();
    } catch (e) {
      if (myEpoch === epoch) showBanner('Could not start: ' + (e && e.message ? e.message : String(e)));
    }
  }

  function describeAckError(error) {
    var status = error && error.statusCode;
    var message = (error && error.message) || 'unknown error';
    if (status === 429) return 'Slow down: ' + message + '. Wait a moment, then send again.';
    if (status === 503) return 'The server is busy: ' + message + '.';
    if (status === 400) return 'The message was not accepted: ' + message + '.';
    if (status === 401 || status === 403) return 'Your session is no longer valid: ' + message + '. Start a new chat.';
    return 'Sending failed: ' + message + (status ? ' (' + status + ')' : '') + '.';
  }

  function send() {
    var content = els.input.value;
    if (!content.trim() || sending || !chat || !chat.socket) return;
    var c = chat;
    if (!pendingSend || pendingSend.content !== content) pendingSend = { content: content, clientMessageId: randomId() };
    var payload = { content: content, think: els.think.value, clientMessageId: pendingSend.clientMessageId };
    sending = true;
    updateControls();
    c.socket.timeout(20000).emit('chat.send', payload, function (err, ack) {
      if (c !== chat) return;
      sending = false;
      if (err) {
        // No answer: it may or may not have arrived. Sending again reuses the clientMessageId, so no duplicate.
        showBanner('The server did not confirm the message (connection problem). Press Send to try again; it will not be sent twice.');
        updateControls();
        return;
      }
      pendingSend = null;
      updateControls();
      if (!ack || ack.error || typeof ack.messageId !== 'string') {
        showBanner(describeAckError(ack && ack.error));
        updateControls();
        return;
      }
      hideBanner();
      if (els.input.value === content) {
        els.input.value = '';
        autosize();
      }
      var m = ensureMessage(ack.messageId);
      if (m.user === null) m.user = content;
      scheduleRender(m);
      requestAnimationFrame(scrollToBottom);
    });
  }

  function stop() {
    if (!chat || !chat.socket) return;
    var ids = activeMessages();
    ids.forEach(function (messageId) {
      chat.socket.timeout(10000).emit('chat.cancel', { messageId: messageId }, function (err, ack) {
        if (err) showBanner('Could not stop the answer: the server did not respond.');
        else if (ack && ack.error && ack.error.statusCode !== 404) showBanner('Could not stop the answer: ' + ack.error.message);
      });
    });
  }

  function newChat() {
    // The old conversation cannot be reopened from this page: stop what it is still generating.
    if (chat && chat.socket && chat.socket.connected) {
      activeMessages().forEach(function (messageId) {
        chat.socket.emit('chat.cancel', { messageId: messageId });
      });
    }
    hideBanner();
    startChat({ forgetSession: true }).then(function () {
      els.input.focus();
    });
  }

  // ------------------------------------------------------------------------------------------
  // Wiring
  // ------------------------------------------------------------------------------------------

  function autosize() {
    els.input.style.height = 'auto';
    els.input.style.height = Math.min(els.input.scrollHeight + 2, window.innerHeight * 0.4) + 'px';
  }

  els.form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    send();
  });
  els.input.addEventListener('keydown', function (ev) {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      send();
    }
  });
  els.input.addEventListener('input', autosize);
  window.addEventListener('resize', autosize);
  document.addEventListener('keydown', function (ev) {
    if (ev.key === 'Escape' && !els.stop.disabled) {
      ev.preventDefault();
      stop();
    }
  });
  els.stop.addEventListener('click', stop);
  els.newChat.addEventListener('click', newChat);
  els.bannerClose.addEventListener('click', hideBanner);

  var savedThink = localStorage.getItem(THINK_KEY);
  if (savedThink === 'low' || savedThink === 'medium' || savedThink === 'high') els.think.value = savedThink;
  els.think.addEventListener('change', function () {
    localStorage.setItem(THINK_KEY, els.think.value);
  });

  // Copy buttons of code blocks (the markup comes from markdown.js).
  els.log.addEventListener('click', function (ev) {
    var button = ev.target.closest && ev.target.closest('button.copy');
    if (!button) return;
    var block = button.closest('.codeblock');
    var code = block && block.querySelector('code');
    if (!code) return;
    var text = code.textContent;
    var done = function (ok) {
      button.textContent = ok ? 'Copied' : 'Copy failed';
      setTimeout(function () {
        button.textContent = 'Copy';
      }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(false); });
    } else {
      // Plain-http LAN pages have no async clipboard: fall back to a selection copy.
      var area = document.createElement('textarea');
      area.value = text;
      area.setAttribute('readonly', '');
      area.style.position = 'fixed';
      area.style.opacity = '0';
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try {
        ok = document.execCommand('copy');
      } catch (e) {
        ok = false;
      }
      area.remove();
      done(ok);
    }
  });

  window.addEventListener('offline', function () {
    setState('offline');
  });
  window.addEventListener('online', function () {
    if (!chat || !chat.socket) return;
    if (chat.socket.connected) setState('connected');
    else {
      setState('reconnecting');
      chat.socket.connect();
    }
  });

  startChat();
})();
