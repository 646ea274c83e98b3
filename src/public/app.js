// All text is inserted with textContent: model or user text is never interpreted as HTML.
const $ = (id) => document.getElementById(id);
const views = new Map();

async function session() {
  const saved = JSON.parse(localStorage.getItem('ai-assistant.session') || 'null');
  if (saved) return saved;
  const res = await fetch('/sessions', { method: 'POST' });
  const created = await res.json();
  localStorage.setItem('ai-assistant.session', JSON.stringify(created));
  return created;
}

function bubble(messageId, role) {
  const key = messageId + ':' + role;
  if (views.has(key)) return views.get(key);
  const el = document.createElement('div');
  el.className = 'msg ' + role;
  const thinking = document.createElement('details');
  thinking.innerHTML = '<summary>thinking</summary>';
  const thinkingText = document.createElement('div');
  thinking.append(thinkingText);
  thinking.hidden = true;
  const body = document.createElement('div');
  body.className = 'body';
  el.append(thinking, body);
  $('log').append(el);
  const view = { el, body, thinking, thinkingText };
  views.set(key, view);
  return view;
}

function scroll() { $('log').scrollTop = $('log').scrollHeight; }

(async () => {
  const s = await session();
  const headers = { Authorization: 'Bearer ' + s.token };
  const history = await fetch('/chat/' + s.sessionId + '/history', { headers }).then((r) => r.json());
  for (const m of history.messages || []) {
    const v = bubble(m.messageId, m.role);
    v.body.textContent = m.content || (m.error ? m.error.message : '');
    if (m.thinking) { v.thinking.hidden = false; v.thinkingText.textContent = m.thinking; }
    if (m.status === 'failed' && m.role === 'assistant') v.el.classList.add('failed');
  }
  scroll();

  const socket = io('/chat', { auth: { sessionId: s.sessionId, token: s.token } });
  socket.on('connect', () => ($('state').textContent = 'connected'));
  socket.on('disconnect', () => ($('state').textContent = 'reconnecting…'));
  socket.on('connect_error', (e) => ($('state').textContent = 'error: ' + e.message));
  socket.on('chat.user_message', (e) => { bubble(e.messageId, 'user').body.textContent = e.content; scroll(); });
  socket.on('chat.started', (e) => { const v = bubble(e.messageId, 'assistant'); v.body.textContent = ''; v.thinkingText.textContent = ''; v.el.classList.remove('failed'); });
  socket.on('chat.thinking', (e) => { const v = bubble(e.messageId, 'assistant'); v.thinking.hidden = false; v.thinkingText.textContent += e.delta; scroll(); });
  socket.on('chat.delta', (e) => { bubble(e.messageId, 'assistant').body.textContent += e.delta; scroll(); });
  socket.on('chat.completed', (e) => { bubble(e.messageId, 'assistant').body.textContent = e.content; scroll(); });
  socket.on('chat.failed', (e) => { const v = bubble(e.messageId, 'assistant'); v.el.classList.add('failed'); v.body.textContent = e.error.message; scroll(); });

  $('form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const content = $('input').value;
    if (!content.trim()) return;
    socket.emit('chat.send', { content, think: $('think').value }, (ack) => {
      if (ack && ack.error) alert(ack.error.message); else $('input').value = '';
    });
  });
  $('input').addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); $('form').requestSubmit(); } });
  $('new').addEventListener('click', () => { localStorage.removeItem('ai-assistant.session'); location.reload(); });
})().catch((e) => ($('state').textContent = 'error: ' + e.message));
