/*
 * The banner above the composer, and the screen-reader announcer. Banner text goes through
 * renderInline (markdown.js): `code` is shown as code, any HTML is escaped.
 */
import { renderInline } from './markdown.js';

const banner = document.getElementById('banner');
const bannerText = document.getElementById('banner-text');
const announcer = document.getElementById('announcer');

document.getElementById('banner-close').addEventListener('click', hideBanner);

/**
 * `kind`: 'error' (default); 'info' for notices; 'connection' for problems that the next successful
 * connection resolves (hideConnectionBanner clears only those).
 */
export function showBanner(text, kind = 'error') {
  banner.className = 'banner' + (kind === 'info' ? ' info' : '');
  banner.dataset.kind = kind;
  banner.setAttribute('role', kind === 'info' ? 'status' : 'alert');
  bannerText.innerHTML = renderInline(text);
  banner.hidden = false;
}

export function hideBanner() {
  banner.hidden = true;
  bannerText.textContent = '';
}

export function hideConnectionBanner() {
  if (!banner.hidden && banner.dataset.kind === 'connection') hideBanner();
}

/** Says `text` to screen readers; emptied first so the same text twice is announced twice. */
export function announce(text) {
  announcer.textContent = '';
  setTimeout(() => {
    announcer.textContent = text;
  }, 30);
}
