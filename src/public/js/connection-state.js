/* The connection pill in the top bar: connecting, connected, reconnecting, offline. */

const pill = document.getElementById('state');
const pillText = document.getElementById('state-text');

const TEXT = { connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…', offline: 'Offline' };

export function setConnectionState(state, detail) {
  // A browser that knows it is offline says so, whatever the socket thinks it is doing.
  if (state !== 'offline' && navigator.onLine === false) state = 'offline';
  const text = TEXT[state] + (detail ? ' ' + detail : '');
  pill.dataset.state = state;
  pillText.textContent = text;
  pill.title = text;
}
