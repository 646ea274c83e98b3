/*
 * Code blocks of rendered Markdown: the markup the page's copy buttons expect (app.js finds
 * `button.copy` inside `.codeblock` and copies that block's `<code>` text), highlighted by
 * highlight.js.
 *
 * Only the language named in the fence is highlighted: automatic detection guesses wrong on short
 * snippets and costs a pass of every grammar over the code, on every streamed update.
 */
import hljs from '../vendor/highlight.js/es/highlight.min.js';

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text → HTML text (also safe inside a quoted attribute). */
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/**
 * The language of a fence's info string ("js", "c++", "objective-c"). The info is model output: only
 * characters a language name has are kept, so nothing else can reach the class attribute.
 */
export function fenceLanguage(info) {
  const word = String(info).trim().split(/\s+/)[0] || '';
  return word.replace(/[^\w+#.-]/g, '').slice(0, 32);
}

/** Highlighted HTML of `code` in `language`, or the escaped text when highlight.js does not know it. */
function highlight(code, language) {
  if (!language || !hljs.getLanguage(language)) return null;
  try {
    return hljs.highlight(code, { language, ignoreIllegals: true }).value;
  } catch {
    // A grammar failing on odd input must not lose the answer: it is shown unhighlighted instead.
    return null;
  }
}

/**
 * One code block. `open`: the fence is not closed yet (the answer is still streaming); kept as a class
 * for styling. The trailing newline of the block is not content (the copy button copies the code alone).
 */
export function codeBlockHtml(code, language, open) {
  const text = code.endsWith('\n') ? code.slice(0, -1) : code;
  const highlighted = highlight(text, language);
  const classes = [highlighted === null ? '' : 'hljs', language ? `language-${language}` : ''].filter(Boolean).join(' ');
  return (
    `<div class="codeblock${open ? ' open' : ''}">` +
    `<div class="codebar"><span class="lang">${escapeHtml(language || 'text')}</span>` +
    '<button type="button" class="copy" data-copy="">Copy</button></div>' +
    `<pre><code${classes ? ` class="${escapeHtml(classes)}"` : ''}>${highlighted ?? escapeHtml(text)}</code></pre></div>\n`
  );
}

/**
 * highlight.js's colours, from the same package. Put before the page's own stylesheet so that, on
 * equal specificity, the page's code-block layout (padding, background) wins over the theme's.
 * Code blocks are dark in both colour schemes of the page, hence one dark theme.
 */
function addTheme() {
  if (document.querySelector('link[data-highlight-theme]')) return;
  const link = document.createElement('link');
  link.rel = 'stylesheet';
  link.href = new URL('../vendor/highlight.js/styles/github-dark.min.css', import.meta.url).href;
  link.dataset.highlightTheme = '';
  document.head.prepend(link);
}

addTheme();
