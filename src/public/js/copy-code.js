/*
 * Copy buttons of code blocks (the buttons come with the code blocks from markdown.js; one listener
 * on the log serves them all, including blocks rendered later).
 */

export function enableCopyButtons(log) {
  log.addEventListener('click', (ev) => {
    const copy = ev.target instanceof Element ? ev.target.closest('button.copy') : null;
    const block = copy && copy.closest('.codeblock');
    const code = block && block.querySelector('code');
    if (!code) return;
    copyText(code.textContent).then((ok) => {
      copy.textContent = ok ? 'Copied' : 'Copy failed';
      setTimeout(() => (copy.textContent = 'Copy'), 1500);
    });
  });
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      return false;
    }
  }
  // Plain-http LAN pages have no async clipboard: fall back to a selection copy.
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}
