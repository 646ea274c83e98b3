/*
 * The Socket.IO connection of the open chat (namespace /chat; `io` is the global that
 * /socket.io/socket.io.js defines). Every (re)connection asks `auth()` for the handshake, so it
 * always carries a fresh token and resumes after the newest event applied so far (lastEventId): the
 * server replays what came after, then goes on live, without gap or repeat.
 */

/** Server → client events the page applies (chat.status is live-only, see conversation.js). */
const SERVER_EVENTS = [
  'chat.user_message',
  'chat.started',
  'chat.thinking',
  'chat.delta',
  'chat.completed',
  'chat.failed',
  'chat.cancelled',
  'chat.status',
  'chat.title',
];

/** Thrown by request() when the server does not acknowledge in time: it may or may not have acted. */
export class NoAck extends Error {}

/**
 * Opens the connection. `on`: {event(type, payload), connected(), reconnecting(why?), unauthorized(),
 * resync()}: unauthorized when the server refuses the token, resync when the events after our
 * lastEventId are gone (reload the history, then resume from it).
 */
export function openSocket(auth, on) {
  let retries = 0;
  let retryTimer = null;
  const socket = io('/chat', { auth: (cb) => auth().then(cb) });

  // The server closed it, or refused it for a reason that may pass: socket.io does not retry by itself then.
  const retryLater = () => {
    clearTimeout(retryTimer);
    const wait = Math.min(1000 * 2 ** retries++, 10000);
    retryTimer = setTimeout(() => socket.connected || socket.connect(), wait);
  };

  socket.on('connect', () => {
    retries = 0;
    on.connected();
  });
  socket.on('disconnect', (reason) => {
    if (reason === 'io client disconnect') return;
    on.reconnecting();
    if (reason === 'io server disconnect') retryLater();
  });
  socket.on('connect_error', (err) => {
    if (socket.active) return on.reconnecting(); // a transport problem: socket.io retries by itself
    const reason = err && err.message;
    if (reason === 'unauthorized') return on.unauthorized();
    if (reason === 'invalid lastEventId') return on.resync();
    on.reconnecting(reason === 'unavailable' ? 'The server is restarting or cannot reach Redis; reconnecting…' : undefined);
    retryLater();
  });
  socket.io.on('reconnect_attempt', () => on.reconnecting());
  for (const type of SERVER_EVENTS) socket.on(type, (payload) => on.event(type, payload));
  socket.on('chat.resync', () => on.resync());

  return {
    get connected() {
      return socket.connected;
    },
    /** Emits and waits for the acknowledgement; rejects with NoAck when none comes in time. */
    request(name, payload, timeoutMs = 20000) {
      return new Promise((resolve, reject) => {
        socket.timeout(timeoutMs).emit(name, payload, (err, ack) => (err ? reject(new NoAck(name)) : resolve(ack)));
      });
    },
    connect: () => socket.connect(),
    disconnect: () => socket.disconnect(),
    /** For good: no listener of this connection runs again. */
    close() {
      clearTimeout(retryTimer);
      socket.removeAllListeners();
      socket.io.removeAllListeners();
      socket.disconnect();
    },
  };
}
